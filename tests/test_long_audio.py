"""Long audio through the graph: an hour of speech and silences fanned out over two ASR
replicas (with the driver's memory watched meanwhile), and ten minutes of silence that never
reaches Whisper."""

from __future__ import annotations

import numpy as np
import pytest
import requests
from audio_files import SENTENCES, encode, espeak, jfk
from conftest import graph_args, needs_tool, serving
from process_memory import MemoryPeak, replica_pid

SILENCES = [2.0, 5.0, 0.6, 12.0, 3.0]  # seconds between clips, cycled


def long_args() -> dict:
    args = graph_args(asr_replicas=2)
    args["audio"].update(max_duration_s=7200, max_upload_mb=512)
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
