from __future__ import annotations

import itertools

import numpy as np
import pytest

from pipeline.windows import plan_windows


@pytest.mark.parametrize("seconds", [0.5, 11.0, 30.0, 30.01, 61.0, 3600.0])
def test_windows_cover_the_audio_in_order_and_are_at_most_30_s(seconds):
    n = int(seconds * 16000)
    windows = plan_windows(n, 16000, 30.0)
    assert windows[0].start == 0 and windows[-1].end == n
    for a, b in itertools.pairwise(windows):
        assert a.end == b.start
    assert all(0 < w.duration_s <= 30.0 for w in windows)
    assert [w.index for w in windows] == list(range(len(windows)))


def test_no_sliver_window():
    windows = plan_windows(int(30.01 * 16000), 16000, 30.0)
    assert len(windows) == 2 and min(w.duration_s for w in windows) > 14


def test_cut_returns_the_window_samples():
    audio = np.arange(16000 * 40, dtype=np.float32)
    w = plan_windows(audio.size, 16000, 30.0)[1]
    piece = w.cut(audio)
    assert piece[0] == w.start and piece.size == w.end - w.start and piece.flags["C_CONTIGUOUS"]


def test_empty_audio_has_no_windows():
    assert plan_windows(0, 16000) == []
