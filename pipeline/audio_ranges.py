"""Parts of a long recording, decoded without decoding (or holding) all of it.

A long file is cut into chunks that several processes decode in parallel, each only its own
range. :func:`probe_audio` reads the headers (duration, format) and says whether the file seeks
exactly; :func:`decode_range` decodes one range, by seeking when it does; :func:`decode_blocks`
decodes the whole file once, a block at a time, for files that do not. All three open and check
the file as :func:`pipeline.audio.decode_audio` does and share its decode loop, so they refuse
the same files with the same errors and give the same samples.

Why seeking is exact only for PCM (wav, w64, aiff) and FLAC. PyAV's ``container.seek`` is FFmpeg's
``av_seek_frame``: it lands on a packet at or before the target, and a range decoded from there
equals the slice of a whole decode only where that packet's timestamp is its exact sample index
and its samples do not depend on what came before. PCM is a byte offset times the block size. FLAC
frames are independent and each header carries its first sample's number (the demuxer seeks by the
seek table or a bisection over frame headers). A file that declares no length (a FLAC written as a
stream, with 0 total samples) takes the safe path. The others need not seek exactly: mp3 has no
index (FFmpeg seeks by the bitrate or a 100-point Xing table, so a VBR file lands roughly, with
timestamps from the estimate) and its bit reservoir reaches into earlier frames; AAC (m4a) and
Opus (ogg, webm) decoders carry state from frame to frame (overlapped transforms, SBR,
prediction), so after a seek they only converge to the whole decode's samples, and the encoder's
priming is skipped at the first packet only; WebM's timestamps are milliseconds. (With the
pre-roll a CBR mp3, a 16 kHz m4a and an Ogg Opus did come out identical in a try: luck, not a
guarantee.) Those are decoded from the start, skipping what comes before the range, or once with
:func:`decode_blocks`.

The resampler is the other half. A seek aims :data:`PRE_ROLL_S` before the range (FFmpeg lands at
or before its target), so the resampler's start-up transient (its filter's half-length, a few
milliseconds) falls before the range. And the resampler restarts on the same grid as a whole
decode: from 44.1 to 16 kHz its phase repeats every 441 input samples (160 output samples), so the
input is fed from a multiple of 441, whose output sample index is known exactly. The samples are
then bit-identical to the slice of :func:`~pipeline.audio.decode_audio` (measured for 8, 16,
22.05, 44.1 and 48 kHz sources); fed from any other input sample the grid shifts by a fraction of
an output sample, and samples of speech peaking at 0.77 differ by up to 0.15.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
import numpy as np

from pipeline.audio import NO_SAMPLES, SAMPLE_RATE, Source, _Decoder, _Samples, _too_long
from pipeline.errors import AudioTooLong, UndecodableAudio

#: Containers (FFmpeg's ``container.format.name``) whose seeks land sample-exactly, with PCM
#: inside (or FLAC in FLAC) and a declared duration.
EXACT_SEEK_FORMATS = frozenset({"wav", "w64", "aiff", "flac"})
#: How far before a range a seek aims, so the resampler settles before the range starts.
PRE_ROLL_S = 0.5
#: The least a seek must land before the range (else the range is decoded from the start).
MIN_PRE_ROLL_S = 0.1


@dataclass(frozen=True)
class AudioInfo:
    #: Seconds, as the container declares them; None when it does not.
    duration_s: float | None
    #: Whether a seek lands sample-exactly, so :func:`decode_range` can start mid-file.
    seekable: bool
    #: FFmpeg's name of the container format ("wav", "flac", "mp3", "mov,mp4,m4a,3gp,3g2,mj2", ...).
    format: str
    #: The audio stream's channel count.
    channels: int = 1


def probe_audio(source: Source, *, max_duration_s: float) -> AudioInfo:
    """Duration, format and seekability of ``source``, from its headers (and, for a raw stream
    such as mp3 that FFmpeg only guesses, its first frames).

    Raises what :func:`~pipeline.audio.decode_audio` raises before decoding: :class:`EmptyAudio`,
    :class:`NotAudio`, :class:`NoAudioStream`, :class:`UndecodableAudio`, and :class:`AudioTooLong`
    when the declared duration passes ``max_duration_s`` (+1 s).
    """
    with _Decoder(source, max_duration_s=max_duration_s) as decoder:
        duration = decoder.declared
        if duration is None and decoder.container.duration is not None:
            # Matroska/WebM declares the segment's duration, not the stream's.
            duration = decoder.container.duration / av.time_base
            if duration > max_duration_s + 1.0:
                raise AudioTooLong(_too_long(duration, max_duration_s))
        return AudioInfo(duration, _seeks_exactly(decoder), decoder.container.format.name, decoder.channels)


def decode_range(
    source: Source,
    start: int,
    end: int | None,
    *,
    max_duration_s: float,
    sample_rate: int = SAMPLE_RATE,
    seek: bool = True,
) -> np.ndarray:
    """Samples ``[start, end)`` of ``source`` decoded to mono float32 at ``sample_rate`` (``end``
    None: to the end), the same as ``decode_audio(source, ...)[start:end]``: bit-identical for
    every source the tests try, resampled or not (see the module's docstring). Fewer samples
    when the audio ends first; none when it ends before ``start``.

    With ``seek`` and a file that seeks exactly (:attr:`AudioInfo.seekable`) the decode starts
    :data:`PRE_ROLL_S` before ``start``; otherwise it starts at the beginning and drops what comes
    before ``start`` as it goes. Either way only the range is held. Raises what ``decode_audio``
    raises, :class:`AudioTooLong` only when the range reaches past ``max_duration_s`` (or the
    header declares more than it).
    """
    if start < 0 or (end is not None and end < start):
        raise ValueError(f"Bad sample range [{start}, {end})")
    take = functools.partial(
        _take, start=start, end=end, max_duration_s=max_duration_s, sample_rate=sample_rate
    )
    with _Decoder(source, max_duration_s=max_duration_s) as decoder:
        if not (seek and start > 0 and _seeks_exactly(decoder)):
            return take(decoder, decoder.frames(), 0)
        landed = _seek(decoder, start, sample_rate)
        if landed is not None:
            return take(decoder, *landed)
    # The seek landed too late (FFmpeg seeks backward, so never seen): decode from the start.
    with _Decoder(source, max_duration_s=max_duration_s) as decoder:
        return take(decoder, decoder.frames(), 0)


def decode_blocks(
    source: Source, block: int, *, max_duration_s: float, sample_rate: int = SAMPLE_RATE
) -> Iterator[np.ndarray]:
    """The whole of ``source`` decoded as ``decode_audio`` decodes it, as consecutive float32
    arrays of ``block`` samples (the last one shorter, never empty): concatenated, they are
    ``decode_audio``'s output. One block is held at a time (each yielded array is the caller's).

    Raises what ``decode_audio`` raises, from the iteration: the header's errors at the first
    ``next()``, :class:`AudioTooLong` once the decode passes ``max_duration_s``, possibly after
    some blocks were yielded.
    """
    if block <= 0:
        raise ValueError(f"block must be positive, not {block}")
    limit = int(max_duration_s * sample_rate)
    total = filled = 0
    buffer = np.empty(block, np.float32)
    with _Decoder(source, max_duration_s=max_duration_s) as decoder:
        for mono in decoder.mono(decoder.frames(), sample_rate):
            total += mono.size
            if total > limit:
                raise AudioTooLong(_too_long(total / sample_rate, max_duration_s, partial=True))
            while mono.size:
                n = min(block - filled, mono.size)
                buffer[filled : filled + n] = mono[:n]
                filled, mono = filled + n, mono[n:]
                if filled == block:
                    yield buffer
                    buffer, filled = np.empty(block, np.float32), 0
    if total == 0:
        raise UndecodableAudio(NO_SAMPLES)
    if filled:
        yield buffer[:filled]


def _seeks_exactly(decoder: _Decoder) -> bool:
    codec = decoder.stream.codec_context.name
    fmt = decoder.container.format.name
    return (
        fmt in EXACT_SEEK_FORMATS
        and decoder.declared is not None
        and (codec == "flac" if fmt == "flac" else codec.startswith("pcm_"))
    )


def _seek(decoder: _Decoder, start: int, sample_rate: int) -> tuple[Iterator[av.AudioFrame], int] | None:
    """Seek to before output sample ``start``: the decoded frames from an input sample on the
    resampler's grid, and the output sample index it becomes; None if the seek landed too late."""
    stream = decoder.stream
    rate = stream.codec_context.sample_rate
    step_in = rate // math.gcd(rate, sample_rate)  # input samples per period of the resampler's phase
    step_out = sample_rate // math.gcd(rate, sample_rate)
    origin = stream.start_time or 0
    assert stream.time_base is not None  # every demuxer sets it
    target = Fraction(start, sample_rate) - Fraction(PRE_ROLL_S) - Fraction(step_in, rate)
    decoder.seek(origin + max(math.floor(target / stream.time_base), 0))
    frames = decoder.frames()
    first = next(frames, None)
    if first is None and decoder.declared is not None and target >= decoder.declared:
        return iter(()), start  # the audio ends before the seek's target (a PCM seek goes past it)
    if first is None or first.pts is None:
        return None
    index = (first.pts - origin) * stream.time_base * rate  # of the first decoded input sample
    if index.denominator != 1 or index < 0:
        return None
    fed = -(-int(index) // step_in) * step_in
    position = fed // step_in * step_out
    if position > 0 and position > start - MIN_PRE_ROLL_S * sample_rate:
        return None
    return _skip_input(itertools.chain([first], frames), fed - int(index)), position


def _skip_input(frames: Iterator[av.AudioFrame], skip: int) -> Iterator[av.AudioFrame]:
    """``frames`` without their first ``skip`` samples."""
    for frame in frames:
        if skip >= frame.samples:
            skip -= frame.samples
            continue
        if skip:
            frame = _trimmed(frame, skip)
            skip = 0
        yield frame


def _trimmed(frame: av.AudioFrame, skip: int) -> av.AudioFrame:
    """``frame`` without its first ``skip`` samples."""
    data: Any = frame.to_ndarray()  # channels x samples, or 1 x interleaved samples
    data = data[:, skip:] if frame.format.is_planar else data[:, skip * frame.layout.nb_channels :]
    trimmed = av.AudioFrame.from_ndarray(
        np.ascontiguousarray(data), format=frame.format.name, layout=frame.layout.name
    )
    trimmed.sample_rate = frame.sample_rate
    trimmed.time_base = frame.time_base
    if frame.pts is not None and frame.time_base is not None:
        trimmed.pts = frame.pts + round(Fraction(skip, frame.sample_rate) / frame.time_base)
    return trimmed


def _take(
    decoder: _Decoder,
    frames: Iterator[av.AudioFrame],
    position: int,
    start: int,
    end: int | None,
    *,
    max_duration_s: float,
    sample_rate: int,
) -> np.ndarray:
    """Output samples ``[start, end)`` of ``frames``, whose first output sample is ``position``;
    the samples before ``start`` are dropped as they come."""
    limit = int(max_duration_s * sample_rate)
    known = [stop for stop in (end, limit + 1) if stop is not None]
    if decoder.declared is not None:
        known.append(int((decoder.declared + 1.0) * sample_rate))
    kept = _Samples(
        min(known) - start if end is not None or decoder.declared is not None else 60 * sample_rate
    )
    origin = position
    chunks = decoder.mono(frames, sample_rate)
    try:
        for mono in chunks:
            first, position = position, position + mono.size
            if position > limit and (end is None or end > limit):
                raise AudioTooLong(_too_long(position / sample_rate, max_duration_s, partial=True))
            stop = mono.size if end is None else min(end - first, mono.size)
            if max(start - first, 0) < stop:
                kept.add(mono[max(start - first, 0) : stop])
            if end is not None and position >= end:
                break
    finally:
        chunks.close()
    if origin == 0 and position == 0:
        raise UndecodableAudio(NO_SAMPLES)
    return kept.array
