"""A long file planned in chunks with the real VAD, without Ray: front to back in one pass, and
chunk by chunk by seeking (as preprocess replicas do in parallel), against the whole file scanned
at once. Tolerance: the same windows, each edge within one Silero frame (32 ms): a chunk's VAD
starts afresh ``chunk_overlap_s`` before the chunk, and its recurrent state can put a threshold
crossing one frame apart from the whole file's."""

from __future__ import annotations

import io

import numpy as np
import pytest
from audio_files import encode, espeak, jfk
from conftest import needs_tool

from pipeline.audio import decode_audio
from pipeline.long_audio import plan_in_chunks, scan_chunk
from pipeline.settings import AudioSettings
from pipeline.speech_windows import WindowStitcher, plan_chunks
from pipeline.vad import SpeechDetector, WindowPlanner

SR = 16000
SETTINGS = AudioSettings(chunk_s=60, chunk_overlap_s=10)
LONG_SENTENCE = (
    "The committee met on Tuesday morning to discuss the budget for the coming year, and after "
    "a long debate about roads, schools and the harbour it agreed to meet again next week"
)


@pytest.fixture(scope="module")
def detector() -> SpeechDetector:
    return SpeechDetector(SETTINGS)


@pytest.fixture(scope="module")
def speech() -> tuple[np.ndarray, tuple[float, float]]:
    """Six minutes of the JFK clip with pauses of 0.4 to 6 s, and one long sentence spoken
    across the cut at 2:00; with where that sentence is, in seconds."""
    clip, parts, t, i = jfk(), [], 0.0, 0
    sentence = espeak(LONG_SENTENCE, words_per_minute=150)
    gaps = [0.4, 2.5, 6.0, 1.0]
    across = (0.0, 0.0)
    while t < 360:
        if across == (0.0, 0.0) and t + clip.size / SR > 112:
            start = 120 - sentence.size / SR / 2
            parts.append(np.zeros(int((start - t) * SR), np.float32))
            parts.append(sentence)
            across = (start, start + sentence.size / SR)
            t = across[1]
        parts.append(clip)
        t += clip.size / SR
        gap = gaps[i % len(gaps)]
        parts.append(np.zeros(int(gap * SR), np.float32))
        t += gap
        i += 1
    return np.concatenate(parts), across


def edges(windows) -> list[tuple[int, int]]:
    return [(w.start, w.end) for w in windows]


def assert_equivalent(chunked, whole) -> None:
    assert len(chunked) == len(whole)
    for (a, b), (c, d) in zip(edges(chunked), edges(whole), strict=True):
        assert abs(a - c) <= 512 and abs(b - d) <= 512, ((a, b), (c, d))


@needs_tool("espeak-ng", package="espeak-ng")
@pytest.mark.parametrize("fmt", ["wav", "flac"])
def test_chunked_plans_match_the_whole_file_plan(detector, speech, fmt):
    audio, across = speech
    data = encode(audio, SR, fmt)  # flac at 44.1 kHz: every chunk is resampled from its seek point
    decoded = decode_audio(data, max_duration_s=3600)
    whole = WindowPlanner(SETTINGS).plan(decoded)
    one_pass = [w for part in plan_in_chunks(data, SETTINGS, detector) for w in part.windows]
    chunks = plan_chunks(decoded.size, SR, SETTINGS.chunk_s, SETTINGS.chunk_overlap_s)
    assert len(chunks) == 6
    stitcher = WindowStitcher(SR, SETTINGS.window_s, SETTINGS.vad_max_gap_s)
    seeking = []
    for chunk in reversed(chunks):  # in any order, as replicas answer
        seeking += stitcher.add(scan_chunk(io.BytesIO(data), chunk, detector, SETTINGS))
    assert stitcher.done
    assert_equivalent(one_pass, whole)
    assert_equivalent(seeking, whole)
    start, end = across
    holder = [w for w in seeking if w.start_s <= start + 0.3 and w.end_s >= end - 0.3]
    assert holder, f"the sentence from {start:.1f} s to {end:.1f} s (across the 120 s cut) is in one window"
    assert not any(start + 0.5 < w.end_s < end - 0.5 for w in seeking), "no window ends inside it"


@needs_tool("espeak-ng", package="espeak-ng")
def test_one_pass_holds_about_a_chunk_and_settles_windows_chunk_by_chunk(detector, speech):
    audio, _ = speech
    parts = list(plan_in_chunks(encode(audio, SR, "wav"), SETTINGS, detector))
    assert len(parts) == 6 and parts[-1].last and not any(p.last for p in parts[:-1])
    assert all(p.windows for p in parts[:-1]), "every chunk settles windows before the file ends"
    assert [p.planned_to for p in parts[:-1]] == [60 * SR * i for i in range(1, 6)]
    assert parts[-1].planned_to == audio.size
    for part in parts:
        assert [x.size for x in part.samples] == [w.end - w.start for w in part.windows]
