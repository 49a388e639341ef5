"""The OpenAI-compatible API, driven with the official ``openai`` client against the real graph.

Every answer must parse into the SDK's own types (or raise its own typed errors); SRT and VTT go
through independent parsers. A second application on the same cluster has an API key and tiny
queues, for the 401 and back-pressure cases.
"""

from __future__ import annotations

import io
import json
import subprocess
import threading
from pathlib import Path

import openai
import pytest
import requests
import srt
import webvtt
from audio_files import empty_wav, encode, not_audio_samples, speech_and_silence
from conftest import SHARED_AUDIO, needs_tool, second_app, second_app_args
from openai.types.audio import (
    Transcription,
    TranscriptionTextDeltaEvent,
    TranscriptionTextDoneEvent,
    TranscriptionVerbose,
    Translation,
    TranslationVerbose,
)

# The SDK marks translations (whisper-1 only) deprecated; they are still OpenAI's API.
pytestmark = pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")

JFK = (SHARED_AUDIO / "jfk.wav").read_bytes()
JFK_SECONDS = 11.0


@pytest.fixture(scope="module")
def client(graph):
    return openai.OpenAI(base_url=f"{graph}/v1", api_key="not-checked-here", max_retries=0, timeout=120)


def audio(data: bytes = JFK, name: str = "jfk.wav"):
    return (name, io.BytesIO(data), "application/octet-stream")


def transcribe(client, **kwargs):
    kwargs.setdefault("model", "whisper-1")
    kwargs.setdefault("file", audio())
    return client.audio.transcriptions.create(**kwargs)


# --- response formats -------------------------------------------------------------------------


def test_json_is_openai_transcription_with_duration_usage(client):
    result = transcribe(client)
    assert isinstance(result, Transcription)
    assert result.text and result.text == result.text.strip()
    assert result.usage.type == "duration" and result.usage.seconds == JFK_SECONDS
    assert not (result.model_extra or {}), "no extension keys unless asked for"


def test_text_matches_json(client):
    text = transcribe(client, response_format="text")
    assert isinstance(text, str)
    assert text.strip() == transcribe(client).text


def test_verbose_json_has_every_segment_field(client):
    result = transcribe(client, response_format="verbose_json", language="en")
    assert isinstance(result, TranscriptionVerbose)
    assert result.language == "english" and result.duration == pytest.approx(JFK_SECONDS, abs=0.05)
    assert result.model_extra["task"] == "transcribe"
    assert result.words is None, "words only when asked for"
    assert result.segments
    assert result.text == "".join(s.text for s in result.segments).strip()
    for i, seg in enumerate(result.segments):
        assert seg.id == i and 0 <= seg.seek <= seg.start * 100  # the window starts where speech does
        assert 0 <= seg.start <= seg.end <= result.duration
        assert seg.tokens and seg.temperature == 0.0
        assert seg.avg_logprob < 0 and 0 <= seg.no_speech_prob <= 1 and seg.compression_ratio > 0


def test_detected_language_is_named_as_openai_names_it(client):
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    assert transcribe(client, response_format="verbose_json").language in LANGUAGES.values()


def test_word_and_segment_granularities(client):
    result = transcribe(client, response_format="verbose_json", timestamp_granularities=["word", "segment"])
    assert result.segments and result.words
    for word in result.words:
        assert word.word == word.word.strip() and word.word
        assert 0 <= word.start <= word.end <= result.duration
        assert any(s.start <= word.start and word.end <= s.end for s in result.segments)
    starts = [w.start for w in result.words]
    assert starts == sorted(starts)
    words_only = transcribe(client, response_format="verbose_json", timestamp_granularities=["word"])
    assert words_only.words and words_only.segments is None
    assert [w.word for w in words_only.words] == [w.word for w in result.words]


def test_word_timestamps_need_verbose_json(client):
    with pytest.raises(openai.BadRequestError) as info:
        transcribe(client, response_format="json", timestamp_granularities=["word"])
    assert info.value.body["param"] == "timestamp_granularities[]"
    assert "verbose_json" in info.value.body["message"]


