"""Scanning audio for speech a chunk at a time, so no process holds a whole long file.

Two ways through a file, the same chunks and the same stitching (``pipeline.speech_windows``):

- :func:`scan_chunk` decodes one chunk by seeking to it (wav, flac) and returns the speech it
  holds; the Serve graph sends the chunks of one long file to several preprocess replicas at once
  and stitches their answers in the driver.
- :func:`plan_in_chunks` decodes the file once, front to back, a block at a time, and yields the
  windows as soon as they are final, each with its samples: for formats that cannot seek exactly,
  for short files, and for the in-process runner. It keeps the samples from the first window
  still open onward, about one chunk, so an upload that decodes to hours (a compressed silence)
  costs a chunk of memory, not hours.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import count

import numpy as np

from pipeline.audio import Source
from pipeline.audio_ranges import decode_blocks, decode_range
from pipeline.settings import AudioSettings, VadOptions
from pipeline.speech_windows import FRAME, Chunk, ChunkSpeech, WindowStitcher, chunk_and_overlap
from pipeline.vad import SpeechDetector
from pipeline.windows import Window, plan_windows


@dataclass(frozen=True)
class PlannedWindows:
    """Windows that became final, each with its samples, and how far the file is planned."""

    windows: list[Window]
    samples: list[np.ndarray]
    planned_to: int
    last: bool


def find_speech(
    audio: np.ndarray, chunk: Chunk, detector: SpeechDetector, vad: VadOptions | None, ended: bool
) -> ChunkSpeech:
    """The speech in ``audio``, the decoded samples of ``chunk``'s scanned range."""
    spans = [(chunk.scan_from + s, chunk.scan_from + e) for s, e in detector.speech_spans(audio, vad)]
    return ChunkSpeech(chunk, spans, chunk.scan_from + audio.size, audio_ended=ended)


def scan_chunk(
    source: Source,
    chunk: Chunk,
    detector: SpeechDetector,
    settings: AudioSettings,
    vad: VadOptions | None = None,
    sample_rate: int = 16000,
) -> ChunkSpeech:
    """Decode ``chunk``'s scanned range by seeking, and find its speech."""
    audio = decode_range(
        source,
        chunk.scan_from,
        chunk.scan_to,
        max_duration_s=settings.max_duration_s,
        sample_rate=sample_rate,
    )
    ended = chunk.scan_to is None or audio.size < chunk.scan_to - chunk.scan_from
    return find_speech(audio, chunk, detector, vad, ended)


def sequential_chunks(chunk_s: float, overlap_s: float, sample_rate: int = 16000) -> Iterator[Chunk]:
    """Chunks of ``chunk_s`` from the start, without end: the audio's end shows where they stop."""
    size, overlap = chunk_and_overlap(chunk_s, overlap_s, sample_rate)
    for i in count():
        yield Chunk(i, i * size, (i + 1) * size, max(0, i * size - overlap), (i + 1) * size + overlap)


class _Samples:
    """Decoded samples from ``offset`` on, growing at the end and dropped from the front."""

    def __init__(self) -> None:
        self.offset = 0
        self._parts: list[np.ndarray] = []
        self.end = 0

    def add(self, block: np.ndarray) -> None:
        self._parts.append(block)
        self.end += block.size

    def take(self, start: int, end: int | None) -> np.ndarray:
        joined = np.concatenate(self._parts) if len(self._parts) != 1 else self._parts[0]
        self._parts = [joined]
        stop = self.end if end is None else min(end, self.end)
        return np.ascontiguousarray(joined[max(start, self.offset) - self.offset : stop - self.offset])

    def drop_before(self, position: int) -> None:
        if position <= self.offset:
            return
        joined = np.concatenate(self._parts) if self._parts else np.zeros(0, np.float32)
        cut = min(position, self.end) - self.offset
        self._parts = [joined[cut:].copy()]
        self.offset += cut


def plan_in_chunks(
    source: Source,
    settings: AudioSettings,
    detector: SpeechDetector | None,
    vad: VadOptions | None = None,
    sample_rate: int = 16000,
) -> Iterator[PlannedWindows]:
    """Decode ``source`` once, front to back, and yield its windows as they become final (with
    VAD off, ``detector`` None: the equal split of each chunk)."""
    stitcher = WindowStitcher(sample_rate, settings.window_s, settings.vad_max_gap_s)
    samples = _Samples()
    blocks = decode_blocks(
        source, FRAME * 256, max_duration_s=settings.max_duration_s, sample_rate=sample_rate
    )
    ended = False
    windows_so_far = 0
    for chunk in sequential_chunks(settings.chunk_s, settings.chunk_overlap_s, sample_rate):
        assert chunk.scan_to is not None and chunk.end is not None
        while not ended and samples.end < chunk.scan_to:
            block = next(blocks, None)
            if block is None:
                ended = True
            else:
                samples.add(block)
        ended = ended or samples.end < chunk.scan_to
        audio = samples.take(chunk.scan_from, chunk.scan_to)
        if detector is None:
            windows = _fixed_windows(chunk, samples.end, ended, windows_so_far, settings, sample_rate)
        else:
            windows = stitcher.add(find_speech(audio, chunk, detector, vad, ended))
        windows_so_far += len(windows)
        last = ended if detector is None else stitcher.done
        yield PlannedWindows(
            windows=windows,
            samples=[samples.take(w.start, w.end) for w in windows],
            planned_to=samples.end if last else chunk.end,
            last=last,
        )
        if last:
            return
        next_scan_from = chunk.end - (chunk.scan_to - chunk.end)
        pending = stitcher.pending_from
        samples.drop_before(next_scan_from if pending is None else min(pending, next_scan_from))


def _fixed_windows(
    chunk: Chunk, audio_end: int, ended: bool, first_index: int, settings: AudioSettings, sample_rate: int
) -> list[Window]:
    """VAD off: the chunk (to the audio's end, for the last) split into equal windows."""
    end = audio_end if ended else chunk.end
    assert end is not None
    split = plan_windows(end - chunk.start, sample_rate, settings.window_s)
    return [
        Window(first_index + w.index, chunk.start + w.start, chunk.start + w.end, sample_rate) for w in split
    ]
