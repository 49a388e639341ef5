"""A live session's input audio, as it arrives in pieces, to mono float32 at 16 kHz.

A realtime session sends raw samples in OpenAI's formats: ``audio/pcm`` (16-bit little-endian mono
PCM at 24 kHz) or G.711 (``audio/pcmu`` µ-law, ``audio/pcma`` A-law, 8 kHz, one byte a sample), in
payloads of any size. Whisper and Silero want 16 kHz.

Why PyAV: it is FFmpeg's own resampler, a polyphase low-pass filter rather than decimation (24 kHz
to 16 kHz by dropping samples would fold everything above 8 kHz back into the speech band), and
built exactly as :func:`pipeline.audio.decode_audio` builds it, so a live session and an uploaded
file of the same samples give Whisper the same 16 kHz audio, sample for sample. One resampler per
stream keeps its filter state across payloads, so cutting the stream anywhere changes nothing. The
G.711 expansion is FFmpeg's ``pcm_mulaw``/``pcm_alaw`` decoder, the same one a G.711 WAV upload
goes through, not a second hand-written table.

Why the stream's first bytes are checked for a file header: a WAV or MP3 file sent as raw samples
plays as loud noise, and Whisper turns noise into invented text; a refusal says what went wrong.
"""

from __future__ import annotations

from fractions import Fraction
from typing import TYPE_CHECKING, Literal, NamedTuple, cast, get_args

import numpy as np

from pipeline.errors import AudioError

if TYPE_CHECKING:
    import av

SAMPLE_RATE = 16000  # pipeline.audio's; not imported from there, which would load PyAV with the type

LiveFormat = Literal["audio/pcm", "audio/pcmu", "audio/pcma"]
LIVE_FORMATS: tuple[str, ...] = get_args(LiveFormat)


class _Format(NamedTuple):
    description: str  # for messages
    rate: int
    codec: str | None  # FFmpeg's decoder; None: the bytes are s16 samples as they are
    ffmpeg_output: str  # how to make such samples from a file, for messages


_FORMATS: dict[str, _Format] = {
    "audio/pcm": _Format("16-bit little-endian mono PCM at 24 kHz", 24_000, None, "-f s16le -ar 24000 -ac 1"),
    "audio/pcmu": _Format(
        "G.711 µ-law at 8 kHz, one byte per sample", 8_000, "pcm_mulaw", "-f mulaw -ar 8000 -ac 1"
    ),
    "audio/pcma": _Format(
        "G.711 A-law at 8 kHz, one byte per sample", 8_000, "pcm_alaw", "-f alaw -ar 8000 -ac 1"
    ),
}

#: The first bytes of files that are sometimes sent where raw samples belong.
_FILE_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"RIFF", "a WAV"),
    (b"OggS", "an Ogg"),
    (b"fLaC", "a FLAC"),
    (b"ID3", "an MP3"),
)
#: Bare MP3 frame sync words (MPEG-1 layer III, with and without CRC; MPEG-2 layer III likewise).
#: Checked on 16-bit PCM only: in G.711, 0xFF is µ-law's silence, so a µ-law stream opening
#: quietly can start 0xFF 0xFB.
_MP3_SYNC = (b"\xff\xfb", b"\xff\xfa", b"\xff\xf3", b"\xff\xf2")
_MAGIC_BYTES = 4


class InvalidLiveAudio(AudioError):
    """A live session's input audio is not the raw samples its format names."""

    code = "invalid_audio_format"
    param = "audio"


