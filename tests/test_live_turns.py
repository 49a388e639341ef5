"""Turns from per-frame speech probabilities (synthetic and Silero's own on real speech), and the
partial text two passes agree on."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from conftest import SHARED_AUDIO

from pipeline.errors import InvalidParameter
from pipeline.live_turns import FRAME, StableText, TurnDetection, TurnDetector, TurnEvent

SPEECH, QUIET, WAVERING = 0.9, 0.05, 0.4  # WAVERING: below threshold 0.5, above 0.5 - 0.15
PAD = 300 * 16  # default prefix_padding_ms, in samples
SILENCE_FRAMES = 16  # default silence_duration_ms 500 -> 16 frames of 32 ms (512 ms)
MAX_TURN = 30 * 16_000


def frames(*runs: tuple[int, float]) -> list[float]:
    """Probabilities from (how many frames, probability) runs."""
    return [p for count, p in runs for _ in range(count)]


def started(frame: int, offset: int = 0) -> TurnEvent:
    return TurnEvent("started", frame * FRAME + offset)


def stopped(frame: int, offset: int = 0) -> TurnEvent:
    return TurnEvent("stopped", frame * FRAME + offset)


def detect(probabilities: list[float], options: TurnDetection | None = None, **kw: float) -> list[TurnEvent]:
    return TurnDetector(options or TurnDetection(), **kw).push(probabilities)


# --- turns ----------------------------------------------------------------------------------------


def test_a_turn_starts_padded_before_speech_and_ends_after_the_silence():
    events = detect(frames((20, QUIET), (50, SPEECH), (40, QUIET)))
    # starts 300 ms before its first speech frame; ends at the end of the 16th silent frame
    assert events == [TurnEvent("started", 20 * FRAME - PAD), stopped(70 + SILENCE_FRAMES)]


def test_padding_is_clamped_at_the_session_start():
    assert detect(frames((2, QUIET), (30, SPEECH), (20, QUIET)))[0] == started(0)
    assert detect(frames((0, QUIET), (30, SPEECH)))[0] == started(0)


def test_a_pause_shorter_than_the_silence_duration_does_not_end_the_turn():
    events = detect(frames((30, SPEECH), (SILENCE_FRAMES - 1, QUIET), (30, SPEECH), (30, QUIET)))
    assert events == [started(0), stopped(30 + SILENCE_FRAMES - 1 + 30 + SILENCE_FRAMES)]


def test_a_longer_pause_ends_the_turn_and_the_next_is_padded_no_further_back_than_its_end():
    events = detect(frames((30, SPEECH), (SILENCE_FRAMES + 2, QUIET), (30, SPEECH), (40, QUIET)))
    end = 30 + SILENCE_FRAMES
    assert events == [started(0), stopped(end), started(end), stopped(30 + SILENCE_FRAMES + 2 + 30 + 16)]
    # a longer gap: the full padding
    events = detect(frames((30, SPEECH), (SILENCE_FRAMES + 40, QUIET), (30, SPEECH)))
    assert events[2] == TurnEvent("started", (30 + SILENCE_FRAMES + 40) * FRAME - PAD)


def test_silence_duration_and_padding_options():
    options = TurnDetection(
        threshold=0.5, prefix_padding_ms=0, silence_duration_ms=1000
    )  # 31.25 -> 32 frames
    events = detect(frames((10, QUIET), (30, SPEECH), (31, QUIET), (30, SPEECH), (40, QUIET)), options)
    assert events == [started(10), stopped(10 + 30 + 31 + 30 + 32)]


def test_hysteresis_only_a_probability_below_threshold_minus_015_starts_a_silence():
    # wavering between threshold - 0.15 and threshold: still speech
    assert detect(frames((30, SPEECH), (100, WAVERING))) == [started(0)]
    # ... but it does not cancel a silence already begun; only a frame at the threshold does
    assert detect(frames((30, SPEECH), (4, QUIET), (SILENCE_FRAMES, WAVERING))) == [
        started(0),
        stopped(30 + SILENCE_FRAMES),
    ]
    assert detect(frames((30, SPEECH), (10, QUIET), (1, 0.5), (10, QUIET))) == [started(0)]
    # a higher threshold moves the silence level with it
    assert detect(frames((30, 0.95), (20, 0.75)), TurnDetection(threshold=0.8)) == [started(0)]
    assert detect(frames((30, 0.95), (20, 0.6)), TurnDetection(threshold=0.8)) == [started(0), stopped(46)]


def monologue(seconds: float = 70.0, seed: int = 0) -> tuple[list[float], list[int]]:
    """Speech with a short dip (a breath, 2-4 frames, no real pause) every 1.5-3 s, then silence;
    and the dips' frames."""
    rng = np.random.default_rng(seed)
    probabilities: list[float] = [QUIET] * 10
    dips: list[int] = []
    while len(probabilities) * FRAME < seconds * 16_000:
        probabilities += [float(p) for p in rng.uniform(0.7, 1.0, int(rng.integers(45, 95)))]
        width = int(rng.integers(2, 5))
        dips += range(len(probabilities), len(probabilities) + width)
        probabilities += [float(p) for p in rng.uniform(0.02, 0.3, width)]
    return [*probabilities, *[QUIET] * 40], dips


