"""Long audio through the graph: an hour of speech and silences cut in chunks across two
preprocess replicas and fanned out over two ASR replicas (with the driver's memory watched
meanwhile); windows, and their translations, streamed before the last chunk is planned; the
transcript of a chunked file equal to the in-process runner's, which plans the whole file at once;
a preprocess replica killed mid-file; two hours of compressed silence decoded in bounded memory;
and ten minutes of silence that never reaches Whisper."""

from __future__ import annotations

import numpy as np
import pytest
import requests
from audio_files import SENTENCES, encode, espeak, jfk
from conftest import graph_args, needs_tool, serving
from process_memory import MemoryPeak, replica_pid, replica_pids
from test_faults import kill_one

from pipeline.client import sse_events
from pipeline.settings import PipelineSettings

SILENCES = [2.0, 5.0, 0.6, 12.0, 3.0]  # seconds between clips, cycled


def long_args() -> dict:
    """Two ASR and two preprocess replicas; files over 2 minutes are cut in 1-minute chunks."""
    args = graph_args(asr_replicas=2)
    args["audio"].update(max_duration_s=7200, max_upload_mb=512, chunked_above_s=120, chunk_s=60)
    preprocess = args["deployments"]["preprocess"]
    preprocess.pop("autoscaling_config", None)
    preprocess["num_replicas"] = 2
    return args


@pytest.fixture(scope="module")
def long_graph():
    with serving(long_args()) as url:
        yield url


def hour_of_speech() -> tuple[np.ndarray, list[tuple[float, float]]]:
    """About an hour: the shared JFK clip and espeak-ng sentences in turn, with silences between;
    and the silences of 2 s or more, as (start, end) seconds."""
    clips = [jfk(), *(espeak(text) for text in SENTENCES)]
    parts, silences, t, i = [], [], 0.0, 0
    while t < 3600:
        clip = clips[i % len(clips)]
        parts.append(clip)
        t += clip.size / 16000
        gap = SILENCES[i % len(SILENCES)]
        parts.append(np.zeros(int(gap * 16000), np.float32))
        if gap >= 2.0:
            silences.append((t, t + gap))
        t += gap
        i += 1
    return np.concatenate(parts), silences


@needs_tool("espeak-ng", package="espeak-ng")
def test_an_hour_fans_out_over_both_asr_replicas(long_graph):
    audio, silences = hour_of_speech()
    data = encode(audio, 16000, "flac")
    warm = requests.post(
        f"{long_graph}/v1/transcribe",
        files={"file": ("jfk.flac", encode(jfk(), 16000, "flac"))},
        data={"language": "en"},
        timeout=300,
    )
    assert warm.status_code == 200, warm.text
    with MemoryPeak(replica_pid("ingress")) as driver:
        r = requests.post(
            f"{long_graph}/v1/transcribe",
            files={"file": ("hour.flac", data)},
            data={"language": "en", "punctuate": "false", "summarize": "false"},
            timeout=1200,
        )
    assert r.status_code == 200, r.text[:500]
    decoded = audio.size * 4
    print(
        f"driver: heap +{driver.heap_growth / 2**20:.0f} MiB, RSS +{driver.rss_growth / 2**20:.0f} MiB "
        f"for a {len(data) / 2**20:.0f} MiB upload"
    )
    assert driver.heap_growth < len(data) + 50 * 2**20, (
        f"the driver's heap grew {driver.heap_growth / 2**20:.0f} MiB "
        f"for a {len(data) / 2**20:.0f} MiB upload "
        f"({decoded / 2**20:.0f} MiB decoded)"
    )
    doc = r.json()
    assert doc["duration_s"] == pytest.approx(audio.size / 16000, abs=0.05)
    by_replica = doc["timings"]["asr_windows_by_replica"]
    assert len(by_replica) == 2 and all(n > 0 for n in by_replica.values()), by_replica
    chunks = doc["timings"]["preprocess_chunks_by_replica"]
    assert len(chunks) == 2 and sum(chunks.values()) == 60, "both preprocess replicas cut chunks"
    assert all(n > 5 for n in chunks.values()), chunks
    segments = doc["segments"]
    starts = [s["start"] for s in segments]
    assert starts == sorted(starts) and segments[-1]["end"] <= doc["duration_s"]
    assert segments[-1]["end"] > 3500, "the speech up to the end is covered"
    for s in segments:
        for start, end in silences:
            assert not (s["start"] >= start + 0.3 and s["end"] <= end - 0.3), (s, start, end)


def test_ten_minutes_of_silence_give_no_segments_fast(long_graph):
    data = encode(np.zeros(16000 * 600, np.float32), 16000, "flac")
    r = requests.post(f"{long_graph}/v1/transcribe", files={"file": ("quiet.flac", data)}, timeout=300)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["segments"] == [] and doc["duration_s"] == pytest.approx(600.0)
    assert doc["timings"]["asr_windows_by_replica"] == {}, "Whisper was not called"
    assert doc["timings"]["total_s"] < 60


def minutes_of_speech(minutes: float) -> np.ndarray:
    """Speech with pauses of 0.6 to 12 s, so that some speech crosses the 1-minute chunk cuts."""
    audio, _ = hour_of_speech()
    return audio[: int(minutes * 60 * 16000)]


