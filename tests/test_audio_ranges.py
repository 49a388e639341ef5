"""Ranges and blocks of a file: the same samples as decoding all of it, by seeking where the format
seeks exactly (PCM wav/w64/aiff, FLAC) and by decoding from the start where it does not."""

from __future__ import annotations

import io
import shutil
import subprocess
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from audio_files import encode, jfk, not_audio_samples, tone, video_only_mp4

import pipeline.audio_ranges as audio_ranges
from pipeline.audio import decode_audio
from pipeline.audio_ranges import AudioInfo, decode_blocks, decode_range, probe_audio
from pipeline.errors import AudioTooLong, EmptyAudio, NoAudioStream, NotAudio

SECONDS = 22  # the JFK clip twice: speech, so a misplaced or mis-resampled sample shows

# name -> (container, sample rate, channels); all made by PyAV's encoders
MADE = {
    "wav16": ("wav", 16000, 2),
    "wav44": ("wav", 44100, 2),
    "flac16": ("flac", 16000, 2),
    "flac44": ("flac", 44100, 2),
    "flac48": ("flac", 48000, 1),
    "mp3": ("mp3", 44100, 2),
    "ogg": ("ogg", 48000, 1),
    "m4a": ("m4a", 44100, 1),
}
# name -> (file suffix, sox options): converted by sox from wav44 (24-bit FLAC and AIFF, 16-bit W64)
BY_SOX = {"sox24.flac": (".flac", ["-b", "24"]), "sox.aiff": (".aiff", ["-b", "24"]), "sox.w64": (".w64", [])}
SEEKABLE = ["wav16", "wav44", "flac16", "flac44", "flac48", *BY_SOX]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("ranges")
    speech = np.tile(jfk(), 2)
    paths = {}
    for name, (fmt, rate, channels) in MADE.items():
        paths[name] = folder / f"{name}.{fmt}"
        paths[name].write_bytes(encode(speech, 16000, fmt, channels=channels, rate=rate))
    if shutil.which("sox"):
        for name, (suffix, options) in BY_SOX.items():
            paths[name] = folder / f"{name.split('.')[0]}{suffix}"
            subprocess.run(["sox", str(paths["wav44"]), *options, str(paths[name])], check=True, timeout=60)
    return paths


def path_of(files: dict[str, Path], name: str) -> Path:
    if name not in files:
        pytest.skip("sox is not installed")
    return files[name]


def ranges(total: int) -> list[tuple[int, int | None]]:
    return [
        (1, 100),
        (7_999, 8_001),  # within the pre-roll: the seek lands at the start
        (8_001, 40_000),
        (100_003, 180_017),  # starts mid-frame (FLAC frames are 4096 samples, at the input rate)
        (160_000, None),
        (total - 3_000, total),
        (total - 50, total + 500),  # the audio ends first
        (total - 1, None),
        (total, None),  # nothing left
        (total + 20_000, total + 30_000),
    ]


@pytest.fixture
def seeks(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int | None]]:
    """Each seek of decode_range: its range's start, and the output sample the decode was placed
    at (None: it landed too late)."""
    landed: list[tuple[int, int | None]] = []
    seek = audio_ranges._seek

    def spy(decoder, start, sample_rate):
        result = seek(decoder, start, sample_rate)
        landed.append((start, None if result is None else result[1]))
        return result

    monkeypatch.setattr(audio_ranges, "_seek", spy)
    return landed


@pytest.mark.parametrize(
    ("name", "fmt", "seekable"),
    [
        ("wav16", "wav", True),
        ("wav44", "wav", True),
        ("flac16", "flac", True),
        ("flac44", "flac", True),
        ("sox24.flac", "flac", True),
        ("sox.aiff", "aiff", True),
        ("sox.w64", "w64", True),
        ("mp3", "mp3", False),
        ("ogg", "ogg", False),
        ("m4a", "mov,mp4,m4a,3gp,3g2,mj2", False),
    ],
)
def test_probe_reads_the_header(files, name, fmt, seekable):
    info = probe_audio(path_of(files, name), max_duration_s=60)
    assert info.format == fmt and info.seekable is seekable
    assert info.duration_s == pytest.approx(SECONDS, abs=0.03)


