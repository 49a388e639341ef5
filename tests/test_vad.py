"""Silero VAD and cut-and-merge windows."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from audio_files import speech_and_silence, tone
from conftest import ROOT, SHARED_AUDIO

from pipeline.audio import decode_audio
from pipeline.settings import AudioSettings, VadOptions
from pipeline.vad import FRAME, SpeechDetector, VadStream, WindowPlanner
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


def _speech_clips() -> dict[str, np.ndarray]:
    manifest = json.loads((SHARED_AUDIO / "manifest.json").read_text())
    clips = {
        c["file"]: decode_audio(SHARED_AUDIO / c["file"], max_duration_s=3600) for c in manifest["clips"]
    }
    # 44 s: crosses the sequence model's 512-frame (16.4 s) blocks, so the state carried between them
    clips["generated"] = speech_and_silence(2.0, "jfk", 3.0, "jfk", 0.7, "jfk", 5.0)
    return clips


@pytest.mark.parametrize(
    "vad",
    [None, VadOptions(threshold=0.3, min_silence_s=0.1, speech_pad_s=0.03)],
    ids=["settings", "fine"],
)
def test_spans_match_silero_torchscript(detector, vad):
    """The sequence ONNX path finds the speech the TorchScript model (the previous path) finds.

    Measured on these clips, at these options and at threshold 0.7 / 0.2 s / no pad: the spans are
    identical, sample for sample; the per-frame probabilities differ by at most 1.4e-5 (TorchScript
    against ONNX kernels; the sequence model is bit-exact with Silero's streaming ONNX model). The
    tolerance allowed: the same number of spans, each boundary within one 32 ms frame (512
    samples), the step a probability within 1e-5 of the threshold could move it."""
    import torch
    from silero_vad import get_speech_timestamps, load_silero_vad

    reference = load_silero_vad()
    options = vad or AudioSettings().vad_options()
    for name, audio in _speech_clips().items():
        found = get_speech_timestamps(
            torch.from_numpy(audio),
            reference,
            threshold=options.threshold,
            sampling_rate=SR,
            min_silence_duration_ms=round(options.min_silence_s * 1000),
            speech_pad_ms=round(options.speech_pad_s * 1000),
        )
        expected = [(t["start"], t["end"]) for t in found]
        spans = detector.speech_spans(audio, vad)
        assert expected, name
        assert len(spans) == len(expected), (name, spans, expected)
        for got, want in zip(spans, expected, strict=True):
            assert abs(got[0] - want[0]) <= 512 and abs(got[1] - want[1]) <= 512, (name, spans, expected)


def test_a_request_s_vad_options_change_the_spans(detector):
    audio = speech_and_silence(1.0, "jfk", 1.5, "jfk")
    configured = detector.speech_spans(audio)
    assert len(configured) >= 6, "JFK's pauses (0.5 s and longer) split each clip"
    assert detector.speech_spans(audio, VadOptions()) == configured, "the same options as the settings"
    merged = detector.speech_spans(audio, VadOptions(min_silence_s=3.0))
    assert len(merged) == 1 and merged[0] == (configured[0][0], configured[-1][1])
    unpadded = detector.speech_spans(audio, VadOptions(speech_pad_s=0.0))
    assert len(unpadded) == len(configured)
    pairs = list(zip(unpadded, configured, strict=True))
    assert all(s0 > s1 and e0 <= e1 for (s0, e0), (s1, e1) in pairs), "the last ends with the audio"
    assert all(e0 < e1 for (_, e0), (_, e1) in pairs[:-1])
    strict = detector.speech_spans(audio, VadOptions(threshold=0.9))
    assert sum(e - s for s, e in strict) < sum(e - s for s, e in configured)

    long_pauses = SpeechDetector(AudioSettings(vad_min_silence_s=3.0))
    assert long_pauses.speech_spans(audio) == merged, "the settings' options when a call gives none"
    planner = WindowPlanner(AudioSettings())
    assert planner.method == "silero-vad-onnx"
    assert planner.plan(audio)[0].start == configured[0][0]
    assert planner.plan(audio, vad=VadOptions(speech_pad_s=0.0))[0].start == unpadded[0][0]


def test_concurrent_calls_give_the_same_spans(detector):
    audio = speech_and_silence("jfk", 2.5, "jfk")
    expected = detector.speech_spans(audio)
    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(lambda _: detector.speech_spans(audio), range(8))) == [expected] * 8


def test_a_live_stream_in_pieces_gets_the_whole_files_probabilities(detector):
    # A live session's frames go through VAD a few at a time, the state carried between calls
    # (and between replicas): the probabilities are those of one pass over the whole audio.
    audio = decode_audio(SHARED_AUDIO / "jfk.wav", max_duration_s=60)
    audio = audio[: audio.size // FRAME * FRAME]
    whole = detector._model.audio_forward(audio)
    rng = np.random.default_rng(0)
    state, pieces, at = VadStream(), [], 0
    while at < audio.size:
        n = int(rng.integers(1, 40)) * FRAME
        probabilities, state = detector.stream_probabilities(audio[at : at + n], state)
        pieces.append(probabilities)
        at += n
    assert np.array_equal(np.concatenate(pieces), whole)
    with pytest.raises(ValueError, match="whole 512-sample frames"):
        detector.stream_probabilities(audio[:1000], VadStream())


def test_loading_the_model_leaves_torch_s_thread_count_alone():
    """Importing silero_vad sets torch's threads to 1 for the whole process (a Whisper on CPU beside
    it would crawl); a fresh process, since the test session has imported it already."""
    code = (
        "import torch; torch.set_num_threads(2); from pipeline.settings import AudioSettings; "
        "from pipeline.vad import SpeechDetector; SpeechDetector(AudioSettings()); "
        "print(torch.get_num_threads())"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2"]


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
