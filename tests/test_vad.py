"""Silero VAD and cut-and-merge windows."""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from audio_files import speech_and_silence, tone

from pipeline.settings import AudioSettings
from pipeline.vad import SpeechDetector, WindowPlanner
from pipeline.windows import plan_speech_windows

SR = 16000


@pytest.fixture(scope="module")
def detector():
    return SpeechDetector(AudioSettings())


def test_speech_is_found_and_silence_and_tones_are_not(detector):
    spans = detector.speech_spans(speech_and_silence(2.0, "jfk", 3.0))
    assert spans and spans[0][0] >= 1.5 * SR and spans[-1][1] <= 13.5 * SR
    assert detector.speech_spans(np.zeros(SR * 30, np.float32)) == []
    assert detector.speech_spans(tone(5.0)) == []
    assert detector.speech_spans(np.zeros(0, np.float32)) == []


def test_concurrent_calls_give_the_same_spans(detector):
    audio = speech_and_silence("jfk", 2.5, "jfk")
    expected = detector.speech_spans(audio)
    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(lambda _: detector.speech_spans(audio), range(8))) == [expected] * 8


def test_windows_skip_long_silences_and_stay_within_30_s():
    s = SR
    spans = [
        (0, 5 * s),
        (6 * s, 20 * s),
        (21 * s, 29 * s),  # short pauses: one window
        (40 * s, 45 * s),  # after an 11 s silence: a new window
        (46 * s, 120 * s),
    ]  # 74 s of speech: split in 3
    windows = plan_speech_windows(spans, s, window_s=30.0, max_gap_s=2.0)
    assert [w.index for w in windows] == list(range(len(windows)))
    assert all(0 < w.duration_s <= 30.0 for w in windows)
    assert (windows[0].start, windows[0].end) == (0, 29 * s)
    assert (windows[1].start, windows[1].end) == (40 * s, 45 * s), "45 s + 25 s would pass 30 s"
    assert len(windows) == 5 and windows[2].start == 46 * s
    assert not any(w.start < 35 * s < w.end for w in windows), "the 11 s silence is in no window"
    assert windows[-1].end == 120 * s
    for a, b in itertools.pairwise(windows):
        assert a.end <= b.start


def test_planner_falls_back_to_the_fixed_split_without_vad():
    planner = WindowPlanner(AudioSettings(vad=False))
    assert planner.method == "fixed-windows"
    windows = planner.plan(np.zeros(SR * 61, np.float32))
    assert len(windows) == 3 and windows[0].start == 0 and windows[-1].end == SR * 61
    assert WindowPlanner(AudioSettings()).plan(np.zeros(SR * 61, np.float32)) == []
