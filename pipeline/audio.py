"""Decode any audio container to mono float32 at 16 kHz.

Why PyAV: it bundles FFmpeg's demuxers, decoders and resampler in the wheel, so wav, flac (also
24-bit), mp3, ogg/opus, m4a and webm decode with no system ``ffmpeg`` binary and no subprocess
per request. Decoding is streamed frame by frame through one resampler, so the duration limit is
enforced while decoding: an over-long upload is refused as soon as it passes the limit, not after
all of it has been expanded into memory.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import BinaryIO

import av
import numpy as np

from pipeline.errors import AudioTooLong, EmptyAudio, NoAudioStream, NotAudio, UndecodableAudio

SAMPLE_RATE = 16_000


Source = bytes | bytearray | memoryview | str | os.PathLike | BinaryIO


def _open(source: Source) -> av.container.InputContainer:
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise EmptyAudio("The uploaded file is empty (0 bytes). Send an audio file.")
        fileobj: str | BinaryIO = io.BytesIO(source)
        name = "The upload"
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"No such audio file: {path}")
        if path.stat().st_size == 0:
            raise EmptyAudio(f"{path} is empty (0 bytes). Give an audio file.")
        fileobj, name = str(path), str(path)
    else:
        fileobj, name = source, "The upload"
    try:
        return av.open(fileobj, mode="r", metadata_errors="ignore")
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise NotAudio(
            f"{name} is not a recognised audio or video file ({exc.__class__.__name__}). "
            "Send wav, flac, mp3, ogg/opus, m4a or webm."
        ) from None


def decode_audio(source: Source, *, max_duration_s: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode ``source`` (bytes, a path or a binary file object) to mono float32 at ``sample_rate``.

    Raises :class:`EmptyAudio`, :class:`NotAudio`, :class:`NoAudioStream`,
    :class:`UndecodableAudio` or :class:`AudioTooLong`.
    """
    limit = int(max_duration_s * sample_rate)
    with _open(source) as container:
        if not container.streams.audio:
            raise NoAudioStream(
                "The file has no audio stream (it may be video or an image only). "
                "Send a file with an audio track."
            )
        stream = container.streams.audio[0]
        declared = None
        if stream.duration is not None and stream.time_base is not None:
            declared = float(stream.duration * stream.time_base)
            if declared > max_duration_s + 1.0:
                raise AudioTooLong(_too_long(declared, max_duration_s))
        # Resample every channel, then average them: FFmpeg's own stereo->mono matrix adds the
        # channels at -3 dB each, which makes identical channels 1.41x louder and can clip.
        resampler = av.AudioResampler(format="fltp", rate=sample_rate)
        samples = _Samples(((declared if declared is not None else 60.0) + 1.0) * sample_rate)
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    samples.add_mean(out.to_ndarray())
                    if samples.size > limit:
                        raise AudioTooLong(
                            _too_long(samples.size / sample_rate, max_duration_s, partial=True)
                        )
            for out in resampler.resample(None):
                samples.add_mean(out.to_ndarray())
        except av.FFmpegError as exc:
            raise UndecodableAudio(
                f"The audio stream could not be decoded ({exc}). The file may be truncated or "
                "corrupt; re-encode it (e.g. to flac or wav) and try again."
            ) from None
    if samples.size == 0:
        raise UndecodableAudio("The file has an audio stream but no audio samples could be decoded.")
    return samples.array[:limit]


class _Samples:
    """Decoded mono samples, written frame by frame into one preallocated array.

    Sized from the container's declared duration (and a second for the resampler's tail), so a
    long file is held once while decoding, not as a list of frames and then their concatenation
    (a 2-hour file is 460 MB of float32; #4). Without a declared duration it grows by doubling.
    """

    def __init__(self, expected: float):
        self._buffer = np.empty(max(int(expected), 1024), np.float32)
        self.size = 0

    def add_mean(self, channels: np.ndarray) -> None:
        """Append the per-sample mean of ``channels`` (shape: channels x samples)."""
        n = channels.shape[1]
        if self.size + n > self._buffer.size:
            grown = np.empty(max(2 * self._buffer.size, self.size + n), np.float32)
            grown[: self.size] = self._buffer[: self.size]
            self._buffer = grown
        channels.mean(axis=0, dtype=np.float32, out=self._buffer[self.size : self.size + n])
        self.size += n

    @property
    def array(self) -> np.ndarray:
        return self._buffer[: self.size]


def _too_long(seconds: float, limit: float, partial: bool = False) -> str:
    what = f"more than {seconds:.0f} s" if partial else f"{seconds:.0f} s"
    return (
        f"The audio is {what} long; the limit is {limit:.0f} s. "
        "Split it into shorter files or raise audio.max_duration_s in the config."
    )
