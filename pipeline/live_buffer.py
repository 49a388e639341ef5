"""A live session's audio, kept from an offset: appended in small pieces, read back by range,
dropped from the front once no turn can need it. Pieces are kept as they came and joined only
when a range is read (a partial pass, a commit), not on every append."""

from __future__ import annotations

from collections import deque

import numpy as np


class LiveBuffer:
    """16 kHz samples ``[start, end)`` of a session's audio (offsets count from the session's start)."""

    def __init__(self) -> None:
        self._pieces: deque[np.ndarray] = deque()
        self.start = 0
        self.end = 0

    def append(self, samples: np.ndarray) -> None:
        if samples.size:
            self._pieces.append(np.asarray(samples, np.float32))
            self.end += samples.size

    def slice(self, start: int, end: int) -> np.ndarray:
        """Samples ``[start, end)``, the part of it still kept (a range before :attr:`start` was dropped)."""
        start, end = max(start, self.start), min(end, self.end)
        if end <= start:
            return np.zeros(0, np.float32)
        out, offset = [], self.start
        for piece in self._pieces:
            if offset >= end:
                break
            lo, hi = max(start - offset, 0), min(end - offset, piece.size)
            if hi > lo:
                out.append(piece[lo:hi])
            offset += piece.size
        return np.concatenate(out)

    def drop_before(self, offset: int) -> None:
        """Forget the samples before ``offset`` (whole pieces, so a little more may stay)."""
        while self._pieces and self.start + self._pieces[0].size <= offset:
            self.start += self._pieces.popleft().size
