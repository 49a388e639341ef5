"""A long file's timeline in chunks, and the windows stitched from the speech each chunk found.

Why chunks: one process decoding and scanning a multi-hour file is what a long upload would wait
on (VAD runs at a few hundred times real time on one core), and it would hold the whole decoded
file. So the timeline is cut into chunks of minutes that are decoded and scanned independently,
in parallel where the format seeks exactly, and the windows are planned as the chunks come in, so
Whisper starts on the first minutes while later ones are still being decoded.

Each chunk *owns* the speech that starts inside it, and is scanned a little past both of its
edges (``overlap``), so a stretch of speech that crosses a chunk's end is seen whole by the chunk
it starts in; one that runs past the overlap too is continued by the next chunk's view of it. A
window therefore never ends at a chunk cut in the middle of speech.

Windows are final as soon as later audio can no longer change them: :func:`plan_speech_windows`
merges stretches greedily from the left, so every window but the last one before a stretch still
being heard is settled (and the last too, after a silence of ``max_gap_s``, which always ends a
window). The stitched plan is the unchunked plan up to the chunks' edges, where the VAD, started
afresh ``overlap`` seconds earlier, may place a boundary a frame or two apart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pipeline.vad import FRAME  # chunk edges fall on Silero's frames: every chunk sees one 32 ms grid
from pipeline.windows import Window, plan_speech_windows


@dataclass(frozen=True)
class Chunk:
    """A stretch of the timeline, in samples: it owns speech starting in ``[start, end)`` and is
    scanned over ``[scan_from, scan_to)``. The last chunk has no end: it runs to the end of the
    audio, whatever length the container declared."""

    index: int
    start: int
    end: int | None
    scan_from: int
    scan_to: int | None

    @property
    def last(self) -> bool:
        return self.end is None


@dataclass(frozen=True)
class ChunkSpeech:
    """What one chunk's scan found: the stretches of speech in its scanned range (absolute
    sample offsets), how far it really scanned, and whether the audio ended there."""

    chunk: Chunk
    spans: list[tuple[int, int]]
    scanned_to: int
    audio_ended: bool


def chunk_and_overlap(chunk_s: float, overlap_s: float, sample_rate: int) -> tuple[int, int]:
    """A chunk's length and its overlap, in samples, on the frame grid."""
    return max(FRAME, round(chunk_s * sample_rate / FRAME) * FRAME), round(
        overlap_s * sample_rate / FRAME
    ) * FRAME


def plan_chunks(num_samples: int, sample_rate: int, chunk_s: float, overlap_s: float) -> list[Chunk]:
    """Chunks of about ``chunk_s`` covering ``num_samples`` (the declared length), each scanned
    ``overlap_s`` past its edges; one chunk when the audio is not longer than a chunk and a half."""
    size, overlap = chunk_and_overlap(chunk_s, overlap_s, sample_rate)
    count = max(1, math.floor(num_samples / size + 0.5)) if num_samples > 1.5 * size else 1
    chunks = []
    for i in range(count):
        start, end = i * size, (i + 1) * size if i < count - 1 else None
        chunks.append(
            Chunk(
                index=i,
                start=start,
                end=end,
                scan_from=max(0, start - overlap),
                scan_to=None if end is None else end + overlap,
            )
        )
    return chunks


class WindowStitcher:
    """Windows, final and in order, from chunks' speech added in any order.

    Feed each chunk's :class:`ChunkSpeech` to :meth:`add`; it returns the windows that became
    final (numbered from 0 across the file). After the chunk where the audio ended, every window
    has been returned and :attr:`done` is true.
    """

    def __init__(self, sample_rate: int, window_s: float, max_gap_s: float):
        self.sample_rate = sample_rate
        self.window_s = window_s
        self.max_gap = int(max_gap_s * sample_rate)
        self._waiting: dict[int, ChunkSpeech] = {}
        self._next = 0
        self._pending: list[list[int]] = []  # speech not yet in a final window, merged, in order
        self._open_at: int | None = None  # the last pending stretch ran past the scan, at this sample
        self._windows = 0
        self.done = False
        self.planned_to = 0
        """The sample up to which the timeline has been taken in, in order."""

    @property
    def pending_from(self) -> int | None:
        """The first sample a window still to come may start at (None: no speech pending)."""
        return self._pending[0][0] if self._pending else None

    def add(self, found: ChunkSpeech) -> list[Window]:
        """Take one chunk's speech; the windows that are now final, in order."""
        self._waiting[found.chunk.index] = found
        final: list[Window] = []
        while not self.done and self._next in self._waiting:
            final += self._take(self._waiting.pop(self._next))
            self._next += 1
        return final

    def _take(self, found: ChunkSpeech) -> list[Window]:
        chunk = found.chunk
        spans = sorted(found.spans)
        if self._open_at is not None:
            # Speech that ran past the previous chunk's scan: this chunk heard how it goes on.
            reach = [end for start, end in spans if start <= self._open_at <= end]
            if reach:
                self._pending[-1][1] = max(self._pending[-1][1], *reach)
        ended = found.audio_ended or chunk.last
        self.planned_to = found.scanned_to if ended or chunk.end is None else chunk.end
        for start, end in spans:
            if start < chunk.start or (not ended and chunk.end is not None and start >= chunk.end):
                continue  # the previous chunk's speech, or the next chunk's
            if self._pending and start <= self._pending[-1][1]:
                self._pending[-1][1] = max(self._pending[-1][1], end)
            else:
                self._pending.append([start, end])
        if ended:
            self.done = True
            return self._settle(len(self._pending), whole=True)
        # Silero ends a stretch still going when the audio ends at the audio's last sample.
        last_open = bool(self._pending) and self._pending[-1][1] >= found.scanned_to
        self._open_at = found.scanned_to if last_open else None
        horizon = chunk.end if chunk.end is not None else found.scanned_to
        if self._pending and not last_open and horizon - self._pending[-1][1] >= self.max_gap:
            return self._settle(len(self._pending), whole=True)  # nothing later can join them
        # The last stretch may still grow or be joined: settle what comes before it.
        if len(self._pending) < 2:
            return []
        before = len(self._pending) - 1
        gap = self._pending[before][0] - self._pending[before - 1][1]
        return self._settle(before, whole=gap >= self.max_gap)

    def _settle(self, count: int, whole: bool) -> list[Window]:
        """Final windows from the first ``count`` pending stretches: all of their windows when
        nothing after can join them (``whole``), else all but the last, which may still grow."""
        spans = [(start, end) for start, end in self._pending[:count]]
        planned = plan_speech_windows(
            spans, self.sample_rate, window_s=self.window_s, max_gap_s=self.max_gap / self.sample_rate
        )
        if not whole and planned:
            held = planned.pop()
            rest = [[max(start, held.start), end] for start, end in self._pending if end > held.start]
        else:
            rest = self._pending[count:]
        self._pending = rest
        final = [Window(self._windows + i, w.start, w.end, w.sample_rate) for i, w in enumerate(planned)]
        self._windows += len(final)
        return final