def test_a_flac_without_declared_length_does_not_seek(files):
    data = bytearray(files["flac44"].read_bytes())
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0, "STREAMINFO first"
    data[21] &= 0xF0  # STREAMINFO's 36-bit total samples: 0 = unknown
    data[22:26] = bytes(4)
    assert probe_audio(bytes(data), max_duration_s=60) == AudioInfo(None, False, "flac", channels=2)
    whole = decode_audio(bytes(data), max_duration_s=60)
    np.testing.assert_array_equal(
        decode_range(bytes(data), 100_000, 120_000, max_duration_s=60), whole[100_000:120_000]
    )


def test_a_webm_declares_its_duration_on_the_segment():
    info = probe_audio(encode(tone(3.0), 16000, "webm"), max_duration_s=60)
    assert info.format == "matroska,webm" and not info.seekable
    assert info.duration_s == pytest.approx(3.0, abs=0.05)


@pytest.mark.parametrize("name", SEEKABLE)
def test_a_range_by_seeking_is_the_slice_of_the_whole_decode(files, name, seeks):
    """Bit-identical, for 16 kHz PCM and for the resampled 44.1/48 kHz sources alike: the seek feeds
    the resampler from a sample on its phase grid (a multiple of 441 at 44.1 kHz), well before the
    range (measured: the same samples; fed from another sample they differ by up to 0.15)."""
    path = path_of(files, name)
    whole = decode_audio(path, max_duration_s=60)
    assert whole.size == SECONDS * 16000
    for start, end in ranges(whole.size):
        got = decode_range(path, start, end, max_duration_s=60)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, whole[start:end], err_msg=f"[{start}, {end})")
    assert len(seeks) == len(ranges(whole.size)), "every range was decoded by seeking"
    for start, position in seeks:
        assert position is not None, f"the seek for {start} landed too late"
        # 0.5 s before, give or take a FLAC frame (4608 samples at most) and the phase grid; past
        # the end, a PCM seek finds nothing to decode and a FLAC seek lands on the last frame
        if start <= whole.size:
            assert position == 0 or 0.5 * 16000 <= start - position < 0.9 * 16000, (start, position)


@pytest.mark.parametrize("name", ["mp3", "ogg", "m4a"])
def test_a_range_of_a_format_that_does_not_seek_exactly_is_decoded_from_the_start(files, name, seeks):
    path = files[name]
    whole = decode_audio(path, max_duration_s=60)
    for start, end in ranges(whole.size):
        np.testing.assert_array_equal(decode_range(path, start, end, max_duration_s=60), whole[start:end])
    assert seeks == []


def test_seek_false_decodes_from_the_start(files, seeks):
    whole = decode_audio(files["flac44"], max_duration_s=60)
    got = decode_range(files["flac44"], 200_001, 260_000, max_duration_s=60, seek=False)
    np.testing.assert_array_equal(got, whole[200_001:260_000])
    assert seeks == []


