"""The whole graph on a real local Ray cluster, over real HTTP."""

from __future__ import annotations

import json

import numpy as np
import pytest
import ray
import requests
import srt
import webvtt
from audio_files import encode, not_audio_samples, speech_and_silence, video_only_mp4
from conftest import SHARED_AUDIO, TEST_MAX_DURATION_S, TEST_MAX_UPLOAD_MB, clips, tiny_settings
from ray import serve

from pipeline.client import sse_events

pytestmark = pytest.mark.usefixtures("graph")


def post(url: str, data: bytes | None, filename: str = "audio.bin", **fields) -> requests.Response:
    files = {"file": (filename, data)} if data is not None else None
    return requests.post(f"{url}/v1/transcribe", files=files, data=fields or None, timeout=120)


def stream_events(url: str, data: bytes, filename: str, **fields) -> list[tuple[str, dict]]:
    """The events of ``/v1/transcribe`` with ``stream=true``, checked to be a 200 event stream."""
    with requests.post(
        f"{url}/v1/transcribe",
        files={"file": (filename, data)},
        data={**fields, "stream": "true"},
        stream=True,
        timeout=120,
    ) as r:
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("text/event-stream")
        return list(sse_events(r))


@pytest.mark.parametrize("clip", clips(), ids=lambda c: c["file"])
def test_every_shared_clip_transcribes(graph, clip):
    data = (SHARED_AUDIO / clip["file"]).read_bytes()
    r = post(graph, data, clip["file"])
    assert r.status_code == 200, r.text
    doc = r.json()
    assert abs(doc["duration_s"] - clip["duration_s"]) <= 0.05
    segments = doc["segments"]
    assert segments, "the tiny model writes some text for speech"
    starts = [s["start"] for s in segments]
    assert starts == sorted(starts)
    for s in segments:
        assert 0 <= s["start"] <= s["end"] <= doc["duration_s"]
    timings = doc["timings"]
    assert timings["preprocess_s"] > 0 and timings["asr_s"] > 0 and timings["postprocess_s"] > 0
    assert timings["total_s"] >= timings["asr_s"]
    assert doc["real_time_factor"] > 0
    assert doc["text"] == "".join(s["text"] for s in segments).strip()
    # The random LLM cannot reproduce the words: the raw text is kept, with the reason.
    assert doc["punctuation"]["applied"] is False and "words" in doc["punctuation"]["reason"]
    assert doc["summary"]["summary"] is None and doc["summary"]["reason"]
    assert doc["models"] == {"asr": "tiny-random", "llm": "tiny-random"}
    assert doc["request_id"] == r.headers["x-request-id"]


def test_long_audio_is_cut_into_windows_at_silences(graph):
    # speech 0-11 s | 3 s silence | speech 14-36 s | 40 s silence | speech 76-87 s
    audio = speech_and_silence("jfk", 3.0, "jfk", "jfk", 40.0, "jfk")
    r = post(graph, encode(audio, 16000, "flac"), "long.flac", punctuate="false", summarize="false")
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["duration_s"] == pytest.approx(87.0, abs=0.05)
    assert {s["window"] for s in doc["segments"]} == {0, 1, 2}, "one window per stretch of speech"
    for s in doc["segments"]:
        assert 0 <= s["start"] <= s["end"] <= 87.0
        for silence_start, silence_end in [(11.0, 14.0), (36.0, 76.0)]:
            assert not (s["start"] >= silence_start + 0.3 and s["end"] <= silence_end - 0.3), s
    starts = [s["start"] for s in doc["segments"]]
    assert starts == sorted(starts)
    assert doc["punctuation"]["reason"] == "not requested"
    assert doc["timings"]["postprocess_s"] < doc["timings"]["asr_s"]


def test_silence_gives_no_segments_without_whisper(graph):
    r = post(graph, encode(np.zeros(16000 * 100, np.float32), 16000, "flac"), "quiet.flac", language="de")
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["segments"] == [] and doc["text"] == "" and doc["duration_s"] == pytest.approx(100.0)
    assert doc["language"] == "de"
    assert doc["timings"]["asr_s"] < 0.05, "no window went to the ASR stage"
    assert doc["summary"]["reason"] == "the transcript has no words"