def test_srt_cues_match_the_segments(client):
    segments = transcribe(client, response_format="verbose_json").segments
    subtitles = list(srt.parse(transcribe(client, response_format="srt")))
    assert len(subtitles) == len(segments)
    for cue, seg in zip(subtitles, segments, strict=True):
        assert cue.start.total_seconds() == pytest.approx(seg.start, abs=1e-3)
        assert cue.end.total_seconds() == pytest.approx(seg.end, abs=1e-3)
        assert cue.content == seg.text.strip()


def test_vtt_cues_match_the_segments(client):
    segments = transcribe(client, response_format="verbose_json").segments
    captions = webvtt.from_buffer(io.StringIO(transcribe(client, response_format="vtt"))).captions
    assert len(captions) == len(segments)
    for cue, seg in zip(captions, segments, strict=True):
        assert cue.start_in_seconds + cue.start_time.milliseconds / 1000 == pytest.approx(seg.start, abs=1e-3)
        assert cue.end_in_seconds + cue.end_time.milliseconds / 1000 == pytest.approx(seg.end, abs=1e-3)
        assert cue.text == seg.text.strip()


@pytest.mark.parametrize("fmt", ["srt", "vtt", "text"])
def test_text_formats_are_sent_as_plain_text(graph, fmt):
    # As OpenAI sends them: subtitles too are text/plain.
    r = requests.post(
        f"{graph}/v1/audio/transcriptions",
        files={"file": ("jfk.wav", JFK)},
        data={"model": "whisper-1", "response_format": fmt},
        timeout=120,
    )
    assert r.status_code == 200 and r.headers["content-type"] == "text/plain; charset=utf-8", r.text


def test_logprobs_are_each_text_token_of_the_transcript(client):
    result = transcribe(client, include=["logprobs"], language="en")
    assert isinstance(result, Transcription) and result.logprobs
    for token in result.logprobs:
        assert token.token is not None and token.logprob is not None and token.logprob <= 0
        assert token.bytes and all(0 <= b <= 255 and b == int(b) for b in token.bytes)
    joined = bytes(int(b) for token in result.logprobs for b in token.bytes or [])
    assert joined.decode("utf-8").strip() == result.text, "the tokens spell the transcript"
    assert transcribe(client, language="en").logprobs is None, "only when asked for"


def test_logprobs_need_json(client):
    with pytest.raises(openai.BadRequestError) as info:
        transcribe(client, include=["logprobs"], response_format="verbose_json")
    assert info.value.body["param"] == "include[]"


def test_prompt_and_temperature_are_used(client):
    plain = transcribe(client, response_format="verbose_json", language="en")
    prompted = transcribe(
        client, response_format="verbose_json", language="en", prompt="Ask not what your country"
    )
    # The prompt is decoder context: the same audio scores (and usually decodes) differently.
    assert [(s.tokens, s.avg_logprob) for s in prompted.segments] != [
        (s.tokens, s.avg_logprob) for s in plain.segments
    ]
    sampled = transcribe(client, response_format="verbose_json", temperature=0.8)
    assert all(s.temperature == 0.8 for s in sampled.segments)


def test_model_names_the_configured_model_too(client):
    assert isinstance(transcribe(client, model="tiny-random"), Transcription)


# --- translations -----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["json", "text", "srt", "verbose_json", "vtt"])
def test_translations_in_every_format(client, fmt):
    result = client.audio.translations.create(model="whisper-1", file=audio(), response_format=fmt)
    if fmt == "json":
        assert isinstance(result, Translation) and result.text
    elif fmt == "verbose_json":
        assert isinstance(result, TranslationVerbose) and result.segments
        assert result.model_extra["task"] == "translate"
    elif fmt == "srt":
        assert list(srt.parse(result))
    elif fmt == "vtt":
        assert webvtt.from_buffer(io.StringIO(result)).captions
    else:
        assert isinstance(result, str) and result.strip()


