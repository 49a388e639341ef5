"""Chunked planning: a long timeline cut into chunks, scanned apart, stitched into the windows the
whole timeline would give. The VAD here is exact (each chunk sees the true stretches of speech,
clipped to what it scanned), so the stitched plan must equal the unchunked one exactly; the real
VAD's differences at chunk edges are measured through the graph (tests/test_chunked_audio.py)."""

from __future__ import annotations

import itertools
import random

import pytest

from pipeline.speech_windows import Chunk, ChunkSpeech, WindowStitcher, plan_chunks
from pipeline.windows import plan_speech_windows

SR = 16000


def scan(chunk: Chunk, speech: list[tuple[int, int]], total: int) -> ChunkSpeech:
    """What an exact VAD finds in the chunk's scanned range."""
    stop = total if chunk.scan_to is None else min(chunk.scan_to, total)
    seen = [(max(s, chunk.scan_from), min(e, stop)) for s, e in speech if e > chunk.scan_from and s < stop]
    return ChunkSpeech(chunk, seen, stop, audio_ended=stop >= total)


def random_speech(rng: random.Random, total: int, long_talk: bool = False) -> list[tuple[int, int]]:
    spans, at = [], rng.randint(0, 5 * SR)
    while at < total:
        length = rng.randint(SR // 2, (400 if long_talk else 20) * SR)
        spans.append((at, min(total, at + length)))
        at += length + rng.choice([SR // 4, SR, 3 * SR, 20 * SR])
    return spans


def stitched(chunks, speech, total, order) -> tuple[list, list[int]]:
    stitcher = WindowStitcher(SR, window_s=30.0, max_gap_s=2.0)
    windows, settled_after = [], []
    for i in order:
        new = stitcher.add(scan(chunks[i], speech, total))
        windows += new
        settled_after.append(len(new))
    assert stitcher.done
    return windows, settled_after


@pytest.mark.parametrize("seed", range(40))
def test_stitched_windows_equal_the_unchunked_plan(seed):
    rng = random.Random(seed)
    total = rng.randint(20 * 60, 3 * 3600) * SR
    speech = random_speech(rng, total, long_talk=seed % 5 == 0)
    chunks = plan_chunks(total, SR, chunk_s=rng.choice([60, 300]), overlap_s=10)
    order = list(range(len(chunks)))
    if seed % 2:
        rng.shuffle(order)
    windows, _ = stitched(chunks, speech, total, order)
    expected = plan_speech_windows(speech, SR, window_s=30.0, max_gap_s=2.0)
    assert [(w.index, w.start, w.end) for w in windows] == [(w.index, w.start, w.end) for w in expected]


def test_windows_are_settled_chunk_by_chunk_not_at_the_end():
    rng = random.Random(7)
    total = 2 * 3600 * SR
    speech = random_speech(rng, total)
    chunks = plan_chunks(total, SR, chunk_s=300, overlap_s=10)
    _, settled = stitched(chunks, speech, total, range(len(chunks)))
    assert len(chunks) == 24 and settled[0] > 0
    assert sum(settled[:-1]) > 0.9 * sum(settled), "most windows are final before the last chunk"


def test_speech_across_a_cut_stays_in_one_window():
    size = 60 * SR
    chunks = plan_chunks(3 * size, SR, chunk_s=60, overlap_s=10)
    across = (size - 3 * SR, size + 4 * SR)  # speech from 57 s to 64 s: the cut at 60 s is inside
    windows, _ = stitched(chunks, [(SR, 20 * SR), across], 3 * size, [1, 0, 2])
    assert any(w.start <= across[0] and w.end >= across[1] for w in windows)
    assert not any(w.start < size < w.end and w.end < across[1] for w in windows)


def test_chunks_cover_the_timeline_on_the_frame_grid():
    chunks = plan_chunks(3600 * SR + 123, SR, chunk_s=300, overlap_s=10)
    assert len(chunks) == 12 and chunks[-1].last and not chunks[0].last
    for a, b in itertools.pairwise(chunks):
        assert a.end == b.start and a.end % 512 == 0
        assert a.scan_to is not None and a.scan_to > b.start and b.scan_from < a.end
    assert plan_chunks(400 * SR, SR, chunk_s=300, overlap_s=10) == [Chunk(0, 0, None, 0, None)]
