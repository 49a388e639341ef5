"""Speech detection with Silero VAD, and windows cut at its silences.

Why Silero from the ``silero-vad`` package: its weights ship inside the wheel (no hub download), and
it runs at hundreds of times real time on one CPU core, so the preprocessing stage needs no GPU.
Why its sequence ONNX model (``load_silero_vad(sequence=True)``) rather than the TorchScript one:
it gives the per-frame speech probabilities of Silero's streaming model bit for bit (the streaming
ONNX model's; the TorchScript model's within 2e-5, the same spans), but runs a block of up to 512
frames (16 s) per onnxruntime call instead of one Python step per 32 ms frame: about 6x faster.
Inference is torch-free (only the package's import still pulls torch in, see ``_load_model``).
Each call runs on one thread (onnxruntime with one intra- and one inter-op thread, the GIL released
inside it), so throughput comes from concurrent calls and replicas; the recurrent state lives
inside one call, so one model serves concurrent calls with no per-thread copies.

Why cut at silences: a window boundary inside a word garbles that word, and a window of silence
sent to Whisper comes back as invented text ("Thank you."), so silences are cut out and never
reach Whisper (WhisperX's cut-and-merge).
"""

from __future__ import annotations

import numpy as np

from pipeline.settings import AudioSettings, VadOptions
from pipeline.windows import Window, plan_speech_windows, plan_windows


def _load_model():
    """Silero's sequence ONNX model. Importing ``silero_vad`` still imports torch and sets torch's
    thread count to 1 for the whole process, which would slow a Whisper on CPU beside it: the
    count is put back."""
    import torch

    threads = torch.get_num_threads()
    try:
        from silero_vad import load_silero_vad

        return load_silero_vad(sequence=True)
    finally:
        torch.set_num_threads(threads)


class SpeechDetector:
    """Silero VAD: the stretches of speech in 16 kHz mono audio."""

    sample_rate = 16000

    def __init__(self, settings: AudioSettings):
        self.settings = settings
        self._model = _load_model()  # load now: a broken install fails at start, not on a request

    def speech_spans(self, audio: np.ndarray, vad: VadOptions | None = None) -> list[tuple[int, int]]:
        """(start, end) sample offsets of each stretch of speech, in order, found with ``vad`` or
        else the settings' options."""
        from silero_vad import get_speech_timestamps_sequence

        if audio.size == 0:
            return []
        vad = vad if vad is not None else self.settings.vad_options()
        found = get_speech_timestamps_sequence(
            np.ascontiguousarray(audio, dtype=np.float32),
            self._model,
            threshold=vad.threshold,
            sampling_rate=self.sample_rate,
            min_silence_duration_ms=round(vad.min_silence_s * 1000),
            speech_pad_ms=round(vad.speech_pad_s * 1000),
        )
        return [(int(t["start"]), int(t["end"])) for t in found]


class WindowPlanner:
    """Windows for Whisper: speech cut at silences (VAD on) or the fixed split (VAD off)."""

    def __init__(self, settings: AudioSettings):
        self.settings = settings
        self.detector = SpeechDetector(settings) if settings.vad else None

    @property
    def method(self) -> str:
        return "silero-vad-onnx" if self.detector else "fixed-windows"

    def plan(
        self, audio: np.ndarray, sample_rate: int = 16000, vad: VadOptions | None = None
    ) -> list[Window]:
        if self.detector is None:
            return plan_windows(audio.size, sample_rate, self.settings.window_s)
        return plan_speech_windows(
            self.detector.speech_spans(audio, vad),
            sample_rate,
            window_s=self.settings.window_s,
            max_gap_s=self.settings.vad_max_gap_s,
        )