def test_translation_differs_from_transcription(client):
    translated = client.audio.translations.create(
        model="whisper-1", file=audio(), response_format="verbose_json"
    )
    transcribed = transcribe(client, response_format="verbose_json")
    # Same detected language, another task token: the decoder scores (and usually writes) apart.
    assert [(s.tokens, s.avg_logprob) for s in translated.segments] != [
        (s.tokens, s.avg_logprob) for s in transcribed.segments
    ]


# --- streaming --------------------------------------------------------------------------------


def test_stream_sends_deltas_in_order_then_done(client):
    long = encode(speech_and_silence("jfk", 3.0, "jfk"), 16000, "flac")  # 2 windows
    events = list(transcribe(client, file=audio(long, "long.flac"), stream=True))
    deltas = [e for e in events if isinstance(e, TranscriptionTextDeltaEvent)]
    done = [e for e in events if isinstance(e, TranscriptionTextDoneEvent)]
    assert len(done) == 1 and events[-1] is done[0]
    segments = transcribe(client, file=audio(long, "long.flac"), response_format="verbose_json").segments
    assert [d.delta.strip() for d in deltas] == [s.text.strip() for s in segments], "one per segment"
    assert "".join(d.delta for d in deltas).strip() == done[0].text
    assert done[0].text == transcribe(client, file=audio(long, "long.flac")).text


def test_stream_with_text_format_and_postprocessing(client):
    events = list(transcribe(client, stream=True, response_format="text", extra_body={"summarize": True}))
    done = events[-1]
    assert isinstance(done, TranscriptionTextDoneEvent)
    assert "reason" in done.model_extra["summary"]


def test_stream_refuses_subtitle_formats(client):
    with pytest.raises(openai.BadRequestError) as info:
        transcribe(client, stream=True, response_format="srt")
    assert info.value.body["param"] == "stream"


# --- translation into any language (extension: translate_to) ---------------------------------


def test_translate_to_answers_in_that_language_on_the_sources_cues(client):
    spoken = transcribe(client, response_format="verbose_json")
    source = spoken.segments
    verbose = transcribe(client, response_format="verbose_json", extra_body={"translate_to": "German"})
    assert isinstance(verbose, TranscriptionVerbose) and verbose.language == spoken.language, "as spoken"
    translation = verbose.model_extra["translation"]
    assert translation["language"] == "de" and verbose.text == translation["text"]
    assert [(s.start, s.end) for s in verbose.segments] == [(s.start, s.end) for s in source]
    assert [t["id"] for t in translation["segments"]] == [s.id for s in source]
    assert [s.text for s in verbose.segments] == [t["text"] for t in translation["segments"]]
    for t in translation["segments"]:  # random LLM: what came back is marked, never dropped
        assert t["translated"] or (t["reason"] and t["fallback"])
    cues = list(srt.parse(transcribe(client, response_format="srt", extra_body={"translate_to": "de"})))
    assert [(c.start.total_seconds(), c.end.total_seconds(), c.content) for c in cues] == [
        (pytest.approx(t["start"], abs=1e-3), pytest.approx(t["end"], abs=1e-3), t["text"].strip())
        for t in translation["segments"]
    ]
    vtt = transcribe(client, response_format="vtt", extra_body={"translate_to": "de"})
    captions = webvtt.from_buffer(io.StringIO(vtt)).captions
    assert [c.text for c in captions] == [t["text"].strip() for t in translation["segments"]]
    plain = transcribe(client)
    assert "translation" not in (plain.model_extra or {}), "no extra key unless asked"


def test_translate_to_streams_the_translated_text(client):
    long = encode(speech_and_silence("jfk", 3.0, "jfk"), 16000, "flac")  # 2 windows
    events = list(
        transcribe(client, file=audio(long, "long.flac"), stream=True, extra_body={"translate_to": "fr"})
    )
    deltas = [e for e in events if isinstance(e, TranscriptionTextDeltaEvent)]
    done = events[-1]
    assert isinstance(done, TranscriptionTextDoneEvent)
    translation = done.model_extra["translation"]
    assert [d.delta.strip() for d in deltas] == [t["text"].strip() for t in translation["segments"]]
    assert "".join(d.delta for d in deltas) == done.text == translation["text"]


# --- post-processing through extra_body ------------------------------------------------------


