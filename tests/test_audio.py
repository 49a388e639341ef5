"""Decoding: every container to mono float32 16 kHz, and a typed error for each bad input."""

from __future__ import annotations

import io
import random

import av
import numpy as np
import pytest
from audio_files import (
    FORMATS,
    RAW_STREAMS,
    encode,
    not_audio_samples,
    strip_id3v2,
    tone,
    video_only_mp4,
)
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


NOT_AUDIO = not_audio_samples()


@pytest.mark.parametrize("name", sorted(NOT_AUDIO))
def test_what_ffmpeg_only_guesses_as_audio_is_refused_as_not_audio(name):
    data = NOT_AUDIO[name]
    with av.open(io.BytesIO(data)) as container:  # the premise: FFmpeg takes it for audio
        assert container.streams.audio, f"FFmpeg no longer opens {name!r} as audio: not a regression case"
        guessed_as = container.format.long_name
    with pytest.raises(NotAudio) as info:
        decode_audio(data, max_duration_s=600)
    assert http_status(info.value) == 415 and info.value.code == "unsupported_media"
    message = str(info.value)
    assert "not audio" in message and guessed_as in message and "Send wav, flac" in message


TEXT = (
    "Où êtes-vous ? L'Haÿ-les-Roses, sûr, août, Übermut. "
    "Съешь же ещё этих мягких французских булок, да выпей чаю. "
    "日本語のテキストです。你好，世界！\n"  # noqa: RUF001
)


@pytest.mark.parametrize(
    "encoding",
    [
        "utf-8",
        "utf-16",
        "utf-16-le",
        "utf-16-be",
        "utf-32",
        "utf-32-be",
        "cp1252",
        "latin-1",
        "koi8-r",
        "shift_jis",
        "gb18030",
        "big5",
    ],
)
@pytest.mark.parametrize("repeat", [3, 300])
def test_text_in_any_encoding_is_not_audio(encoding, repeat):
    data = (TEXT * repeat).encode(encoding, errors="replace")
    with pytest.raises(NotAudio):
        decode_audio(data, max_duration_s=600)


def test_a_lone_mp3_frame_header_in_junk_is_not_audio():
    with pytest.raises(NotAudio):
        decode_audio(b"\xff\xfb\x90\x64" + random.Random(0).randbytes(2000), max_duration_s=60)


def test_not_audio_is_refused_from_a_path_and_a_file_object(tmp_path):
    data = NOT_AUDIO["cp1251 fixed-width log, 100 lines"]
    path = tmp_path / "report.txt"
    path.write_bytes(data)
    with pytest.raises(NotAudio, match=r"report\.txt is not audio"):
        decode_audio(path, max_duration_s=60)
    with pytest.raises(NotAudio):
        decode_audio(io.BytesIO(data), max_duration_s=60)


@pytest.mark.parametrize(
    ("seconds", "channels", "rate"),
    [
        (1.0, 1, 8000),
        (1.0, 2, 8000),
        (1.0, 1, 16000),
        (1.0, 2, 44100),
        (0.1, 1, 44100),
        (40.0, 2, 44100),
        (60.0, 1, 16000),
    ],
)
def test_an_mp3_without_id3_tag_decodes_to_its_duration(seconds, channels, rate):
    tagged = encode(tone(seconds, freq=440.0), SAMPLE_RATE, "mp3", channels=channels, rate=rate)
    data = strip_id3v2(tagged)
    assert tagged[:3] == b"ID3" and len(data) < len(tagged) and data[0] == 0xFF, "starts with a frame"
    for source in (data, io.BytesIO(data)):
        audio = decode_audio(source, max_duration_s=120)
        assert abs(audio.size / SAMPLE_RATE - seconds) < 0.03
        assert np.sqrt(np.mean(audio**2)) == pytest.approx(0.3 / np.sqrt(2), rel=0.15)


def test_an_mp3_with_its_id3_tag_decodes_from_a_path_too(tmp_path):
    path = tmp_path / "tone.mp3"
    path.write_bytes(encode(tone(2.0), SAMPLE_RATE, "mp3"))
    assert abs(decode_audio(path, max_duration_s=60).size / SAMPLE_RATE - 2.0) < 0.03


@pytest.mark.parametrize("layout", ["zero padding after the tag", "two tags"])
def test_an_mp3_whose_frames_start_after_its_tags_decodes(layout):
    tagged = encode(tone(2.0), SAMPLE_RATE, "mp3")
    frames = strip_id3v2(tagged)
    tag = tagged[: len(tagged) - len(frames)]
    data = tag + b"\0" * 700 + frames if layout == "zero padding after the tag" else tag + tag + frames
    # Past the padding FFmpeg no longer takes the first frame for the Info header: it decodes it too.
    assert 2.0 <= decode_audio(data, max_duration_s=60).size / SAMPLE_RATE < 2.05


@pytest.mark.parametrize("fmt", sorted(RAW_STREAMS))
def test_each_raw_stream_decodes(fmt):
    """Raw streams without a container (adts, ac3, eac3, mp2, loas) hold together: still audio."""
    audio = decode_audio(encode(tone(3.0, freq=440.0), SAMPLE_RATE, fmt), max_duration_s=60)
    assert abs(audio.size / SAMPLE_RATE - 3.0) < 0.06  # no container to say the encoder's delay
    assert np.sqrt(np.mean(audio**2)) == pytest.approx(0.3 / np.sqrt(2), rel=0.15)


def test_a_truncated_mp3_decodes_what_it_holds():
    data = strip_id3v2(encode(tone(3.0), SAMPLE_RATE, "mp3"))
    audio = decode_audio(data[: len(data) // 3], max_duration_s=60)
    assert 0.5 < audio.size / SAMPLE_RATE < 1.5


def test_an_mp3_cut_mid_frame_is_refused_with_a_re_encode_hint():
    """Frames that begin after junk are what text that happens to chain looks like; FFmpeg itself
    only scores such a file a weak guess."""
    data = strip_id3v2(encode(tone(3.0), SAMPLE_RATE, "mp3"))
    with pytest.raises(NotAudio, match="re-encode it"):
        decode_audio(data[300:], max_duration_s=60)


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
