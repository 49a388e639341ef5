"""Diarization by channel (``pipeline.channel_speakers``): a stereo recording assembled from two
real people, each on a channel of their own, as a call recorder keeps a call."""

from __future__ import annotations

import io

import numpy as np
import pytest
from conversations import SR, der, load_recordings, stereo_call, stereo_file

from pipeline.channel_speakers import ChannelOptions, channel_turns
from pipeline.errors import ChannelCountError
from pipeline.schemas import SpeakerTurn
from pipeline.settings import AudioSettings
from pipeline.vad import SpeechDetector

NAMES = ("kennedy", "libri1995")


@pytest.fixture(scope="module")
def detector() -> SpeechDetector:
    return SpeechDetector(AudioSettings())


@pytest.fixture(scope="module")
def call(detector) -> tuple[np.ndarray, list[SpeakerTurn]]:
    return stereo_call(load_recordings(), detector, NAMES)


def turns_of(samples: np.ndarray, detector: SpeechDetector, **options) -> list[SpeakerTurn]:
    vad = AudioSettings().vad_options().model_copy(update={"min_silence_s": 0.1})
    found = channel_turns(
        io.BytesIO(stereo_file(samples)), detector, vad, max_duration_s=600, options=ChannelOptions(**options)
    )
    return [t.model_copy(update={"speaker": NAMES[ord(t.speaker) - ord("A")]}) for t in found]


def confusion(reference: list[SpeakerTurn], hypothesis: list[SpeakerTurn]) -> float:
    """Seconds of speech given to the wrong person (no mapping: channel A is the first name)."""
    wrong = 0.0
    for h in hypothesis:
        for r in reference:
            if r.speaker != h.speaker:
                wrong += max(0.0, min(r.end, h.end) - max(r.start, h.start))
    return wrong


def test_each_channel_is_its_speaker_exactly(call, detector):
    samples, reference = call
    found = turns_of(samples, detector)
    assert [t.speaker for t in found[:2]] == list(NAMES), "the first channel is A, the second B"
    assert confusion(reference, found) == 0.0
    # What DER is left is pauses inside a piece (the reference counts them as speech).
    assert der(reference, found) < 0.08
    assert {t.speaker for t in found} == set(NAMES)


@pytest.mark.parametrize("leak_db", [-30, -20])
def test_the_other_partys_leak_is_not_a_turn(call, detector, leak_db):
    """A phone line leaks each party into the other's channel: Silero hears the leak as speech
    at any level, and the loudness check takes it out again."""
    samples, reference = call
    leak = 10 ** (leak_db / 20)
    leaky = samples + leak * samples[::-1]
    clean = turns_of(samples, detector)
    found = turns_of(leaky, detector)
    assert confusion(reference, found) == 0.0
    assert len(found) == len(clean)
    for a, b in zip(clean, found, strict=True):
        assert a.speaker == b.speaker
        assert abs(a.start - b.start) < 0.25 and abs(a.end - b.end) < 0.25
    unchecked = turns_of(leaky, detector, bleed_db=200.0)
    assert confusion(reference, unchecked) > 5.0, "without the check the leak would be turns"


def test_people_talking_at_once_both_keep_their_turns(call, detector):
    samples, reference = call
    first, second = reference[0], reference[1]
    a, b = round(first.start * SR), round(first.end * SR)
    length = min(b - a, samples.shape[1] - round(second.start * SR))
    overlapped = samples.copy()
    overlapped[1, a : a + length] += samples[1, round(second.start * SR) : round(second.start * SR) + length]
    found = turns_of(overlapped, detector)
    during = [t for t in found if t.start < first.end - 0.5 and t.end > first.start + 0.5]
    assert {t.speaker for t in during} == set(NAMES)


def test_blocks_do_not_cut_turns(call, detector):
    samples, _ = call
    whole = turns_of(samples, detector)
    blocks = turns_of(samples, detector, block_s=2.5)
    assert len(blocks) == len(whole)
    for a, b in zip(whole, blocks, strict=True):
        assert a.speaker == b.speaker
        assert abs(a.start - b.start) < 0.2 and abs(a.end - b.end) < 0.2


def test_a_mono_file_is_refused_naming_multichannel(call, detector):
    samples, _ = call
    vad = AudioSettings().vad_options()
    with pytest.raises(ChannelCountError, match="1 audio channel") as caught:
        channel_turns(io.BytesIO(stereo_file(samples[:1])), detector, vad, max_duration_s=600)
    assert caught.value.param == "multichannel"
    assert caught.value.code == "wrong_channel_count"