def test_postprocessing_fields_add_extra_keys(client):
    result = transcribe(client, extra_body={"punctuate": True, "summarize": True})
    assert isinstance(result, Transcription)
    extra = result.model_extra
    # The random LLM changes the words, so the raw text is kept and the reason given.
    assert extra["punctuation"]["applied"] is False and extra["punctuation"]["reason"]
    assert extra["summary"]["reason"]
    verbose = transcribe(client, response_format="verbose_json", extra_body={"summarize": True})
    assert "summary" in verbose.model_extra and "punctuation" not in verbose.model_extra


# --- models and errors ------------------------------------------------------------------------


def test_models_list_in_openai_shape(client):
    ids = [m.id for m in client.models.list()]
    assert ids == ["whisper-1", "tiny-random"]
    model = client.models.retrieve("whisper-1")
    assert model.id == "whisper-1" and model.object == "model" and model.owned_by == "speechgraph"
    with pytest.raises(openai.NotFoundError) as info:
        client.models.retrieve("gpt-4o-transcribe")
    assert info.value.code == "model_not_found"


@pytest.mark.parametrize("name", ["whisper-large", "../../etc/passwd", "/tmp/model", "openai/whisper-tiny"])
def test_unknown_model_is_404_and_never_loaded(client, name):
    with pytest.raises(openai.NotFoundError) as info:
        transcribe(client, model=name)
    assert info.value.code == "model_not_found" and info.value.body["param"] == "model"


@pytest.mark.parametrize(
    "kwargs,param",
    [
        ({"response_format": "mp3"}, "response_format"),
        ({"temperature": 1.5}, "temperature"),
        ({"temperature": -0.1}, "temperature"),
        ({"language": "klingon"}, "language"),
        ({"extra_body": {"translate_to": "klingon"}}, "translate_to"),
        ({"timestamp_granularities": ["sentence"]}, "timestamp_granularities[]"),
    ],
)
def test_bad_parameters_are_400_naming_the_parameter(client, kwargs, param):
    with pytest.raises(openai.BadRequestError) as info:
        transcribe(client, **kwargs)
    assert info.value.body["param"] == param
    assert info.value.body["type"] == "invalid_request_error" and info.value.body["message"]


@pytest.mark.parametrize(
    "data,name,code",
    [
        (b"", "empty.wav", "empty_file"),
        (b"\x89PNG\r\n\x1a\n" + bytes(200), "picture.png", "no_audio_stream"),  # an image
        (b"just some words, not audio\n" * 20, "notes.txt", "unsupported_media"),
        (empty_wav(), "silent.wav", "undecodable_audio"),  # a header, 0 samples
    ],
)
def test_files_that_are_not_audio_are_bad_requests_naming_the_file(client, data, name, code):
    # As OpenAI answers them: 400 invalid_request_error, param "file", so the SDK raises
    # BadRequestError (the document route keeps 415 and 422).
    with pytest.raises(openai.BadRequestError) as info:
        transcribe(client, file=audio(data, name))
    assert info.value.status_code == 400 and info.value.code == code
    assert info.value.body["param"] == "file" and info.value.body["type"] == "invalid_request_error"
    with pytest.raises(openai.BadRequestError):
        client.audio.translations.create(model="whisper-1", file=audio(data, name))


def test_uploads_ffmpeg_only_guesses_as_audio_are_bad_requests_then_audio_succeeds(client):
    for name, data in not_audio_samples().items():
        with pytest.raises(openai.BadRequestError) as info:
            transcribe(client, file=audio(data, "upload.bin"))
        assert info.value.code == "unsupported_media" and info.value.body["param"] == "file", name
    assert isinstance(transcribe(client), Transcription)


NODE_SDK = Path(__file__).parent / "node_sdk"