def test_stream_sends_progress_and_segments_before_the_same_document(graph):
    data = encode(speech_and_silence("jfk", 3.0, "jfk", 3.0, "jfk"), 16000, "flac")  # 3 windows
    fields = dict(language="en", punctuate="false", summarize="true")
    events = stream_events(graph, data, "three.flac", **fields)
    names = [name for name, _ in events]
    assert names[-1] == "document" and names.count("document") == 1
    progress = [body for name, body in events if name == "progress"]
    assert [p["windows_done"] for p in progress] == [0, 1, 2, 3], "planned, then each window"
    assert all(p["windows_total"] == 3 for p in progress)
    assert progress[-1]["audio_seconds_done"] == pytest.approx(progress[-1]["audio_seconds_total"])
    streamed = events[-1][1]
    timings = streamed["timings"]
    assert timings["asr_s"] > 0.05 and timings["preprocess_s"] + timings["asr_s"] <= timings["total_s"], (
        "the streamed document times its stages as the plain one does"
    )
    assert [body for name, body in events if name == "segment"] == streamed["segments"]
    assert names.index("segment") < names.index("document")
    plain = post(graph, data, "three.flac", **fields).json()
    ignore = {"timings", "real_time_factor", "request_id"}
    assert {k: v for k, v in streamed.items() if k not in ignore} == {
        k: v for k, v in plain.items() if k not in ignore
    }


def test_translate_to_streams_each_translation_and_renders_translated_subtitles(graph):
    data = encode(speech_and_silence("jfk", 3.0, "jfk", 3.0, "jfk"), 16000, "flac")  # 3 windows
    fields = dict(language="en", punctuate="false", summarize="false", translate_to="Spanish")
    events = stream_events(graph, data, "three.flac", **fields)
    names = [name for name, _ in events]
    document = events[-1][1]
    translated = [body for name, body in events if name == "translation"]
    assert document["translation"]["language"] == "es"
    assert translated == document["translation"]["segments"], "streamed as in the document"
    assert [(t["id"], t["start"], t["end"]) for t in translated] == [
        (s["id"], s["start"], s["end"]) for s in document["segments"]
    ]
    assert max(i for i, n in enumerate(names) if n == "translation") < names.index("document")
    for t in translated:  # the random LLM: each segment translated, or kept and marked with why
        assert t["translated"] or (t["reason"] and t["fallback"])
    assert document["timings"]["translation_calls"] >= 1
    subtitles = requests.post(
        f"{graph}/v1/transcribe?format=srt", files={"file": ("three.flac", data)}, data=fields, timeout=120
    )
    assert subtitles.status_code == 200 and subtitles.headers["content-type"].startswith("text/plain")
    cues = list(srt.parse(subtitles.text))
    assert [c.content for c in cues] == [t["text"].strip() for t in translated]
    assert [c.start.total_seconds() for c in cues] == [
        pytest.approx(t["start"], abs=1e-3) for t in translated
    ]
    source = requests.post(
        f"{graph}/v1/transcribe?format=vtt",
        files={"file": ("three.flac", data)},
        data={**fields, "translate_to": ""},
        timeout=120,
    )
    captions = webvtt.from_string(source.text)
    assert [c.text for c in captions] == [s["text"].strip() for s in document["segments"]], "no translation"


@pytest.mark.parametrize(
    ("query", "fields", "param"),
    [
        ("", {"translate_to": "klingon"}, "translate_to"),
        ("?format=srt", {"stream": "true"}, "format"),
        ("?format=docx", {}, "format"),
    ],
)
def test_bad_translation_and_format_requests_are_400_naming_the_parameter(graph, query, fields, param):
    data = (SHARED_AUDIO / "jfk.wav").read_bytes()
    r = requests.post(
        f"{graph}/v1/transcribe{query}", files={"file": ("jfk.wav", data)}, data=fields, timeout=60
    )
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param and r.json()["error"]["message"]