def test_a_long_monologue_is_cut_into_turns_of_at_most_30_s_at_its_dips():
    probabilities, dips = monologue()
    events = detect(probabilities)
    turns = list(zip(events[::2], events[1::2], strict=True))
    assert all(a.kind == "started" and b.kind == "stopped" for a, b in turns)
    assert len(turns) == 3
    assert all(b.sample - a.sample <= MAX_TURN for a, b in turns)
    for (start, cut), (next_start, _) in itertools.pairwise(turns):
        assert next_start.sample == cut.sample  # the next turn goes on from the cut, no padding
        limit = start.sample + MAX_TURN
        window = [
            f for f in range(len(probabilities)) if limit - 5 * 16_000 <= f * FRAME + FRAME // 2 <= limit
        ]
        quietest = min(window, key=probabilities.__getitem__)
        assert cut.sample == quietest * FRAME + FRAME // 2  # the middle of the quietest frame
        assert quietest in dips
    # the last turn ends in the final silence (begun by the last dip)
    last_speech = max(f for f, p in enumerate(probabilities) if p >= 0.5)
    assert turns[-1][1].sample == (last_speech + 1 + SILENCE_FRAMES) * FRAME


def test_the_cut_is_at_the_quietest_frame_of_the_last_5_s_and_the_frames_after_it_count_for_the_next_turn():
    # one turn from sample 0; 30 s is 937.5 frames, so frame 937 would take it past 30 s
    probabilities = frames((900, SPEECH), (1, 0.1), (29, SPEECH), (40, 0.2))
    probabilities[780] = 0.0  # quieter, but more than 5 s before the limit (frame 781 on)
    probabilities[880] = 0.15
    events = detect(probabilities)
    cut = 900 * FRAME + FRAME // 2
    # the silence began at frame 930, before the cut was made at frame 937: it still ends the new turn
    assert events == [started(0), TurnEvent("stopped", cut), TurnEvent("started", cut), stopped(930 + 16)]


def test_a_speaker_pausing_at_30_s_gets_no_turn_of_silence():
    probabilities = frames((900, SPEECH), (1, 0.1), (29, SPEECH), (40, QUIET), (10, SPEECH))
    events = detect(probabilities)
    cut = 930 * FRAME + FRAME // 2  # the silence is quieter than the dip
    assert events == [started(0), TurnEvent("stopped", cut), started(970, -PAD)]


def test_a_turn_past_30_s_of_unbroken_speech_is_cut_and_goes_on():
    events = detect(frames((3000, SPEECH)))  # 96 s, no dip: the quietest is the first of equals
    starts = [e.sample for e in events if e.kind == "started"]
    stops = [e.sample for e in events if e.kind == "stopped"]
    assert starts[0] == 0 and starts[1:] == stops
    assert all(0 < b - a <= MAX_TURN for a, b in zip(starts, stops, strict=False))
    assert TurnDetector(TurnDetection()).push(frames((3000, SPEECH))) == events


@pytest.mark.parametrize("seed", range(3))
def test_pushing_in_pieces_gives_the_same_events_as_all_at_once(seed):
    probabilities, _ = monologue(95.0, seed)
    rng = np.random.default_rng(seed)
    probabilities += [float(p) for p in rng.choice([QUIET, WAVERING, SPEECH], 3000, p=[0.5, 0.1, 0.4])]
    whole = detect(probabilities)
    one_by_one = TurnDetector(TurnDetection())
    assert [e for p in probabilities for e in one_by_one.push([p])] == whole
    pieces, at = TurnDetector(TurnDetection()), 0
    events = []
    while at < len(probabilities):
        size = int(rng.integers(0, 300))
        events += pieces.push(np.asarray(probabilities[at : at + size], np.float32))
        at += size
    assert events == whole
    assert len(whole) > 10
    # turns alternate, in order, never overlap, and none is longer than 30 s
    assert [e.kind for e in whole] == ["started", "stopped"] * (len(whole) // 2) + ["started"] * (
        len(whole) % 2
    )
    assert all(a.sample <= b.sample for a, b in itertools.pairwise(whole))
    assert all(b.sample - a.sample <= MAX_TURN for a, b in zip(whole[::2], whole[1::2], strict=False))