@needs_tool("espeak-ng", package="espeak-ng")
def test_a_chunked_file_gives_the_runners_transcript(long_graph):
    from pipeline.runner import InProcessPipeline

    args = long_args()
    settings = PipelineSettings.model_validate(
        {k: v for k, v in args.items() if k not in ("deployments", "api")}
    )
    audio = minutes_of_speech(4)
    data = encode(audio, 16000, "wav")
    local = InProcessPipeline(settings).transcribe(data, language="en", punctuate=False, summarize=False)
    r = requests.post(
        f"{long_graph}/v1/transcribe",
        files={"file": ("four.wav", data)},
        data={"language": "en", "punctuate": "false", "summarize": "false"},
        timeout=600,
    )
    assert r.status_code == 200, r.text
    doc = r.json()
    assert sum(doc["timings"]["preprocess_chunks_by_replica"].values()) == 4, "cut in 4 chunks"
    assert doc["timings"]["windows"] == local.timings.windows
    assert [(s["start"], s["end"], s["text"]) for s in doc["segments"]] == [
        (s.start, s.end, s.text) for s in local.segments
    ]


@needs_tool("espeak-ng", package="espeak-ng")
def test_segments_stream_before_the_last_chunk_is_planned(long_graph):
    data = encode(minutes_of_speech(20), 16000, "flac")
    events = []
    with requests.post(
        f"{long_graph}/v1/transcribe",
        files={"file": ("twenty.flac", data)},
        data={
            "language": "en",
            "punctuate": "false",
            "summarize": "false",
            "stream": "true",
            "translate_to": "fr",
        },
        stream=True,
        timeout=600,
    ) as r:
        assert r.status_code == 200, r.text
        for event, body in sse_events(r):
            events.append((event, body))
    kinds = [event for event, _ in events]
    first_segment = kinds.index("segment")
    planning_done = next(
        i for i, (event, body) in enumerate(events) if event == "progress" and body["planning_done"]
    )
    assert first_segment < planning_done, "a segment went out while later chunks were being decoded"
    # Translated chunk by chunk as the windows end, not once the whole file is known.
    assert kinds.index("translation") < planning_done, "a translation went out before the file was planned"
    document = events[-1][1]
    translated = [body for event, body in events if event == "translation"]
    assert [t["id"] for t in translated] == [s["id"] for s in document["segments"]]
    planned = [body["audio_planned_s"] for event, body in events if event == "progress"]
    assert planned == sorted(planned) and planned[-1] == pytest.approx(1200, abs=1)
    # Chunks are scanned four at a time over two replicas and finish in any order: the first part
    # settles once chunk 0 is in, with chunks 1 to 3 perhaps already (240 s planned at once).
    assert planned[0] <= 300 and len(set(planned)) > 5, "planned part by part, from the start"


@needs_tool("espeak-ng", package="espeak-ng")
def test_a_preprocess_replica_killed_mid_file_loses_nothing(long_graph):
    data = encode(minutes_of_speech(12), 16000, "wav")
    form = {"language": "en", "punctuate": "false", "summarize": "false"}
    whole = requests.post(
        f"{long_graph}/v1/transcribe", files={"file": ("a.wav", data)}, data=form, timeout=600
    )
    assert whole.status_code == 200, whole.text
    events = []
    with requests.post(
        f"{long_graph}/v1/transcribe",
        files={"file": ("a.wav", data)},
        data={**form, "stream": "true"},
        stream=True,
        timeout=600,
    ) as r:
        assert r.status_code == 200, r.text
        for event, body in sse_events(r):
            if not events:
                kill_one("preprocess")  # the first part is planned; later chunks are in flight
            events.append((event, body))
    kinds = [event for event, _ in events]
    assert kinds[-1] == "document", events[-1]
    doc = events[-1][1]
    expected = whole.json()
    assert doc["timings"]["windows"] == expected["timings"]["windows"]
    assert [s["text"] for s in doc["segments"]] == [s["text"] for s in expected["segments"]]


def test_two_hours_of_compressed_silence_are_decoded_in_bounded_memory(long_graph):
    # Opus cannot seek exactly, so one replica decodes it front to back: 2 hours are 440 MiB as
    # float32, but it holds about a chunk at a time.
    data = encode(np.zeros(16000 * 7200, np.float32), 16000, "ogg", rate=16000)
    assert len(data) < 8 * 2**20
    pids = replica_pids("preprocess")
    assert len(pids) == 2
    with MemoryPeak(pids[0]) as first, MemoryPeak(pids[1]) as second:
        r = requests.post(f"{long_graph}/v1/transcribe", files={"file": ("quiet.ogg", data)}, timeout=600)
    assert r.status_code == 200, r.text
    assert r.json()["duration_s"] == pytest.approx(7200, abs=0.1)
    growth = max(first.heap_growth, second.heap_growth)
    print(
        f"preprocess replicas: heap +{first.heap_growth / 2**20:.0f} / +{second.heap_growth / 2**20:.0f} MiB"
    )
    assert growth < 120 * 2**20, f"a replica's heap grew {growth / 2**20:.0f} MiB decoding 2 h of silence"
