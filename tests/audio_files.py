"""Audio test files made here, with PyAV's encoders (a real encoder for each container)."""

from __future__ import annotations

import io
from fractions import Fraction

import av
import numpy as np

# container format -> (codec, sample rate)
FORMATS = {
    "wav": ("pcm_s16le", 16000),
    "flac": ("flac", 44100),
    "mp3": ("libmp3lame", 44100),
    "ogg": ("libopus", 48000),
    "m4a": ("aac", 44100),
    "webm": ("libopus", 48000),
}
_MUXERS = {"m4a": "ipod", "ogg": "ogg", "webm": "webm", "wav": "wav", "flac": "flac", "mp3": "mp3"}


def tone(seconds: float, sample_rate: int = 16000, freq: float = 220.0) -> np.ndarray:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def encode(
    audio: np.ndarray, sample_rate: int, fmt: str, channels: int = 1, rate: int | None = None
) -> bytes:
    """Encode mono float32 ``audio`` (at ``sample_rate``) into container ``fmt``, at the format's
    usual rate unless ``rate`` is given."""
    codec, usual = FORMATS[fmt]
    rate = rate or usual
    if rate != sample_rate:
        idx = np.arange(int(len(audio) * rate / sample_rate)) * sample_rate / rate
        audio = np.interp(idx, np.arange(len(audio)), audio).astype(np.float32)
    layout = "mono" if channels == 1 else "stereo"
    buf = io.BytesIO()
    with av.open(buf, "w", format=_MUXERS[fmt]) as container:
        stream = container.add_stream(codec, rate=rate, layout=layout)
        data = np.tile(audio, (channels, 1)) if channels > 1 else audio[None, :]
        step = 4096
        for i in range(0, data.shape[1], step):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(data[:, i : i + step]), format="fltp", layout=layout
            )
            frame.sample_rate = rate
            frame.pts = i
            frame.time_base = Fraction(1, rate)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buf.getvalue()


def video_only_mp4(seconds: float = 1.0) -> bytes:
    """An mp4 with one video stream and no audio stream."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for i in range(int(seconds * 10)):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), i * 20 % 255, np.uint8), format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buf.getvalue()


def empty_wav(sample_rate: int = 16000) -> bytes:
    """A valid WAV header announcing 0 samples (44 bytes)."""
    import wave

    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
    return buf.getvalue()


def jfk() -> np.ndarray:
    """The shared 11 s JFK clip, decoded to 16 kHz mono."""
    from pathlib import Path

    from pipeline.audio import decode_audio

    shared = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "audio"
    return decode_audio(shared / "jfk.wav", max_duration_s=60)


SENTENCES = [
    "The quarterly report is due on Friday, and the numbers still need checking.",
    "Please turn left at the second light, then park behind the library.",
    "Our guest today has spent twenty years studying how rivers change their course.",
]


def espeak(text: str, voice: str = "en-us", words_per_minute: int = 160) -> np.ndarray:
    """``text`` spoken by espeak-ng (Debian's package; installed by .ci/run), at 16 kHz mono."""
    import shutil
    import subprocess

    from pipeline.audio import decode_audio

    if shutil.which("espeak-ng") is None:
        raise RuntimeError("espeak-ng is not installed: apt-get install espeak-ng (see .ci/run)")
    wav = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(words_per_minute), "--stdout", text],
        check=True,
        capture_output=True,
        timeout=60,
    ).stdout
    return decode_audio(wav, max_duration_s=120)


def speech_and_silence(*parts: str | float) -> np.ndarray:
    """Real speech joined with silences: ``"jfk"`` is the 11 s clip, a number is seconds of silence."""
    clip = jfk()
    return np.concatenate([clip if p == "jfk" else np.zeros(int(p * 16000), np.float32) for p in parts])
