"""A live session's raw audio decodes to the same 16 kHz samples however it is cut into payloads,
and to the same samples as a file holding it (pipeline.audio.decode_audio): real speech, each format."""

from __future__ import annotations

import numpy as np
import pytest
from audio_files import raw_samples, speech_wav
from conftest import SHARED_AUDIO

from pipeline.audio import decode_audio
from pipeline.errors import AudioError
from pipeline.live_audio import InvalidLiveAudio, LiveAudioDecoder

JFK = SHARED_AUDIO / "jfk.wav"
G711 = {"audio/pcmu": "pcm_mulaw", "audio/pcma": "pcm_alaw"}


def live_decode(fmt: str, payloads: list[bytes]) -> np.ndarray:
    decoder = LiveAudioDecoder(fmt)  # type: ignore[arg-type]
    return np.concatenate([decoder.decode(p) for p in payloads] + [decoder.flush()])


def random_payloads(data: bytes, seed: int, max_size: int = 5000) -> list[bytes]:
    """``data`` cut at random: many 1-byte and odd-sized payloads, a few empty ones."""
    rng = np.random.default_rng(seed)
    payloads, at = [], 0
    while at < len(data):
        size = int(rng.choice([0, 1, 1, 2, 3, int(rng.integers(1, max_size))]))
        payloads.append(data[at : at + size])
        at += size
    return payloads


@pytest.fixture(scope="module")
def pcm24k_wav() -> bytes:
    return speech_wav("pcm_s16le", 24_000)


def test_pcm16_streamed_in_random_payloads_equals_one_payload(pcm24k_wav):
    raw = raw_samples(pcm24k_wav)
    whole = live_decode("audio/pcm", [raw])
    assert whole.dtype == np.float32 and whole.ndim == 1
    assert abs(whole.size - 11.0 * 16_000) <= 16
    for seed in range(3):
        payloads = random_payloads(raw, seed)
        assert any(len(p) % 2 for p in payloads)  # samples split across payloads
        assert np.array_equal(live_decode("audio/pcm", payloads), whole)


def test_pcm16_equals_the_same_samples_decoded_as_a_wav_file(pcm24k_wav):
    from_file = decode_audio(pcm24k_wav, max_duration_s=60)
    live = live_decode("audio/pcm", random_payloads(raw_samples(pcm24k_wav), seed=7))
    assert np.array_equal(live, from_file)  # same resampler, same filter state: bit for bit


def test_pcm16_decoder_gives_samples_as_they_come(pcm24k_wav):
    raw = raw_samples(pcm24k_wav)
    decoder = LiveAudioDecoder("audio/pcm")
    assert (decoder.input_rate, decoder.bytes_per_second) == (24_000, 48_000)
    first = decoder.decode(raw[:48_000])  # one second
    assert 15_000 <= first.size <= 16_000  # all of it but the resampler's filter delay
    assert decoder.decode(b"").size == 0


@pytest.mark.parametrize("fmt", sorted(G711))
def test_g711_streamed_equals_its_wav_file(fmt):
    wav = speech_wav(G711[fmt], 8_000)
    raw = raw_samples(wav)
    assert len(raw) == 88_000  # 11 s, one byte a sample
    decoder = LiveAudioDecoder(fmt)  # type: ignore[arg-type]
    assert (decoder.input_rate, decoder.bytes_per_second) == (8_000, 8_000)
    live = live_decode(fmt, random_payloads(raw, seed=3, max_size=1000))
    assert np.array_equal(live, decode_audio(wav, max_duration_s=60))
    assert abs(live.size - len(raw) / decoder.bytes_per_second * 16_000) <= 16
    assert np.array_equal(live_decode(fmt, [raw]), live)


@pytest.mark.parametrize(
    ("header", "kind"),
    [(b"RIFF\x24\x00\x00\x00WAVE", "a WAV"), (b"OggS\x00\x02", "an Ogg"), (b"fLaC\x00\x00\x00\x22", "a FLAC"),
     (b"ID3\x04\x00\x00", "an MP3"), (b"\xff\xfb\x90\x64", "an MP3"), (b"\xff\xf3\x84\xc4", "an MP3")],
)  # fmt: skip
def test_a_file_sent_as_raw_samples_is_refused(header, kind):
    decoder = LiveAudioDecoder("audio/pcm")
    with pytest.raises(InvalidLiveAudio) as refused:
        decoder.decode(header + bytes(1000))
    message = refused.value.message
    assert f"expects raw 16-bit little-endian mono PCM at 24 kHz samples, not {kind} file" in message
    assert "ffmpeg" in message and "-f s16le -ar 24000 -ac 1" in message
    assert isinstance(refused.value, AudioError) and refused.value.code == "invalid_audio_format"
    # the refused bytes are dropped; the stream may start again with samples
    assert decoder.decode(bytes(4800)).size > 0


def test_a_header_split_across_payloads_is_still_refused(pcm24k_wav):
    decoder = LiveAudioDecoder("audio/pcmu")
    assert decoder.decode(b"RI").size == 0  # held back until there are enough bytes to tell
    with pytest.raises(InvalidLiveAudio, match=r"expects raw G\.711 µ-law at 8 kHz.* not a WAV file"):
        decoder.decode(b"FF....")
    with pytest.raises(InvalidLiveAudio, match="not a WAV file"):
        live_decode("audio/pcm", random_payloads(pcm24k_wav, seed=0))
    short = LiveAudioDecoder("audio/pcm")
    short.decode(b"ID3")  # a stream shorter than the check: checked at flush
    with pytest.raises(InvalidLiveAudio, match="not an MP3 file"):
        short.flush()


def test_only_the_start_of_the_stream_is_checked():
    decoder = LiveAudioDecoder("audio/pcm")
    decoder.decode(bytes(4800))
    assert decoder.decode(b"RIFF" + bytes(4800)).size > 0  # samples that happen to spell RIFF


def test_random_pcm16_and_quiet_mulaw_are_not_refused():
    for seed in range(50):
        assert live_decode("audio/pcm", [np.random.default_rng(seed).bytes(4801)]).size > 0
    # µ-law silence is 0xFF: a quiet µ-law stream may well open with an MP3 sync word
    assert live_decode("audio/pcmu", [b"\xff\xfb" + b"\xff" * 798]).size > 0


def test_a_stream_shorter_than_a_header_is_decoded_at_flush():
    decoder = LiveAudioDecoder("audio/pcmu")
    assert decoder.decode(b"\x10" * 3).size == 0
    # FFmpeg's resampler gives nothing for fewer samples than its filter spans (as for a file)
    assert decoder.flush().dtype == np.float32
    with pytest.raises(RuntimeError, match="after flush"):
        decoder.decode(b"\x10\x10")
    assert decoder.flush().size == 0
    short = LiveAudioDecoder("audio/pcmu")
    assert np.concatenate([short.decode(b"\x10" * 3), short.decode(b"\x10" * 97), short.flush()]).size == 200
