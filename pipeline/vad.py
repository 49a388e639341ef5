"""Speech detection with Silero VAD, and windows cut at its silences.

Why Silero from the ``silero-vad`` package: its weights ship inside the wheel (no hub download),
it needs only torch, and it runs at many times real time on one CPU core, so the preprocessing
stage needs no GPU. Why cut at silences: a window boundary inside a word garbles that word, and a
window of silence sent to Whisper comes back as invented text ("Thank you."), so silences are
cut out and never reach Whisper (WhisperX's cut-and-merge).
"""

from __future__ import annotations

import logging
import threading

import numpy as np
import torch

from pipeline.settings import AudioSettings
from pipeline.windows import Window, plan_speech_windows, plan_windows

log = logging.getLogger(__name__)


class SpeechDetector:
    """Silero VAD: the stretches of speech in 16 kHz mono audio."""

    sample_rate = 16000

    def __init__(self, settings: AudioSettings):
        from silero_vad import load_silero_vad

        self.settings = settings
        # The model carries its recurrent state between calls, so each thread gets its own copy
        # (one shared copy used from several threads crashed a preprocess replica under load).
        self._local = threading.local()
        self._load = load_silero_vad
        self._model()  # load now: a broken install fails at start, not on the first request

    def _model(self):
        if not hasattr(self._local, "model"):
            self._local.model = self._load()
        return self._local.model

    @torch.inference_mode()
    def speech_spans(self, audio: np.ndarray) -> list[tuple[int, int]]:
        """(start, end) sample offsets of each stretch of speech, in order."""
        from silero_vad import get_speech_timestamps

        if audio.size == 0:
            return []
        s = self.settings
        model = self._model()
        found = get_speech_timestamps(
            torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)),
            model,
            threshold=s.vad_threshold,
            sampling_rate=self.sample_rate,
            min_silence_duration_ms=int(s.vad_min_silence_s * 1000),
            speech_pad_ms=int(s.vad_speech_pad_s * 1000),
        )
        model.reset_states()
        return [(int(t["start"]), int(t["end"])) for t in found]


class WindowPlanner:
    """Windows for Whisper: speech cut at silences (VAD on) or the fixed split (VAD off)."""

    def __init__(self, settings: AudioSettings):
        self.settings = settings
        self.detector = SpeechDetector(settings) if settings.vad else None

    @property
    def method(self) -> str:
        return "silero-vad" if self.detector else "fixed-windows"

    def plan(self, audio: np.ndarray, sample_rate: int = 16000) -> list[Window]:
        if self.detector is None:
            return plan_windows(audio.size, sample_rate, self.settings.window_s)
        return plan_speech_windows(
            self.detector.speech_spans(audio),
            sample_rate,
            window_s=self.settings.window_s,
            max_gap_s=self.settings.vad_max_gap_s,
        )
