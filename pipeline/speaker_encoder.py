"""Speaker embeddings: Resemblyzer's GE2E voice encoder over short sliding windows of speech.

Why Resemblyzer's encoder: its trained weights (``pretrained.pt``, a 3-layer LSTM trained with the
GE2E loss on thousands of speakers) ship inside its wheel, so diarization works offline, with no
model hub and no token, and the model is small enough (1.4 M parameters) to run on a CPU replica.

Why not ``import resemblyzer``: its ``__init__`` imports its audio module, which imports
``webrtcvad`` (whose own import needs ``pkg_resources``, gone from recent setuptools) and
``scipy.ndimage.morphology`` (gone from recent SciPy), and loads librosa (numba's JIT) — all for
preprocessing this project does itself (Silero VAD finds the speech). So the weights file is found
with ``importlib.util.find_spec`` without running the package, loaded with ``weights_only=True``,
and the same small network is built here in torch. Its input is what Resemblyzer computes with
``librosa.feature.melspectrogram``: a 40-band mel *power* (not log) spectrogram of 25 ms Hann
windows every 10 ms, frames centred with zero padding (librosa 0.10's default on), Slaney's mel
scale and area normalisation (tested equal to librosa's). The filterbank comes from
``transformers.audio_utils`` (the same filters as librosa's; transformers is already a
dependency, and librosa's import compiles numba code), the STFT from torch. Like Resemblyzer's
``preprocess_wav``, quiet audio is raised to -30 dBFS first: the features are not log-compressed,
so the level matters.

Why sliding windows of 1.6 s every 0.4 s: 1.6 s (160 frames) is the partial-utterance length the
encoder was trained on, long enough for a stable voice print; the 0.4 s hop gives turn boundaries
a resolution finer than the 0.25 s DER collar once each frame is voted on by the four windows over
it. Each window is normalised on its own, so a file's embeddings are the same however it was cut
into ASR windows, and :meth:`SpeakerEncoder.embed_window` can run window by window on any replica
while the clustering (``pipeline.diarization``) runs once per file on all of them.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pipeline.diarization import SpeakerEmbedding

SAMPLE_RATE = 16_000
#: Resemblyzer's feature and network shapes (its ``hparams.py``).
N_FFT, HOP, N_MELS = 400, 160, 40
HIDDEN, EMBEDDING, LAYERS = 256, 256, 3
TARGET_DBFS = -30.0


@dataclass(frozen=True)
class EmbeddingWindows:
    """Where embeddings are taken over speech."""

    window_s: float = 1.6
    """Length of one embedding window (the encoder's training partials are 1.6 s)."""
    hop_s: float = 0.4
    """Step between consecutive windows over one stretch of speech."""
    min_s: float = 0.4
    """Shortest audio the encoder is run on: a shorter stretch of speech is widened to this length
    with the audio around it (its embedding still covers only the stretch itself)."""


def weights_path() -> Path:
    """``pretrained.pt`` inside the installed ``resemblyzer`` package, found without importing it."""
    spec = importlib.util.find_spec("resemblyzer")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the resemblyzer package is not installed: pip install resemblyzer")
    path = Path(next(iter(spec.submodule_search_locations))) / "pretrained.pt"
    if not path.is_file():
        raise RuntimeError(f"resemblyzer is installed but its weights are missing: {path}")
    return path


class _VoiceEncoder(nn.Module):
    """GE2E's network: the last layer's final hidden state, a linear layer, ReLU, unit norm."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(N_MELS, HIDDEN, LAYERS, batch_first=True)
        self.linear = nn.Linear(HIDDEN, EMBEDDING)

    def forward(self, mels: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        packed = nn.utils.rnn.pack_padded_sequence(mels, frames, batch_first=True, enforce_sorted=False)
        _, (hidden, _) = self.lstm(packed)
        raw = torch.relu(self.linear(hidden[-1]))
        return raw / raw.norm(dim=1, keepdim=True).clamp_min(1e-12)


def sliding_spans(start: int, end: int, window: int, hop: int, min_len: int) -> list[tuple[int, int]]:
    """Windows of ``window`` samples every ``hop`` over ``[start, end)``, the last one ending at
    ``end`` so the tail is covered; one window (the whole span) when it is shorter than
    ``window``; none when it is shorter than ``min_len``."""
    length = end - start
    if length < min_len:
        return []
    if length <= window:
        return [(start, end)]
    starts = list(range(start, end - window + 1, hop))
    if starts[-1] + window < end:
        starts.append(end - window)
    return [(s, s + window) for s in starts]


class SpeakerEncoder:
    """Resemblyzer's GE2E speaker encoder with its shipped weights, on 16 kHz mono float32."""

    sample_rate = SAMPLE_RATE
    count_threshold = 0.3
    """``DiarizationOptions.threshold`` for GE2E's voice prints (tuned on the shared recordings)."""

    def __init__(self, device: str = "cpu", windows: EmbeddingWindows | None = None):
        self.device = torch.device(device)
        self.windows = windows or EmbeddingWindows()
        self._model = _VoiceEncoder()
        state = torch.load(weights_path(), map_location="cpu", weights_only=True)["model_state"]
        # The checkpoint also holds GE2E's training-only similarity scale and bias.
        self._model.load_state_dict({k: v for k, v in state.items() if not k.startswith("similarity_")})
        self._model.to(self.device).eval()
        self._window = torch.hann_window(N_FFT, periodic=True, device=self.device)
        from transformers.audio_utils import mel_filter_bank

        filters = mel_filter_bank(
            num_frequency_bins=N_FFT // 2 + 1,
            num_mel_filters=N_MELS,
            min_frequency=0.0,
            max_frequency=SAMPLE_RATE / 2,
            sampling_rate=SAMPLE_RATE,
            norm="slaney",
            mel_scale="slaney",
        )
        self._filters = torch.from_numpy(np.ascontiguousarray(filters.T, dtype=np.float32)).to(self.device)

    def mel_power(self, clip: np.ndarray) -> torch.Tensor:
        """(frames, 40) mel power of one clip, raised to -30 dBFS when quieter."""
        rms = float(np.sqrt(np.mean(np.square(clip, dtype=np.float64)))) if clip.size else 0.0
        if 0 < rms < 10 ** (TARGET_DBFS / 20):
            clip = clip * np.float32(10 ** (TARGET_DBFS / 20) / rms)
        wave = torch.from_numpy(np.ascontiguousarray(clip, dtype=np.float32)).to(self.device)
        spectrum = torch.stft(
            wave, N_FFT, HOP, window=self._window, center=True, pad_mode="constant", return_complex=True
        )
        return (self._filters @ spectrum.abs().square()).T

    @torch.inference_mode()
    def embed_clips(self, clips: Sequence[np.ndarray], batch_size: int = 64) -> np.ndarray:
        """One unit-norm embedding per clip (each clip whole), as a (clips, 256) float32 array."""
        out = np.zeros((len(clips), EMBEDDING), np.float32)
        for first in range(0, len(clips), batch_size):
            mels = [self.mel_power(clip) for clip in clips[first : first + batch_size]]
            frames = torch.tensor([len(m) for m in mels])
            batch = nn.utils.rnn.pad_sequence(mels, batch_first=True)
            out[first : first + len(mels)] = self._model(batch, frames).cpu().numpy()
        return out

    def embed_window(
        self,
        samples: np.ndarray,
        start_s: float = 0.0,
        speech: Sequence[tuple[float, float]] | None = None,
    ) -> list[SpeakerEmbedding]:
        """Embeddings of sliding windows over the speech of one stretch of audio (an ASR window)
        that starts ``start_s`` seconds into its file. ``speech`` gives its stretches of speech in
        seconds from the start of the file (clipped to the stretch); ``None`` takes all of it as
        speech. Times in the result are from the start of the file."""
        rate = self.sample_rate
        offset = round(start_s * rate)
        if speech is None:
            spans = [(0, samples.size)]
        else:
            spans = [
                (max(0, round(a * rate) - offset), min(samples.size, round(b * rate) - offset))
                for a, b in speech
            ]
        w = self.windows
        window, hop, min_len = round(w.window_s * rate), round(w.hop_s * rate), round(w.min_s * rate)
        pieces: list[tuple[int, int]] = []
        for a, b in spans:
            if b - a >= min_len:
                pieces += sliding_spans(a, b, window, hop, min_len)
            elif b - a >= min_len // 4:
                pieces.append((a, b))  # a short stretch: embedded with the audio around it
        clips = []
        for a, b in pieces:
            widen = max(0, min_len - (b - a))
            lo = max(0, min(a - widen // 2, samples.size - min_len))
            clips.append(samples[lo : max(b, lo + min_len)])
        vectors = self.embed_clips(clips)
        return [
            SpeakerEmbedding((offset + a) / rate, (offset + b) / rate, vector)
            for (a, b), vector in zip(pieces, vectors, strict=True)
        ]

    def embed_reference(self, samples: np.ndarray) -> np.ndarray:
        """One voice print for a reference clip of a known speaker (2-10 s): the normalised mean
        of its windows' embeddings."""
        vectors = [e.vector for e in self.embed_window(samples)]
        if not vectors:
            raise ValueError(f"a reference clip needs at least {self.windows.min_s} s of audio")
        mean = np.mean(vectors, axis=0)
        return (mean / np.linalg.norm(mean)).astype(np.float32)
