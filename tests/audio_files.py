"""Audio test files made here, with PyAV's encoders (a real encoder for each container)."""

from __future__ import annotations

import io
import random
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

# container format -> (codec, sample rate)
#: The shared real-speech clips (beside the repository root).
SHARED = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "audio"

FORMATS = {
    "wav": ("pcm_s16le", 16000),
    "flac": ("flac", 44100),
    "mp3": ("libmp3lame", 44100),
    "ogg": ("libopus", 48000),
    "m4a": ("aac", 44100),
    "webm": ("libopus", 48000),
}
# raw elementary streams, without a container: FFmpeg finds them by their frames alone
RAW_STREAMS = {
    "adts": ("aac", 44100),
    "ac3": ("ac3", 48000),
    "eac3": ("eac3", 48000),
    "mp2": ("mp2", 48000),
    "loas": ("aac", 44100),
}
_MUXERS = {
    "m4a": "ipod",
    "ogg": "ogg",
    "webm": "webm",
    "wav": "wav",
    "flac": "flac",
    "mp3": "mp3",
    "adts": "adts",
    "ac3": "ac3",
    "eac3": "eac3",
    "mp2": "mp2",
    "loas": "latm",
}


def tone(seconds: float, sample_rate: int = 16000, freq: float = 220.0) -> np.ndarray:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def encode(
    audio: np.ndarray, sample_rate: int, fmt: str, channels: int = 1, rate: int | None = None
) -> bytes:
    """Encode mono float32 ``audio`` (at ``sample_rate``) into container (or raw stream) ``fmt``, at
    the format's usual rate unless ``rate`` is given."""
    codec, usual = (FORMATS | RAW_STREAMS)[fmt]
    rate = rate or usual
    if rate != sample_rate:
        idx = np.arange(int(len(audio) * rate / sample_rate)) * sample_rate / rate
        audio = np.interp(idx, np.arange(len(audio)), audio).astype(np.float32)
    layout = "mono" if channels == 1 else "stereo"
    buf = io.BytesIO()
    with av.open(buf, "w", format=_MUXERS[fmt]) as container:
        stream = container.add_stream(codec, rate=rate, layout=layout)
        assert isinstance(stream, av.AudioStream), f"{codec} is not an audio codec"
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


def strip_id3v2(mp3: bytes) -> bytes:
    """``mp3`` without its leading ID3v2 tag (PyAV's mp3 muxer writes one), cut by the tag's length."""
    if mp3[:3] != b"ID3":
        return mp3
    size = sum((byte & 0x7F) << 7 * (3 - i) for i, byte in enumerate(mp3[6:10]))  # 4 x 7 bits
    return mp3[10 + size + (10 if mp3[5] & 0x10 else 0) :]


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
    from pipeline.audio import decode_audio

    return decode_audio(SHARED / "jfk.wav", max_duration_s=60)


SENTENCES = [
    "The quarterly report is due on Friday, and the numbers still need checking.",
    "Please turn left at the second light, then park behind the library.",
    "Our guest today has spent twenty years studying how rivers change their course.",
]


def espeak(text: str, voice: str = "en-us", words_per_minute: int = 160) -> np.ndarray:
    """``text`` spoken by espeak-ng at 16 kHz mono (Debian's package; scripts/system-deps.sh
    installs it)."""
    import shutil
    import subprocess

    from pipeline.audio import decode_audio

    if shutil.which("espeak-ng") is None:
        raise RuntimeError(
            "espeak-ng is not installed: run bash scripts/system-deps.sh (or apt-get install espeak-ng)"
        )
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


# Text and junk that FFmpeg's probe takes for a raw audio stream (``av.open`` opens each with an
# audio stream), so they must be refused by pipeline.audio itself. Cyrillic in cp1251 writes 'я'
# as 0xFF, the first byte of every MPEG-audio and ADTS frame header.
_LOG_MESSAGES = (
    "файл не найден",
    "нет доступа к каталогу",
    "диск переполнен",
    "сбой сети",
    "неверный формат записи",
    "истекло время ожидания",
)
_RUSSIAN = (
    "ящик для писем стоит у двери. Погода хорошая, на улице тепло и тихо. "  # noqa: RUF001
    "Мама мыла раму, а папа читал газету у окна. Широкая электрификация "  # noqa: RUF001
    "южных губерний даст мощный толчок подъёму сельского хозяйства. "
    "В чащах юга жил бы цитрус? Да, но фальшивый экземпляр! "  # noqa: RUF001
)
_UKRAINIAN = (
    "ящірка грілася на камені біля річки. Щастя не купиш за гроші, "
    "а друзів не знайдеш на базарі. Київ — столиця України, місто з "  # noqa: RUF001
    "тисячолітньою історією. Їжак їсть яблука в саду. "
)


