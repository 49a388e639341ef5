"""Decoding: every container to mono float32 16 kHz, and a typed error for each bad input."""

from __future__ import annotations

import numpy as np
import pytest
from audio_files import FORMATS, encode, tone, video_only_mp4
from conftest import SHARED_AUDIO, clips

from deployments.http_errors import http_status
from pipeline.audio import SAMPLE_RATE, decode_audio
from pipeline.errors import (
    AudioTooLong,
    EmptyAudio,
    NoAudioStream,
    NotAudio,
    UndecodableAudio,
)


@pytest.mark.parametrize("clip", clips(), ids=lambda c: c["file"])
def test_shared_clips_decode_to_their_duration(clip):
    path = SHARED_AUDIO / clip["file"]
    audio = decode_audio(path, max_duration_s=3600)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(audio.size / SAMPLE_RATE - clip["duration_s"]) <= 0.05
    assert 0.05 < np.abs(audio).max() <= 1.0
    from_bytes = decode_audio(path.read_bytes(), max_duration_s=3600)
    np.testing.assert_array_equal(audio, from_bytes)


def test_stereo_is_averaged_not_summed():
    # jfk.flac is 44.1 kHz 24-bit stereo; jfk.wav the same speech as 16 kHz mono.
    stereo = decode_audio(SHARED_AUDIO / "jfk.flac", max_duration_s=60)
    mono = decode_audio(SHARED_AUDIO / "jfk.wav", max_duration_s=60)
    assert np.abs(stereo).max() == pytest.approx(np.abs(mono).max(), rel=0.05)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_each_container_decodes(fmt):
    source = tone(3.0, freq=440.0)
    audio = decode_audio(
        encode(source, SAMPLE_RATE, fmt, channels=2 if fmt == "flac" else 1), max_duration_s=60
    )
    assert audio.dtype == np.float32
    assert abs(audio.size / SAMPLE_RATE - 3.0) < 0.05
    # Lossy codecs keep the tone's energy: RMS of a 0.3-amplitude sine is ~0.21.
    assert np.sqrt(np.mean(audio**2)) == pytest.approx(0.3 / np.sqrt(2), rel=0.15)


def test_empty_input():
    with pytest.raises(EmptyAudio) as info:
        decode_audio(b"", max_duration_s=10)
    assert http_status(info.value) == 400 and info.value.code == "empty_file"


def test_not_audio():
    with pytest.raises(NotAudio) as info:
        decode_audio(b"plain text, not a media file\n" * 40, max_duration_s=10)
    assert http_status(info.value) == 415


def test_video_without_audio_stream():
    with pytest.raises(NoAudioStream) as info:
        decode_audio(video_only_mp4(), max_duration_s=10)
    assert "no audio stream" in str(info.value)


def test_truncated_file_is_refused():
    data = (SHARED_AUDIO / "jfk.flac").read_bytes()[:1000]
    with pytest.raises((NotAudio, UndecodableAudio)):
        decode_audio(data, max_duration_s=60)


def test_too_long_is_refused_from_the_header():
    with pytest.raises(AudioTooLong) as info:
        decode_audio(SHARED_AUDIO / "jfk.wav", max_duration_s=5)
    assert http_status(info.value) == 413 and "limit is 5 s" in str(info.value)


def test_too_long_is_refused_while_decoding_when_the_header_has_no_duration():
    # An ogg stream written without a duration in its header: only decoding can tell.
    data = encode(tone(12.0), SAMPLE_RATE, "ogg")
    with pytest.raises(AudioTooLong):
        decode_audio(data, max_duration_s=5)
    assert decode_audio(data, max_duration_s=20).size == pytest.approx(12 * SAMPLE_RATE, abs=800)


def test_errors_survive_pickling():
    import pickle

    err = pickle.loads(pickle.dumps(AudioTooLong("too long")))
    assert isinstance(err, AudioTooLong) and err.code == "audio_too_long" and str(err) == "too long"


def test_a_two_hour_file_is_held_once_while_decoding():
    """The decode writes into one array sized from the header: its peak allocation is the
    decoded audio itself, not frames plus their concatenation (2x)."""
    import tracemalloc

    audio = np.zeros(2 * 3600 * 16000, np.float32)
    audio[::7] = 0.01  # not digital silence, so the FLAC has real frames to decode
    data = encode(audio, 16000, "flac", rate=16000)
    del audio
    tracemalloc.start()
    try:
        decoded = decode_audio(data, max_duration_s=3 * 3600)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert decoded.size == 2 * 3600 * 16000
    assert peak < 1.05 * decoded.nbytes, (
        f"peak {peak / 2**20:.0f} MiB for {decoded.nbytes / 2**20:.0f} MiB decoded"
    )


def test_a_file_without_declared_duration_decodes_whole():
    """webm declares no duration: the buffer starts at a minute and grows as the decode goes."""
    audio = tone(150.0)
    decoded = decode_audio(encode(audio, 16000, "webm"), max_duration_s=600)
    assert decoded.size == pytest.approx(audio.size, abs=16000 * 0.05)
    assert np.abs(decoded[16000 * 120 : 16000 * 121]).max() > 0.1, "the tone is there after the first growth"
