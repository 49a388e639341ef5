"""Cut decoded audio into windows Whisper can take (at most 30 s each).

This is the fixed split: the audio is divided into the fewest windows of at most ``window_s``
seconds, all of equal length, so no window is a sliver of a few milliseconds (Whisper tends to
invent text for those). Cutting at silences with VAD builds on the same :class:`Window` type.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Window:
    """A span of the decoded audio, in samples, with its absolute offset."""

    index: int
    start: int
    end: int
    sample_rate: int

    @property
    def start_s(self) -> float:
        return self.start / self.sample_rate

    @property
    def end_s(self) -> float:
        return self.end / self.sample_rate

    @property
    def duration_s(self) -> float:
        return (self.end - self.start) / self.sample_rate

    def cut(self, audio: np.ndarray) -> np.ndarray:
        """This window's samples, as a contiguous array of its own."""
        return np.ascontiguousarray(audio[self.start : self.end])


def plan_windows(num_samples: int, sample_rate: int, window_s: float = 30.0) -> list[Window]:
    """Split ``num_samples`` into equal windows of at most ``window_s`` seconds."""
    if num_samples <= 0:
        return []
    max_len = int(window_s * sample_rate)
    count = math.ceil(num_samples / max_len)
    bounds = [round(i * num_samples / count) for i in range(count + 1)]
    return [Window(i, bounds[i], bounds[i + 1], sample_rate) for i in range(count)]


def plan_speech_windows(
    spans: list[tuple[int, int]], sample_rate: int, window_s: float = 30.0, max_gap_s: float = 2.0
) -> list[Window]:
    """Merge stretches of speech (sample offsets, in order) into windows of at most ``window_s``.

    Consecutive stretches share a window while the window stays within ``window_s`` and the
    silence between them is shorter than ``max_gap_s``; a longer silence always ends a window, so
    Whisper never sees it. A stretch longer than ``window_s`` is split evenly. Silence before,
    between and after the windows is in no window.
    """
    max_len = int(window_s * sample_rate)
    max_gap = int(max_gap_s * sample_rate)
    pieces: list[tuple[int, int]] = []
    for start, end in spans:
        if end <= start:
            continue
        count = math.ceil((end - start) / max_len)
        bounds = [start + round(i * (end - start) / count) for i in range(count + 1)]
        pieces += list(itertools.pairwise(bounds))
    merged: list[list[int]] = []
    for start, end in pieces:
        if merged and end - merged[-1][0] <= max_len and start - merged[-1][1] < max_gap:
            merged[-1][1] = end
        else:
            merged.append([start, end])
    return [Window(i, start, end, sample_rate) for i, (start, end) in enumerate(merged)]