def test_language_and_task_are_honoured(graph):
    data = (SHARED_AUDIO / "jfk.wav").read_bytes()
    r = post(graph, data, "jfk.wav", language="German", task="translate", summarize="false")
    assert r.status_code == 200, r.text
    assert r.json()["language"] == "de" and r.json()["task"] == "translate"


def _bad_inputs():
    too_long = encode(np.zeros(16000 * (TEST_MAX_DURATION_S + 30), np.float32), 16000, "flac")
    assert len(too_long) < TEST_MAX_UPLOAD_MB * 1024 * 1024
    return [
        ("missing file", None, 400, "missing_file"),
        ("empty file", b"", 400, "empty_file"),
        ("not audio", b"this is a text file, not audio\n" * 50, 415, "unsupported_media"),
        ("no audio stream", video_only_mp4(), 415, "no_audio_stream"),
        ("too long", too_long, 413, "audio_too_long"),
        (
            "too large",
            np.random.default_rng(0).bytes(TEST_MAX_UPLOAD_MB * 1024 * 1024 + 10),
            413,
            "file_too_large",
        ),
    ]


@pytest.mark.parametrize(
    "name,data,status,code", _bad_inputs(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_bad_input_gets_its_4xx_then_a_good_request_succeeds(graph, name, data, status, code):
    r = post(graph, data)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["code"] == code
    assert error["type"] == "invalid_request_error"
    assert len(error["message"]) > 20
    ok = post(graph, (SHARED_AUDIO / "jfk.wav").read_bytes(), "jfk.wav", summarize="false")
    assert ok.status_code == 200, ok.text


def test_uploads_ffmpeg_only_guesses_as_audio_are_415_then_a_good_request_succeeds(graph):
    # Text in legacy encodings and junk with stray frame headers: FFmpeg opens each with an audio
    # stream (tests/test_audio.py checks that premise); the service must refuse them as not audio.
    for name, data in not_audio_samples().items():
        r = post(graph, data, "upload.bin", summarize="false", punctuate="false")
        assert r.status_code == 415, (name, r.text)
        error = r.json()["error"]
        assert error["code"] == "unsupported_media" and error["param"] == "file", name
    ok = post(graph, (SHARED_AUDIO / "jfk.wav").read_bytes(), "jfk.wav", summarize="false")
    assert ok.status_code == 200, ok.text


def test_bad_parameters_are_named(graph):
    data = (SHARED_AUDIO / "jfk.wav").read_bytes()
    for field, value in [("language", "klingon"), ("task", "summarise"), ("punctuate", "maybe")]:
        r = post(graph, data, "jfk.wav", **{field: value})
        assert r.status_code == 400, r.text
        assert r.json()["error"]["param"] == field


def test_chunked_upload_over_the_limit_is_refused(graph):
    chunk = b"\0" * 65536
    limit = TEST_MAX_UPLOAD_MB * 1024 * 1024
    boundary = "speechgraphboundary"

    def body():  # a generator body is sent chunked, with no Content-Length
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        for _ in range(limit // len(chunk) + 8):
            yield chunk
        yield f"\r\n--{boundary}--\r\n".encode()

    r = requests.post(
        f"{graph}/v1/transcribe",
        data=body(),
        timeout=60,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert r.status_code == 413, r.text
    assert r.json()["error"]["code"] == "file_too_large"


def test_liveness_and_readiness(graph):
    live = requests.get(f"{graph}/healthz", timeout=30)
    assert live.status_code == 200 and live.json() == {"status": "ok"}
    r = requests.get(f"{graph}/readyz", timeout=30)
    assert r.status_code == 200 and r.json()["status"] == "ok"
    stages = r.json()["stages"]
    assert set(stages) == {"preprocess", "asr", "postprocess"}
    assert all(s["running_replicas"] >= 1 and s["status"] == "HEALTHY" for s in stages.values())


def test_asr_and_llm_share_one_logical_gpu_and_run_on_cpu(graph):
    r = requests.get(f"{graph}/v1/stages", timeout=30)
    assert r.status_code == 200
    stages = r.json()["stages"]
    asr, llm = stages["asr"], stages["postprocess"]
    assert asr["gpu_ids"] == ["0"] and llm["gpu_ids"] == ["0"], "both placed on the one GPU"
    assert asr["node_id"] == llm["node_id"]
    assert asr["device"] == "cpu" and llm["device"] == "cpu", "no CUDA device is really there"
    assert asr["dtype"] == "float32" and llm["dtype"] == "float32"
    assert stages["preprocess"]["gpu_ids"] == []
    for s in stages.values():
        assert s["replicas"] >= 1 and s["load_s"] >= 0


@pytest.mark.parametrize(
    "route,form", [("/v1/transcribe", {"diarize": "true"}), ("/v1/audio/diarization", {})]
)
def test_speakers_asked_of_a_service_without_the_diarization_stage_are_refused(graph, route, form):
    jfk = {"file": ("jfk.wav", (SHARED_AUDIO / "jfk.wav").read_bytes())}
    r = requests.post(f"{graph}{route}", files=jfk, data=form, timeout=60)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "diarization_not_deployed" and error["param"] == "diarize"
    assert "deployments.diarization" in error["message"]


def test_the_plan_streams_windows_as_views_of_the_object_store(graph):
    from deployments.audio_plan import Upload

    handle = serve.get_deployment_handle("preprocess", app_name="speechgraph")
    data = (SHARED_AUDIO / "jfk.flac").read_bytes()
    step = 64 * 1024  # the upload goes in as object-store chunks, which the stage joins in order
    upload = Upload(
        chunks=[ray.put(np.frombuffer(data[i : i + step], np.uint8)) for i in range(0, len(data), step)],
        size=len(data),
    )
    assert len(upload.chunks) > 2
    probe, *parts = list(handle.options(stream=True).plan.remote(upload))
    assert probe.seekable and probe.duration_s == pytest.approx(11.0, abs=0.1)
    assert parts[-1].last and all(not p.last for p in parts[:-1])
    samples = [x for part in parts for x in part.samples]
    windows = [w for part in parts for w in part.windows]
    assert samples and len(samples) == len(windows)
    window = samples[0]
    assert isinstance(window, np.ndarray) and window.dtype == np.float32
    assert not window.flags.writeable, "a read-only view of the answer in the object store, not a copy"
    assert window.size == windows[0].end - windows[0].start


def test_in_process_runner_gives_the_same_segments(graph):
    from pipeline.runner import InProcessPipeline

    runner = InProcessPipeline(tiny_settings())
    for name in ["jfk.flac", "librispeech-1995-1837-0001.wav"]:
        data = (SHARED_AUDIO / name).read_bytes()
        local = runner.transcribe(data, summarize=False)
        r = post(graph, data, name, summarize="false")
        assert r.status_code == 200, r.text
        remote = r.json()
        assert remote["language"] == local.language
        assert remote["duration_s"] == pytest.approx(local.duration_s)
        assert [(s["start"], s["end"], s["text"], s["tokens"]) for s in remote["segments"]] == [
            (s.start, s.end, s.text, s.tokens) for s in local.segments
        ]
        assert remote["punctuation"] == local.punctuation.model_dump()


def test_openapi_describes_the_routes_and_form_fields(graph):
    schema = requests.get(f"{graph}/openapi.json", timeout=30).json()
    assert {
        "/v1/transcribe",
        "/healthz",
        "/readyz",
        "/v1/models",
        "/v1/models/{model_id}",
        "/v1/stages",
        "/v1/audio/transcriptions",
        "/v1/audio/translations",
    } <= set(schema["paths"])
    assert schema["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    assert schema["paths"]["/v1/audio/transcriptions"]["post"]["security"] == [{}, {"apiKey": []}]
    assert "security" not in schema["paths"]["/healthz"]["get"], "probes need no key"
    assert "security" not in schema["paths"]["/readyz"]["get"]
    openai_body = schema["paths"]["/v1/audio/transcriptions"]["post"]["requestBody"]["content"]
    ref = openai_body["multipart/form-data"]["schema"]["$ref"].rsplit("/", 1)[-1]
    assert {
        "file",
        "model",
        "language",
        "prompt",
        "response_format",
        "temperature",
        "timestamp_granularities[]",
        "stream",
        "punctuate",
        "summarize",
    } <= set(schema["components"]["schemas"][ref]["properties"])
    body = schema["paths"]["/v1/transcribe"]["post"]["requestBody"]["content"]["multipart/form-data"]
    ref = body["schema"]["$ref"].rsplit("/", 1)[-1]
    fields = schema["components"]["schemas"][ref]["properties"]
    assert {"file", "language", "task", "punctuate", "summarize"} <= set(fields)
    assert {"413", "415", "422"} <= set(schema["paths"]["/v1/transcribe"]["post"]["responses"])


def test_client_command_writes_formats_next_to_each_file_with_progress(graph, tmp_path):
    import subprocess
    import sys

    import srt
    from conftest import ROOT

    long = tmp_path / "two windows.flac"
    long.write_bytes(encode(speech_and_silence("jfk", 3.0, "jfk"), 16000, "flac"))
    bad = tmp_path / "notes.txt"
    bad.write_text("not audio")
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "client", str(long), str(bad), "--url", graph, "--no-summarize"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1, "one file failed"
    assert "error: " in done.stderr and "notes.txt" in done.stderr and "HTTP 415" in done.stderr
    assert "2/2" in done.stderr, "the progress bar counted both windows"
    doc = json.loads((tmp_path / "two windows.json").read_text())
    assert doc["duration_s"] == pytest.approx(25.0, abs=0.05) and doc["segments"]
    cues = list(srt.parse((tmp_path / "two windows.srt").read_text()))
    assert len(cues) == len(doc["segments"])
    assert (tmp_path / "two windows.vtt").read_text().startswith("WEBVTT")
    assert not (tmp_path / "notes.json").exists()


def test_concurrent_requests_are_batched_together(graph):
    from concurrent.futures import ThreadPoolExecutor

    data = encode(speech_and_silence("jfk", 3.0, "jfk", 3.0, "jfk"), 16000, "flac")  # 3 windows each
    with ThreadPoolExecutor(8) as pool:
        answers = list(
            pool.map(
                lambda _: post(
                    graph, data, "three.flac", language="en", punctuate="false", summarize="false"
                ),
                range(8),
            )
        )
    assert all(r.status_code == 200 for r in answers)
    largest = [r.json()["timings"]["asr_largest_batch"] for r in answers]
    assert all(n >= 1 for n in largest) and max(largest) > 1, largest


def test_load_tool_reports_a_bounded_run_against_the_openai_route(graph):
    """``python -m bench.load`` against the running graph: bounded by its request count, a live
    progress line on stderr, the final table on stdout; a wrong route is counted, not hidden."""
    import subprocess
    import sys

    from conftest import ROOT

    command = [
        sys.executable,
        "-m",
        "bench.load",
        "--url",
        graph,
        "--audio",
        str(SHARED_AUDIO / "jfk.flac"),
        "--concurrency",
        "2",
        "--duration",
        "60",
        "--requests",
        "5",
        "--field",
        "language=en",
    ]
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    table = dict(line.split("  ", 1) for line in out.stdout.splitlines()[1:])
    assert table["requests sent"].strip() == "5" and table["answered (2xx)"].strip() == "5"
    assert table["not answered"].strip() == "none"
    assert float(table["audio seconds/s"].split()[0]) > 0
    assert "sent 5  ok 5" in out.stderr, "the live progress line"
    wrong = subprocess.run(
        [*command[:-6], "--requests", "2", "--endpoint", "/v1/nowhere"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert wrong.returncode == 1 and "404: 2" in wrong.stdout
