"""Who spoke when in a recording with a channel per party: one speaker per channel, no model.

Call centres and phone recorders keep each party on its own channel (the agent left, the caller
right), so the speakers are known exactly and need no voice prints: a channel's speech is its
speaker's. Each channel is decoded on its own (the transcript's windows are a mix of all channels)
and Silero VAD finds its speech, with diarization's short pause (``min_pause_s``), so turns change
where people change over.

Why the loudness check: a phone line leaks each party into the other's channel (echo, a headset's
sidetone), some 20-40 dB down, and Silero finds speech at any level, so the leak would show as the
other party talking over every turn. A channel's speech counts only in the 20 ms frames where the
channel is within ``bleed_db`` of the loudest channel; two people talking at once at similar
levels both keep their speech.

The file is decoded a block at a time (five minutes: 38 MB of float32 per stereo block), so an
hour's call is never held whole; a turn across a block's edge is joined again.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.audio import NO_SAMPLES, SAMPLE_RATE, Source, _Decoder, _too_long
from pipeline.diarization import MAX_SPEAKERS, speaker_label
from pipeline.errors import AudioTooLong, ChannelCountError, UndecodableAudio
from pipeline.schemas import SpeakerTurn
from pipeline.settings import VadOptions
from pipeline.vad import SpeechDetector

FRAME = SAMPLE_RATE // 50
"""Samples in one 20 ms loudness frame."""
SILENCE_DB = -60.0
"""Frames quieter than this (dBFS) are silence: they say nothing about whose speech it is."""


@dataclass(frozen=True)
class ChannelOptions:
    """How each channel's speech becomes its speaker's turns."""

    bleed_db: float = 15.0
    """A channel's speech counts only where it is at most this much quieter than the loudest
    channel; below that it is the other party leaking in."""
    min_turn_s: float = 0.2
    """Speech shorter than this (once the leak is taken out) is not a turn."""
    merge_gap_s: float = 0.3
    """Two turns of one channel with a shorter pause between are one turn."""
    block_s: float = 300.0
    """Audio decoded and searched at a time."""


def _levels(block: np.ndarray) -> np.ndarray:
    """(channels, frames) loudness in dBFS of each 20 ms frame (the last, partial one included)."""
    channels, n = block.shape
    frames = -(-n // FRAME)
    padded = np.zeros((channels, frames * FRAME), np.float32)
    padded[:, :n] = block
    power = (padded.reshape(channels, frames, FRAME).astype(np.float64) ** 2).mean(axis=2)
    return 10 * np.log10(power + 1e-10)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(first, end) of each run of True."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def _channel_spans(
    block: np.ndarray, detector: SpeechDetector, vad: VadOptions, bleed_db: float
) -> list[list[tuple[int, int]]]:
    """Each channel's speech in ``block`` as (start, end) samples, leaks taken out: a stretch
    Silero found goes when most of its sound is another channel's leak (its padding with it), and
    what is left loses the frames where another channel is louder by more than ``bleed_db``."""
    level = _levels(block)
    loud = level >= level.max(axis=0, keepdims=True) - bleed_db
    found = []
    for channel, samples in enumerate(block):
        speech = np.zeros(level.shape[1], bool)
        for a, b in detector.speech_spans(samples, vad):
            frames = slice(a // FRAME, -(-b // FRAME))
            sounding = level[channel, frames] > SILENCE_DB
            if sounding.any() and loud[channel, frames][sounding].mean() >= 0.5:
                speech[frames] = True
        found.append([(a * FRAME, min(b * FRAME, block.shape[1])) for a, b in _runs(speech & loud[channel])])
    return found


def _join(spans: list[tuple[int, int]], gap: int, shortest: int) -> list[tuple[int, int]]:
    """``spans`` (in order) with pauses under ``gap`` closed, then those under ``shortest`` dropped."""
    joined: list[tuple[int, int]] = []
    for a, b in spans:
        if joined and a - joined[-1][1] < gap:
            joined[-1] = (joined[-1][0], b)
        else:
            joined.append((a, b))
    return [(a, b) for a, b in joined if b - a >= shortest]


def channel_turns(
    source: Source,
    detector: SpeechDetector,
    vad: VadOptions,
    *,
    max_duration_s: float,
    options: ChannelOptions | None = None,
) -> list[SpeakerTurn]:
    """The turns of ``source``'s speakers, one per channel (``A`` the first channel, usually the
    left), in order of start; two people talking at once give overlapping turns.

    Raises :class:`ChannelCountError` for a mono file, and what decoding raises
    (:func:`pipeline.audio.decode_audio`).
    """
    options = options or ChannelOptions()
    block = round(options.block_s * SAMPLE_RATE)
    limit = round(max_duration_s * SAMPLE_RATE)
    spans: list[list[tuple[int, int]]] = []
    with _Decoder(source, max_duration_s=max_duration_s) as decoder:
        count = decoder.channels
        ChannelCountError.check(count, MAX_SPEAKERS)
        spans = [[] for _ in range(count)]
        buffer = np.empty((count, block), np.float32)
        filled = offset = 0

        lead = np.zeros((count, 0), np.float32)

        def search(samples: np.ndarray) -> None:
            """Find speech in the next block, the second before it in front: Silero starts each
            call afresh and would be late to hear a turn already under way."""
            nonlocal lead
            audio = np.concatenate([lead, samples], axis=1)
            start = offset - lead.shape[1]
            for channel, found in enumerate(_channel_spans(audio, detector, vad, options.bleed_db)):
                new = [(max(offset, start + a), start + b) for a, b in found if start + b > offset]
                spans[channel] += new
            lead = audio[:, -SAMPLE_RATE:].copy()

        for frame in decoder.planar(decoder.frames(), SAMPLE_RATE):
            if offset + filled + frame.shape[1] > limit:
                seconds = (offset + filled + frame.shape[1]) / SAMPLE_RATE
                raise AudioTooLong(_too_long(seconds, max_duration_s, partial=True))
            while frame.shape[1]:
                n = min(block - filled, frame.shape[1])
                buffer[:, filled : filled + n] = frame[:, :n]
                filled, frame = filled + n, frame[:, n:]
                if filled == block:
                    search(buffer)
                    offset, filled = offset + block, 0
        if filled:
            search(buffer[:, :filled])
    if offset + filled == 0:
        raise UndecodableAudio(NO_SAMPLES)
    gap, shortest = round(options.merge_gap_s * SAMPLE_RATE), round(options.min_turn_s * SAMPLE_RATE)
    seconds = 1 / SAMPLE_RATE
    turns = [
        SpeakerTurn(start=round(a * seconds, 3), end=round(b * seconds, 3), speaker=speaker_label(channel))
        for channel, found in enumerate(spans)
        for a, b in _join(found, gap, shortest)
    ]
    return sorted(turns, key=lambda turn: (turn.start, turn.end))