class LiveAudioDecoder:
    """One session's input audio stream: payloads in, 16 kHz mono float32 out."""

    def __init__(self, fmt: LiveFormat):
        if fmt not in _FORMATS:
            raise ValueError(f"Unknown live audio format {fmt!r}; expected one of {', '.join(LIVE_FORMATS)}.")
        self.format = fmt
        self._spec = spec = _FORMATS[fmt]
        self.input_rate = spec.rate
        self.bytes_per_second = spec.rate * (2 if spec.codec is None else 1)
        import av  # here, not at the top: the ingress imports this module for its types

        self._codec: av.AudioCodecContext | None = None
        if spec.codec is not None:
            self._codec = cast(av.AudioCodecContext, av.CodecContext.create(spec.codec, "r"))
            self._codec.sample_rate = self.input_rate
            self._codec.layout = "mono"
        self._resampler = av.AudioResampler(format="fltp", rate=SAMPLE_RATE)  # as pipeline.audio builds it
        self._pending = b""  # bytes not decoded yet: the stream's first few (until checked), an odd byte
        self._checked = False  # whether the stream's first bytes were checked for a file header
        self._samples_in = 0  # input samples so far: the next frame's pts
        self._flushed = False

    def decode(self, payload: bytes) -> np.ndarray:
        """16 kHz samples for ``payload`` (the stream's next bytes): whatever the resampler gives now.

        Raises :class:`InvalidLiveAudio` if the stream starts like an audio file, not raw samples.
        """
        if self._flushed:
            raise RuntimeError("decode() after flush(): the stream has ended.")
        data = self._pending + bytes(payload)
        if not self._checked:
            if len(data) < _MAGIC_BYTES:
                self._pending = data
                return np.zeros(0, np.float32)
            self._check_start(data)
        usable = self._whole_samples(data)
        self._pending = data[usable:]  # half a PCM16 sample: its other byte comes in the next payload
        return self._resample(data[:usable])

    def flush(self) -> np.ndarray:
        """The resampler's last samples at the end of the stream (a trailing odd byte is dropped)."""
        if self._flushed:
            return np.zeros(0, np.float32)
        data, self._pending, self._flushed = self._pending, b"", True
        if not self._checked and data:
            self._check_start(data)  # a stream shorter than a file header: check what there is
        out = [self._resample(data[: self._whole_samples(data)])]
        out += [_mono(frame) for frame in self._resampler.resample(None)]
        return np.concatenate(out)

    def _whole_samples(self, data: bytes) -> int:
        """How many bytes of ``data`` are whole samples."""
        return len(data) - len(data) % 2 if self._codec is None else len(data)

    def _check_start(self, head: bytes) -> None:
        """Refuse a stream that starts like an audio file. The refused bytes are dropped and the
        next payload is checked as the stream's start again: the client may go on with samples."""
        kind = next((kind for magic, kind in _FILE_MAGIC if head.startswith(magic)), None)
        if kind is None and self._codec is None and head[:2] in _MP3_SYNC:
            kind = "an MP3"
        if kind is not None:
            self._pending = b""
            raise InvalidLiveAudio(
                f"This session's input audio format is {self.format!r}: it expects raw "
                f"{self._spec.description} samples, not {kind} file. Send the samples alone, with no "
                f"file header (from a file: `ffmpeg -i FILE {self._spec.ffmpeg_output} out.raw`), or "
                "upload the file to /v1/audio/transcriptions."
            )
        self._checked = True

    def _resample(self, data: bytes) -> np.ndarray:
        import av

        if not data:  # an empty packet would flush the G.711 decoder
            return np.zeros(0, np.float32)
        if self._codec is None:
            frame = av.AudioFrame.from_ndarray(
                np.frombuffer(data, dtype="<i2").reshape(1, -1), format="s16", layout="mono"
            )
            frame.sample_rate = self.input_rate
            frames = [frame]
        else:
            frames = self._codec.decode(av.Packet(data))
        out = []
        for frame in frames:
            # Consecutive pts: the filter graph sees one gapless stream (nothing to pad or drop).
            frame.pts = self._samples_in
            frame.time_base = Fraction(1, self.input_rate)
            self._samples_in += frame.samples
            out += [_mono(resampled) for resampled in self._resampler.resample(frame)]
        return np.concatenate(out) if out else np.zeros(0, np.float32)


def _mono(frame: av.AudioFrame) -> np.ndarray:
    return frame.to_ndarray()[0]