@needs_tool("npm", package="npm")
@needs_tool("node", package="nodejs")
def test_the_node_sdk_raises_bad_request_error_for_files_that_are_not_audio(graph, tmp_path):
    """OpenAI's Node SDK (pinned in tests/node_sdk/package-lock.json) on both routes: every file
    that is not audio is its ``BadRequestError`` naming ``file``; real audio still transcribes."""
    installed = subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund"], cwd=NODE_SDK, capture_output=True, text=True, timeout=300
    )
    assert installed.returncode == 0, installed.stderr
    samples = {
        "notes.txt": b"just some words, not audio\n" * 20,
        "picture.png": b"\x89PNG\r\n\x1a\n" + bytes(200),
        "silent.wav": empty_wav(),
        **{f"guessed-{i}.bin": data for i, data in enumerate(list(not_audio_samples().values())[::4])},
    }
    for name, data in samples.items():
        (tmp_path / name).write_bytes(data)
    out = subprocess.run(
        [
            "node",
            "check.mjs",
            f"{graph}/v1",
            str(SHARED_AUDIO / "jfk.wav"),
            *map(str, sorted(tmp_path.iterdir())),
        ],
        cwd=NODE_SDK,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert set(result["refused"]) == set(samples)
    for name, routes in result["refused"].items():
        for route, error in routes.items():
            assert error["error"] == "BadRequestError" and error["badRequest"], (name, route, error)
            assert error["status"] == 400 and error["param"] == "file", (name, route, error)
    assert result["text"] and list(srt.parse(result["srt"]))


def test_too_large_is_413(client):
    big = bytes(3 * 1024 * 1024)  # over the test limit of 2 MiB
    with pytest.raises(openai.APIStatusError) as info:
        transcribe(client, file=audio(big, "big.wav"))
    assert info.value.status_code == 413 and info.value.code == "file_too_large"


# --- API key and back-pressure: a second application ------------------------------------------

KEYS = "sk-test-one,sk-test-two"


@pytest.fixture(scope="module")
def guarded(graph):
    """The graph again at /guarded: an API key, and ASR taking one window at a time with a queue
    of one, refusing more with 429 and Retry-After 3."""
    args = second_app_args(api_keys={"SPEECHGRAPH_TEST_API_KEY": KEYS})
    args["deployments"]["asr"].update(
        max_ongoing_requests=1,
        max_queued_requests=1,
        backpressure_config={"status_code": 429, "retry_after_s": 3},
        user_config={"max_batch_size": 1, "batch_wait_timeout_s": 0},
    )
    with second_app(graph, "guarded", args) as url:
        yield url


def test_api_key_is_required_when_configured(guarded):
    # The SDK always sends a key, so the request without one goes out by hand.
    r = requests.get(f"{guarded}/v1/models", timeout=30)
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    bad = openai.OpenAI(base_url=f"{guarded}/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        bad.models.list()
    assert info.value.code == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        transcribe(bad)
    for key in KEYS.split(","):
        good = openai.OpenAI(base_url=f"{guarded}/v1", api_key=key, max_retries=0, timeout=120)
        assert isinstance(transcribe(good), Transcription)
    assert requests.get(f"{guarded}/healthz", timeout=30).status_code == 200, "probes stay open"


def test_refused_before_the_body_is_read(guarded):
    # 1 GB declared, 10 bytes sent: the 401 comes at once, without waiting for the rest.
    import http.client
    from urllib.parse import urlsplit

    url = urlsplit(guarded)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    conn.putrequest("POST", f"{url.path}/v1/audio/transcriptions")
    conn.putheader("Content-Type", "multipart/form-data; boundary=x")
    conn.putheader("Content-Length", str(10**9))
    conn.endheaders(message_body=b"x" * 10)
    response = conn.getresponse()
    assert response.status == 401
    conn.close()


def test_overload_is_429_with_retry_after_then_recovers(guarded) -> None:
    key = KEYS.split(",")[0]
    long = encode(speech_and_silence("jfk", 3.0, "jfk"), 16000, "flac")  # 2 windows
    answers: list[requests.Response] = []

    def send():
        answers.append(
            requests.post(
                f"{guarded}/v1/audio/transcriptions",
                timeout=120,
                headers={"Authorization": f"Bearer {key}"},
                files={"file": ("long.flac", long)},
                data={"model": "whisper-1"},
            )
        )

    threads = [threading.Thread(target=send) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = sorted(r.status_code for r in answers)
    assert 429 in statuses and set(statuses) <= {200, 429}, [r.text for r in answers]
    for r in answers:
        if r.status_code == 429:
            assert r.headers["Retry-After"] == "3", r.text
            assert r.headers.get("content-type") == "application/json", r.text
            assert r.json()["error"]["code"] == "overloaded"
    good = openai.OpenAI(base_url=f"{guarded}/v1", api_key=key, max_retries=0, timeout=120)
    assert isinstance(transcribe(good), Transcription)


def test_readme_client_example_runs_as_written(graph):
    """The README's three-line `openai` example, run as written from the repository root."""
    import re
    import subprocess
    import sys

    from conftest import ROOT

    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### OpenAI-compatible API") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert len(code.strip().splitlines()) == 3
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip(), "prints the transcript"


# --- Whisper fine-tunes as LoRA adapters: a third application ---------------------------------

ADAPTERS = {"calls": "tiny-random-lora-a", "meetings": "tiny-random-lora-b"}


@pytest.fixture(scope="module")
def fine_tuned(graph):
    """The graph again at /fine-tuned, its Whisper with two LoRA adapters (generated: random
    weights in peft's format, loaded by peft as a real adapter is)."""
    args = second_app_args()
    args["asr"]["adapters"] = ADAPTERS
    with second_app(graph, "fine-tuned", args) as url:
        yield url


def adapted(url: str, model: str | None, data: bytes = JFK) -> dict:
    fields = {"language": "en", "punctuate": "false", "summarize": "false"}
    r = requests.post(
        f"{url}/v1/transcribe",
        files={"file": ("jfk.wav", data)},
        data={**fields, **({"model": model} if model else {})},
        timeout=120,
    )
    assert r.status_code == 200, r.text
    return r.json()


def tokens(doc: dict) -> list[list[int]]:
    return [s["tokens"] for s in doc["segments"]]


def test_each_adapter_is_a_model_that_decodes_with_its_fine_tune(fine_tuned):
    client = openai.OpenAI(base_url=f"{fine_tuned}/v1", api_key="unused", max_retries=0, timeout=120)
    assert [m.id for m in client.models.list()] == ["whisper-1", "tiny-random", "calls", "meetings"]
    docs = {model: adapted(fine_tuned, model) for model in (None, "whisper-1", "calls", "meetings")}
    windows = docs[None]["timings"]["windows"]
    for model, adapter in [
        (None, "base"),
        ("whisper-1", "base"),
        ("calls", "calls"),
        ("meetings", "meetings"),
    ]:
        assert docs[model]["timings"]["asr_windows_by_adapter"] == {adapter: windows}, model
    assert tokens(docs[None]) == tokens(docs["whisper-1"]), "the base model stays available"
    assert tokens(docs["calls"]) != tokens(docs[None]) and tokens(docs["meetings"]) != tokens(docs[None])
    assert tokens(docs["calls"]) != tokens(docs["meetings"]), "each name its own adapter"
    verbose = transcribe(client, model="calls", response_format="verbose_json", language="en")
    assert [s.tokens for s in verbose.segments] == tokens(docs["calls"]), "the same on OpenAI's route"
    with pytest.raises(openai.NotFoundError) as info:
        transcribe(client, model="sales")
    assert info.value.code == "model_not_found" and info.value.body["param"] == "model"
    assert "calls" in info.value.body["message"], "the error lists the names to use"


def test_mixed_adapter_traffic_decodes_each_request_with_its_own(fine_tuned):
    alone = {model: tokens(adapted(fine_tuned, model)) for model in ("calls", "meetings", "whisper-1")}
    models = ["calls", "meetings", "whisper-1"] * 3
    docs: dict[int, dict] = {}

    def send(i: int) -> None:
        docs[i] = adapted(fine_tuned, models[i])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(models))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    assert len(docs) == len(models)
    for i, model in enumerate(models):
        assert tokens(docs[i]) == alone[model], f"request {i} ({model}) decoded as it is alone"
        used = docs[i]["timings"]["asr_windows_by_adapter"]
        assert list(used) == ["base" if model == "whisper-1" else model], used
