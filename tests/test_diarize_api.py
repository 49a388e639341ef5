"""Diarization through the graph: the diarization stage beside ASR on a real local cluster, its
accuracy (DER, ``pyannote.metrics``) on the shared two-speaker recording and on conversations
assembled from real people, speakers on the transcript, RTTM that pyannote reads, and bad
speaker counts refused naming the parameter."""

from __future__ import annotations

import io

import numpy as np
import pytest
import requests
from audio_files import encode
from conftest import graph_args, serving
from conversations import FIXTURES, der, load_recordings, round_robin, stereo_call, stereo_file

from pipeline.rttm import read_rttm
from pipeline.settings import AudioSettings
from pipeline.vad import SpeechDetector

SAMPLE = FIXTURES / "diarization" / "sample.wav"


@pytest.fixture(scope="module")
def diarizing_graph():
    with serving(graph_args(diarization=True)) as url:
        yield url


def speaker_turns(url: str, data: bytes, name: str, **form) -> str:
    r = requests.post(
        f"{url}/v1/audio/diarization",
        files={"file": (name, data)},
        data={"response_format": "rttm", **form},
        timeout=300,
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return r.text


def test_the_shared_two_speaker_recording_within_15_percent_der(diarizing_graph):
    from pyannote.database.util import load_rttm

    rttm = speaker_turns(diarizing_graph, SAMPLE.read_bytes(), "sample.wav")
    assert list(load_rttm(io.StringIO(rttm))) == ["sample"], "pyannote reads it, file id from the name"
    found = read_rttm(rttm)["sample"]
    reference = [t for turns in read_rttm((SAMPLE.with_suffix(".rttm")).read_text()).values() for t in turns]
    error = der(reference, found)
    print(f"shared sample through the graph: DER {error:.3f}, speakers {sorted({t.speaker for t in found})}")
    assert len({t.speaker for t in found}) == 2
    assert error <= 0.15


@pytest.mark.parametrize(
    "names",
    [["kennedy", "libri1088"], ["kennedy", "libri1995", "libri2412"]],
    ids=["two", "three"],
)
def test_assembled_conversations_within_10_percent_der(diarizing_graph, names):
    audio, reference = round_robin(load_recordings(), SpeechDetector(AudioSettings()), names, 3)
    rttm = speaker_turns(diarizing_graph, encode(audio, 16000, "flac"), "talk.flac")
    found = read_rttm(rttm)["talk"]
    error = der(reference, found)
    print(f"{'+'.join(names)} through the graph: DER {error:.3f}")
    assert len({t.speaker for t in found}) == len(names)
    assert error <= 0.10


def test_the_transcript_carries_speakers_and_their_talk_time(diarizing_graph):
    form = {"diarize": "true", "max_speakers": "3", "punctuate": "false", "summarize": "false"}
    r = requests.post(
        f"{diarizing_graph}/v1/transcribe",
        files={"file": ("sample.wav", SAMPLE.read_bytes())},
        data={**form, "translate_to": "de"},
        timeout=300,
    )
    assert r.status_code == 200, r.text
    doc = r.json()
    speakers = [s["speaker"] for s in doc["speakers"]]
    assert speakers == ["A", "B"]
    assert sum(s["talk_s"] for s in doc["speakers"]) == pytest.approx(doc["duration_s"], rel=0.35)
    assert doc["segments"] and all(s["speaker"] in speakers for s in doc["segments"])
    timings = doc["timings"]
    assert 0 <= timings["diarization_s"] < timings["total_s"]
    translated = doc["translation"]["segments"]
    assert [(t["id"], t["speaker"]) for t in translated] == [(s["id"], s["speaker"]) for s in doc["segments"]]
    plain = requests.post(
        f"{diarizing_graph}/v1/transcribe",
        files={"file": ("sample.wav", SAMPLE.read_bytes())},
        data={"punctuate": "false", "summarize": "false"},
        timeout=300,
    ).json()
    assert plain["speakers"] is None and all(s["speaker"] is None for s in plain["segments"])


@pytest.mark.parametrize(
    "route,form,param",
    [
        ("/v1/transcribe", {"diarize": "true", "num_speakers": "0"}, "num_speakers"),
        ("/v1/transcribe", {"diarize": "true", "min_speakers": "3", "max_speakers": "2"}, "min_speakers"),
        ("/v1/transcribe", {"num_speakers": "2"}, "num_speakers"),
        ("/v1/audio/diarization", {"max_speakers": "21"}, "max_speakers"),
        ("/v1/audio/diarization", {"num_speakers": "4", "max_speakers": "2"}, "num_speakers"),
        ("/v1/audio/diarization", {"response_format": "xml"}, "response_format"),
        ("/v1/transcribe", {"multichannel": "true"}, "multichannel"),
        ("/v1/transcribe", {"diarize": "true", "multichannel": "true", "num_speakers": "2"}, "num_speakers"),
        ("/v1/audio/diarization", {"multichannel": "true"}, "multichannel"),
    ],
)
def test_impossible_speaker_counts_are_refused_naming_the_parameter(diarizing_graph, route, form, param):
    r = requests.post(
        f"{diarizing_graph}{route}",
        files={"file": ("sample.wav", SAMPLE.read_bytes())},
        data=form,
        timeout=60,
    )
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == param and param in error["message"]


def test_a_stereo_call_gets_a_speaker_per_channel(diarizing_graph):
    """``multichannel``: speakers by channel, through both routes; on the transcript the segments
    of each channel's turns get its speaker."""
    names = ("kennedy", "libri1995")
    samples, reference = stereo_call(load_recordings(), SpeechDetector(AudioSettings()), names)
    data = stereo_file(samples, "FLAC")
    rttm = speaker_turns(diarizing_graph, data, "call.flac", multichannel="true")
    found = read_rttm(rttm)["call"]
    assert [t.speaker for t in found[:2]] == ["A", "B"], "A is the first channel"
    letters = {"A": names[0], "B": names[1]}
    named = [t.model_copy(update={"speaker": letters[t.speaker]}) for t in found]
    error = der(reference, named)
    print(f"stereo call by channel through the graph: DER {error:.3f}")
    assert error <= 0.08
    r = requests.post(
        f"{diarizing_graph}/v1/transcribe",
        files={"file": ("call.flac", data)},
        data={"diarize": "true", "multichannel": "true", "punctuate": "false", "summarize": "false"},
        timeout=300,
    )
    assert r.status_code == 200, r.text
    doc = r.json()
    assert [s["speaker"] for s in doc["speakers"]] == ["A", "B"]
    for segment in doc["segments"]:
        heard = dict.fromkeys(names, 0.0)
        for t in reference:
            heard[t.speaker] += max(0.0, min(t.end, segment["end"]) - max(t.start, segment["start"]))
        if max(heard.values()) > 1.0:
            assert letters[segment["speaker"]] == max(heard, key=heard.__getitem__), (segment, heard)


# --- OpenAI's diarizing model, through the official client ---------------------------------------

DIARIZE_MODEL = "gpt-4o-transcribe-diarize"


@pytest.fixture(scope="module")
def client(diarizing_graph):
    import openai

    return openai.OpenAI(base_url=f"{diarizing_graph}/v1", api_key="unused", max_retries=0, timeout=300)


def data_url(audio, seconds: float) -> str:
    import base64

    clip = encode(audio[: int(seconds * 16000)], 16000, "wav")
    return "data:audio/wav;base64," + base64.b64encode(clip).decode()


def one_speaker_of_the_sample(speaker: str):
    """Some seconds of one reference speaker of the shared sample, their turns put together."""
    from pipeline.audio import decode_audio

    audio = decode_audio(SAMPLE, max_duration_s=60)
    turns = read_rttm(SAMPLE.with_suffix(".rttm").read_text())["sample"]
    pieces = [audio[int(t.start * 16000) : int(t.end * 16000)] for t in turns if t.speaker == speaker]
    return np.concatenate(pieces)


def test_diarized_json_parses_into_the_clients_own_type_and_known_speakers_name_voices(client):
    from openai.types.audio import TranscriptionDiarized

    reference = one_speaker_of_the_sample("speaker90")
    assert reference.size >= 5 * 16000
    result = client.audio.transcriptions.create(
        model=DIARIZE_MODEL,
        file=("sample.wav", SAMPLE.read_bytes()),
        response_format="diarized_json",
        known_speaker_names=["Ada"],
        known_speaker_references=[data_url(reference, 6)],
    )
    assert isinstance(result, TranscriptionDiarized) and result.task == "transcribe"
    assert result.duration == pytest.approx(30.0, abs=0.1) and result.usage.seconds == 30
    speakers = {s.speaker for s in result.segments}
    assert result.segments and all(s.type == "transcript.text.segment" for s in result.segments)
    assert "Ada" in speakers and len(speakers) <= 2 and speakers - {"Ada"} <= {"A", "B"}


def test_a_known_speaker_who_is_not_in_the_audio_names_no_one(client):
    from conversations import load_recordings

    result = client.audio.transcriptions.create(
        model=DIARIZE_MODEL,
        file=("sample.wav", SAMPLE.read_bytes()),
        response_format="diarized_json",
        known_speaker_names=["John"],
        known_speaker_references=[data_url(load_recordings()["kennedy"], 6)],
    )
    assert {s.speaker for s in result.segments} <= {"A", "B"}


def test_stream_sends_each_segment_with_its_speaker_before_done(client):
    stream = client.audio.transcriptions.create(
        model=DIARIZE_MODEL,
        file=("sample.wav", SAMPLE.read_bytes()),
        response_format="diarized_json",
        stream=True,
    )
    kinds = [event.type for event in stream]
    assert kinds[-1] == "transcript.text.done" and "transcript.text.segment" in kinds
    first_segment = kinds.index("transcript.text.segment")
    assert all(kind == "transcript.text.segment" for kind in kinds[first_segment:-1])


def test_the_diarizing_model_is_listed_and_plain_whisper_cannot_diarize(client):
    import openai

    assert DIARIZE_MODEL in [m.id for m in client.models.list()]
    with pytest.raises(openai.BadRequestError) as info:
        client.audio.transcriptions.create(
            model="whisper-1", file=("sample.wav", SAMPLE.read_bytes()), response_format="diarized_json"
        )
    assert info.value.body["param"] == "response_format"


@pytest.mark.parametrize(
    "names,references,param,says",
    [
        (["Ada", "Bo"], ["short"], "known_speaker_names", "one reference clip per name"),
        (["Ada"], ["https://example.com/ada.wav"], "known_speaker_references", "data URL"),
        (
            ["Ada"],
            ["data:audio/wav;base64,bm90IGF1ZGlvIGF0IGFsbA=="],
            "known_speaker_references",
            "not usable",
        ),
        (["Ada"], ["SHORT"], "known_speaker_references", "send 2 to 10 s"),
    ],
)
def test_bad_known_speakers_are_400_naming_the_parameter(client, names, references, param, says):
    import openai

    references = [
        data_url(one_speaker_of_the_sample("speaker90"), 1.0) if r == "SHORT" else r for r in references
    ]
    with pytest.raises(openai.BadRequestError) as info:
        client.audio.transcriptions.create(
            model=DIARIZE_MODEL,
            file=("sample.wav", SAMPLE.read_bytes()),
            response_format="diarized_json",
            known_speaker_names=names,
            known_speaker_references=references,
        )
    assert info.value.body["param"] == param and says in info.value.body["message"]


def test_readme_diarization_example_runs_as_written(diarizing_graph):
    """The README's diarization example with the official client, run as written from the root."""
    import re
    import subprocess
    import sys

    from conftest import ROOT

    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### Who spoke when") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines and all(re.match(r"\s*[\d.]+\s+[\d.]+ [AB]: ", line) for line in lines), lines