def _cp1251_log(lines: int) -> bytes:
    """A fixed-width log: every 68-byte line holds 'Внутренняя ошибка' in the same column, and
    'яя ' (FF FF 20) is an MPEG-1 Layer I header whose frame is 68 bytes, so the lines chain."""
    rows = (f"{i + 1:5d}  Внутренняя ошибка: {_LOG_MESSAGES[i % len(_LOG_MESSAGES)]}" for i in range(lines))
    return "".join(row.ljust(67) + "\n" for row in rows).encode("cp1251")


def _repeated(text: str, size: int, encoding: str) -> bytes:
    return (text * (size // len(text) + 1)).encode(encoding)[:size]


def _junk_with_mp3_headers(seed: int, headers: int, junk: int, before: int = 0) -> bytes:
    """Random bytes holding ``headers`` chained MPEG-1 Layer III headers (128 kbit/s, 44.1 kHz:
    417-byte frames) after ``before`` bytes, then ``junk`` more bytes."""
    rng = random.Random(seed)
    frames = b"".join(b"\xff\xfb\x90\x64" + rng.randbytes(413) for _ in range(headers))
    return rng.randbytes(before) + frames + rng.randbytes(junk)


def _junk_after_an_adts_header(seed: int) -> bytes:
    """One ADTS header (AAC LC, 44.1 kHz) and 4000 random bytes."""
    return b"\xff\xf1\x50\x80" + random.Random(seed).randbytes(4000)


def _junk_with_ac4_frames(seed: int) -> bytes:
    """Random bytes framed by two AC-4 sync words: FFmpeg demuxes AC-4 but cannot decode it."""
    rng = random.Random(seed)
    first, second = rng.randbytes(1500), rng.randbytes(64)
    return (
        b"\xac\x40"
        + len(first).to_bytes(2, "big")
        + first
        + b"\xac\x40"
        + len(second).to_bytes(2, "big")
        + second
    )


def not_audio_samples() -> dict[str, bytes]:
    """Uploads that are not audio although FFmpeg opens them with an audio stream, by name: before
    pipeline.audio checked raw streams, the logs decoded to noise (200 with a duration), the rest
    failed to decode (422)."""
    samples = {f"cp1251 fixed-width log, {n} lines": _cp1251_log(n) for n in (5, 100, 1500)}
    for size in (300, 3_000, 30_000, 100_000):
        samples[f"cp1251 Russian text, {size} B"] = _repeated(_RUSSIAN, size, "cp1251")
    samples["cp1251 Ukrainian text, 20000 B"] = _repeated(_UKRAINIAN, 20_000, "cp1251")
    for seed in (1, 2):
        samples[f"2 chained mp3 headers then junk (seed {seed})"] = _junk_with_mp3_headers(seed, 2, 300)
        samples[f"junk, 2 chained mp3 headers, junk (seed {seed})"] = _junk_with_mp3_headers(
            seed, 2, 1000, 1000
        )
        samples[f"3 chained mp3 headers then 10 KB junk (seed {seed})"] = _junk_with_mp3_headers(
            seed, 3, 10_000
        )
        samples[f"ADTS header then junk (seed {seed})"] = _junk_after_an_adts_header(seed)
        samples[f"AC-4 sync words in junk (seed {seed})"] = _junk_with_ac4_frames(seed)
    return samples


def speech_wav(codec: str, rate: int) -> bytes:
    """The shared jfk.wav re-encoded by PyAV as a WAV file of ``codec`` at ``rate`` (resampled by PyAV)."""
    buf = io.BytesIO()
    with av.open(str(SHARED / "jfk.wav"), mode="r") as source, av.open(buf, mode="w", format="wav") as wav:
        stream = wav.add_stream(codec, rate=rate, layout="mono")
        assert isinstance(stream, av.AudioStream)
        for frame in source.decode(audio=0):
            frame.pts = None
            for packet in stream.encode(frame):
                wav.mux(packet)
        for packet in stream.encode(None):
            wav.mux(packet)
    return buf.getvalue()


def raw_samples(wav: bytes) -> bytes:
    """The samples a WAV file holds, without its header: what a live session sends."""
    with av.open(io.BytesIO(wav), mode="r") as container:
        return b"".join(bytes(packet) for packet in container.demux(audio=0))