class Chunks(io.RawIOBase):
    """A seekable raw stream over in-memory chunks, as uploads are handed to the decoders."""

    def __init__(self, data: bytes, size: int = 10_000):
        self._chunks = [data[i : i + size] for i in range(0, len(data), size)]
        self._size, self._length, self._pos = size, len(data), 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        view, n = memoryview(buffer).cast("B"), 0
        while n < len(view) and self._pos < self._length:
            chunk = self._chunks[self._pos // self._size][self._pos % self._size :]
            take = min(len(chunk), len(view) - n)
            view[n : n + take] = chunk[:take]
            n, self._pos = n + take, self._pos + take
        return n

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._pos = [offset, self._pos + offset, self._length + offset][whence]
        return self._pos

    def tell(self) -> int:
        return self._pos


@pytest.mark.parametrize("name", ["wav44", "flac44", "mp3"])
def test_bytes_and_file_objects_wherever_they_stand(files, name):
    data = files[name].read_bytes()
    whole = decode_audio(data, max_duration_s=60)
    stream = Chunks(data)
    stream.seek(12_345)  # a reader left mid-file: the decoders read from its start
    assert probe_audio(stream, max_duration_s=60).seekable is (name != "mp3")
    for source in (data, io.BytesIO(data), stream):
        got = decode_range(source, 123_457, 234_567, max_duration_s=60)
        np.testing.assert_array_equal(got, whole[123_457:234_567])
    stream.seek(999)
    np.testing.assert_array_equal(
        np.concatenate(list(decode_blocks(stream, 50_000, max_duration_s=60))), whole
    )


@pytest.mark.parametrize(
    ("name", "block"),
    [
        ("wav16", 1),
        *[(name, block) for name in ("wav16", "flac44", "mp3", "ogg") for block in (4096, 48_000, 352_000)],
        ("flac44", 351_999),
        ("flac44", 10**7),
    ],
)
def test_blocks_make_up_the_whole_decode(files, name, block):
    whole = decode_audio(files[name], max_duration_s=60)
    blocks = list(decode_blocks(files[name], block, max_duration_s=60))
    assert all(b.size == block for b in blocks[:-1]) and 0 < blocks[-1].size <= block
    assert all(b.dtype == np.float32 for b in blocks)
    np.testing.assert_array_equal(np.concatenate(blocks), whole)


def test_a_range_holds_only_itself():
    """A second from a minute of mp3 (decoded from the start, skipping): the peak is that second and
    a frame or two, not the 3.8 MB of the whole decode."""
    data = encode(tone(60.0), 16000, "mp3", rate=16000)
    tracemalloc.start()
    try:
        got = decode_range(data, 50 * 16000, 51 * 16000, max_duration_s=600)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert got.size == 16000
    assert peak < 4 * got.nbytes, f"peak {peak / 2**10:.0f} KiB for {got.nbytes / 2**10:.0f} KiB"


def test_blocks_hold_one_block_at_a_time():
    data = encode(tone(60.0), 16000, "flac", rate=16000)
    tracemalloc.start()
    try:
        sizes = [b.size for b in decode_blocks(data, 16000, max_duration_s=600)]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sum(sizes) == 60 * 16000
    assert peak < 4 * 16000 * 4, f"peak {peak / 2**10:.0f} KiB for 62 KiB blocks"  # measured 2.7 blocks


def test_too_long(files):
    path = files["flac44"]  # 22 s, declared: within a limit of 21.5 s + 1 s of slack
    limit = int(21.5 * 16000)
    np.testing.assert_array_equal(
        decode_range(path, 16000, limit, max_duration_s=21.5),
        decode_audio(path, max_duration_s=60)[16000:limit],
    )
    for start, end in [(0, None), (limit - 100, limit + 1), (20 * 16000, None), (0, 10**9)]:
        with pytest.raises(AudioTooLong, match="limit is 22 s"):
            decode_range(path, start, end, max_duration_s=21.5)
    with pytest.raises(AudioTooLong):
        list(decode_blocks(path, 16000, max_duration_s=21.5))
    for refuse in (probe_audio, decode_audio):
        with pytest.raises(AudioTooLong, match="is 22 s long; the limit is 10 s"):
            refuse(path, max_duration_s=10)  # from the header
    with pytest.raises(AudioTooLong):
        decode_range(path, 0, 100, max_duration_s=10)


def test_probe_refuses_what_decode_audio_refuses(tmp_path):
    text = tmp_path / "notes"  # named *.txt, FFmpeg opens it as ANSI art: NoAudioStream
    text.write_bytes(b"plain text, not a media file\n" * 40)
    with pytest.raises(NotAudio):
        probe_audio(text, max_duration_s=60)
    log = not_audio_samples()["cp1251 fixed-width log, 100 lines"]  # FFmpeg opens it as mp3
    with pytest.raises(NotAudio, match="is not audio"):
        probe_audio(log, max_duration_s=60)
    with pytest.raises(NotAudio):
        decode_range(log, 100, 200, max_duration_s=60)
    with pytest.raises(NotAudio):
        next(decode_blocks(io.BytesIO(log), 1000, max_duration_s=60))
    with pytest.raises(EmptyAudio):
        probe_audio(b"", max_duration_s=60)
    with pytest.raises(NoAudioStream):
        probe_audio(video_only_mp4(), max_duration_s=60)


def test_bad_arguments():
    with pytest.raises(ValueError):
        decode_range(b"x", 10, 5, max_duration_s=60)
    with pytest.raises(ValueError):
        decode_range(b"x", -1, None, max_duration_s=60)
    with pytest.raises(ValueError):
        next(decode_blocks(b"x", 0, max_duration_s=60))