def test_reset_drops_the_open_turn_and_no_turn_starts_before_it():
    detector = TurnDetector(TurnDetection())
    assert detector.push(frames((10, QUIET), (30, SPEECH))) == [started(10, -PAD)]
    assert detector.in_turn and detector.turn_start == 10 * FRAME - PAD
    detector.reset(40 * FRAME + 100)  # the client committed the buffer mid-speech
    assert not detector.in_turn and detector.turn_start is None
    # speech goes on: a new turn, padded no further back than the reset
    assert detector.push(frames((5, SPEECH))) == [started(40, 100)]
    assert detector.push(frames((SILENCE_FRAMES, QUIET))) == [stopped(45 + SILENCE_FRAMES)]
    # frames of audio that was cleared before they were looked at start no turn
    detector.reset(100 * FRAME)
    assert detector.push(frames((100 - 61, SPEECH))) == []
    assert detector.push(frames((1, SPEECH))) == [started(100)]


def test_options_are_checked():
    with pytest.raises(InvalidParameter, match=r"threshold must be in \(0, 1\]") as refused:
        TurnDetection(threshold=1.5)
    assert refused.value.param == "turn_detection.threshold"
    with pytest.raises(InvalidParameter, match="silence_duration_ms must be >= 0"):
        TurnDetection(silence_duration_ms=-1)
    with pytest.raises(ValueError, match="cut_search_s"):
        TurnDetector(TurnDetection(), max_turn_s=5.0, cut_search_s=5.0)
    with pytest.raises(InvalidParameter, match="prefix_padding_ms must be at most 29936") as refused:
        TurnDetector(TurnDetection(prefix_padding_ms=40_000))
    assert refused.value.param == "turn_detection.prefix_padding_ms"


def test_real_speech_with_silero_probabilities():
    from silero_vad import load_silero_vad

    from pipeline.audio import decode_audio

    speech = decode_audio(SHARED_AUDIO / "jfk.wav", max_duration_s=60)  # 11.0 s
    audio = np.concatenate([speech, np.zeros(2 * 16_000, np.float32)])
    probabilities = load_silero_vad(sequence=True).audio_forward(audio)
    assert len(probabilities) == -(-audio.size // FRAME)

    # jfk pauses for 0.99 s after "my fellow Americans" (2.2-3.2 s): silence_duration_ms 1000 ends
    # the turn there, 1200 keeps one turn: [0.052 s, 12.224 s] when measured.
    (start, stop) = detect(probabilities, TurnDetection(silence_duration_ms=1200))
    assert start.kind == "started" and start.sample < 0.6 * 16_000
    assert stop.kind == "stopped" and 11.5 * 16_000 <= stop.sample <= 12.5 * 16_000
    split = detect(probabilities, TurnDetection(silence_duration_ms=1000))
    assert [e.kind for e in split] == ["started", "stopped", "started", "stopped"]
    assert 2.5 * 16_000 <= split[1].sample <= 3.5 * 16_000


# --- partial text ---------------------------------------------------------------------------------


def test_partial_text_is_given_out_where_two_passes_agree():
    text = StableText()
    deltas = [
        text.update("And"),
        text.update("And so my"),
        text.update("And so my fellow"),
        text.update("And so my fellow Americans, ask"),
        text.update("And so my fellow Americans, ask not"),
    ]
    assert deltas == ["", "And", " so my", " fellow", " Americans, ask"]
    assert "".join(deltas) == text.sent == "And so my fellow Americans, ask"
    assert text.update("And so my fellow Americans, ask not") == " not"  # the same text twice agrees
    assert text.finish("And so my fellow Americans, ask not what your country can do for you.") == (
        " what your country can do for you."
    )
    assert text.sent == "And so my fellow Americans, ask not what your country can do for you."


def test_a_pass_that_disagrees_with_what_was_sent_stops_the_deltas_until_the_final():
    text = StableText()
    text.update("And so my fellow")
    assert text.update("And so my fellow Americans") == "And so my fellow"
    assert text.update("And so, my fellow Americans") == ""  # agrees on "And" only
    assert text.update("And so, my fellow Americans ask") == ""  # agrees, but not with what was sent
    assert text.update("And so my fellow Americans ask not") == ""  # agrees with "And" only again
    assert text.update("And so my fellow Americans ask not what") == " Americans ask not"
    assert text.sent == "And so my fellow Americans ask not"


def test_the_final_text_disagreeing_with_the_deltas_gives_none():
    text = StableText()
    text.update("ask not what your coun")
    assert text.update("ask not what your coun try") == "ask not what your coun"
    assert text.finish("ask not what your country") is None  # a word of it was sent cut short
    assert text.sent == "ask not what your coun"
    assert StableText().finish("Ask not.") == "Ask not."  # nothing sent: all of it
    exact = StableText()
    exact.update("Ask not.")
    exact.update("Ask not.")
    assert exact.finish("Ask not.") == ""


@pytest.mark.parametrize("text", ["one", "a  b\tc\nd", "Привет, мир! 你好 世界", "trailing ", " leading"])
def test_words_join_back_into_the_text_exactly(text):
    stable = StableText()
    stable.update(text)
    assert stable.update(text) == text == stable.sent
