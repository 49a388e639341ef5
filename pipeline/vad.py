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

from dataclasses import dataclass, field

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


#: Samples per Silero frame at 16 kHz (32 ms), and the previous frame's tail each frame sees.
FRAME, CONTEXT = 512, 64
_BLOCK_FRAMES = 512  # frames per onnxruntime call, as ``SileroVADSequence`` runs them


@dataclass(frozen=True)
class VadStream:
    """Silero's recurrent state between two calls on a live stream: the LSTM's ``h`` and ``c``
    and the last samples of the previous frame. A few hundred bytes, so a live session keeps
    it and sends it with each call: any replica can run the next frames, and none holds a
    session's state."""

    h: np.ndarray = field(default_factory=lambda: np.zeros((1, 1, 128), np.float32))
    c: np.ndarray = field(default_factory=lambda: np.zeros((1, 1, 128), np.float32))
    context: np.ndarray = field(default_factory=lambda: np.zeros(CONTEXT, np.float32))


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

    def stream_probabilities(self, audio: np.ndarray, state: VadStream) -> tuple[np.ndarray, VadStream]:
        """Per-frame speech probabilities of the next whole frames of a live stream (``audio``'s
        length a multiple of :data:`FRAME`), and the state to pass with the frames after them.
        Calls over consecutive pieces give the probabilities of one call over the whole audio."""
        if audio.size % FRAME:
            raise ValueError(f"live VAD takes whole {FRAME}-sample frames, got {audio.size} samples")
        frames = np.ascontiguousarray(audio, dtype=np.float32).reshape(-1, FRAME)
        if not len(frames):
            return np.zeros(0, np.float32), state
        h, c, context = state.h, state.c, state.context
        probabilities = []
        for first in range(0, len(frames), _BLOCK_FRAMES):
            block = frames[first : first + _BLOCK_FRAMES]
            contexts = np.concatenate((context[None], block[:-1, -CONTEXT:]))
            values, h, c = self._model.session.run(
                ["speech_probs", "hn", "cn"],
                {"input": np.concatenate((contexts, block), axis=1), "h": h, "c": c},
            )
            probabilities.append(np.asarray(values, np.float32).reshape(-1))
            context = block[-1, -CONTEXT:].copy()
        return np.concatenate(probabilities), VadStream(h, c, context)


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
