"""Speaker embeddings from pyannote.audio 4's diarization pipeline: the optional second backend
beside Resemblyzer's GE2E encoder (``pipeline.speaker_encoder``), for users who have its weights.

Why optional: pyannote's pipelines (``pyannote/speaker-diarization-community-1``) are gated on the
Hugging Face hub, so they need each user's accepted conditions and token, and cannot ship or be
fetched in CI. pyannote.audio is also heavy (lightning, torchmetrics, asteroid-filterbanks) and
needs torchaudio and torchcodec built for the very torch installed (its 4.0.2 pinned torch 2.8.0):
PyPI's torchaudio is a CUDA build that does not load against a CPU-only torch. So it is an extra
(``pip install -e ".[pyannote]"``), imported only when this backend is built.

Why a local diarization per window, then one clustering per file: it is what pyannote itself does.
Its pipeline segments 10 s chunks into local speakers, embeds each (chunk, local speaker) and only
then clusters those embeddings across the file. Here each ASR window (up to 30 s) is diarized on
its own, its local speakers' embeddings (one per speaker, its centroid in pyannote's WeSpeaker
space) are the window's voice prints, and ``pipeline.diarization.diarize`` clusters every window's
prints once per file. A window's local labels mean nothing outside it (``SPEAKER_00`` in one window
may be ``SPEAKER_01`` in the next); the clustering joins them. So windows fan out over the
diarization stage's replicas beside ASR, as with GE2E, and the same clustering, count and
frame-by-frame turn voting serve both backends.

Why the exclusive diarization: transcripts want one speaker at a time (a word belongs to one
speaker), and ``diarize`` votes one speaker per frame. pyannote's ``exclusive_speaker_diarization``
keeps, where two people overlap, the one its segmentation model holds most likely.

Why pieces of 1.6 s every 0.4 s: ``diarize`` counts a voice by its number of embeddings
(``min_speaker_windows``, about 3 s of speech at GE2E's hop) and votes turn boundaries frame by
frame from overlapping windows. Each turn is therefore cut exactly like GE2E's windows
(``EmbeddingWindows`` and ``sliding_spans``), every piece carrying its local speaker's vector.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from pipeline.diarization import SpeakerEmbedding
from pipeline.schemas import ModelInfo
from pipeline.speaker_encoder import SAMPLE_RATE, EmbeddingWindows, sliding_spans

INSTALL_HINT = (
    "install the 'pyannote' extra (pip install -e \".[pyannote]\"); pyannote.audio needs torchaudio "
    "(and torchcodec) built for the installed torch: a CUDA torchaudio does not load against a CPU-only torch"
)


class PyannoteSpeakers:
    """pyannote.audio 4's speaker diarization pipeline as an embedding backend, on 16 kHz mono
    float32 windows."""

    sample_rate = SAMPLE_RATE
    count_threshold = 0.6
    """``DiarizationOptions.threshold`` for these embeddings (average-linkage cosine distance): two
    groups of windows are one voice while their mean cosine similarity is above 0.4. GE2E's 0.3
    fits GE2E's tight voices (on the shared clips, one person 0.83-0.94 alike, two people
    0.40-0.66); WeSpeaker's, which pyannote uses, spread wider, typically 0.6-0.8 for one person in
    one recording and under 0.3 for two, so 0.3 would split one voice into several. The value
    follows pyannote 3.1, which cut centroid linkage of unit-normalised WeSpeaker embeddings at a
    Euclidean 0.7045: for unit vectors, two groups' centroids lie ``sqrt(s_a + s_b - 2 * c)``
    apart (``s``: mean similarity within a group, ``c``: across), so that cut is an average-linkage
    distance of ``1 - s + 0.7045**2 / 2``, 0.6 for ``s`` = 0.65. An estimate, not tuned on the
    shared fixtures (the weights are gated). A window's print averages many chunks, so one voice's
    prints agree more than single chunks do: 0.6 errs towards keeping one voice whole."""

    def __init__(self, model: str, token: str | None, device: str):
        started = time.perf_counter()
        try:
            from pyannote.audio import Pipeline
        except (ImportError, OSError) as exc:  # OSError: a torchaudio built for another torch
            raise RuntimeError(
                f"the pyannote diarization backend needs pyannote.audio 4 ({exc}): {INSTALL_HINT}."
            ) from exc
        self.name = model
        self.device = str(device)
        self.windows = EmbeddingWindows()
        # pyannote.audio 4 takes `token` (3.x took `use_auth_token`).
        pipeline = Pipeline.from_pretrained(model, token=token)
        if pipeline is None:
            raise RuntimeError(
                f"pyannote could not load {model!r}: a gated model needs its user conditions "
                "accepted on huggingface.co and a Hugging Face token (HF_TOKEN) set"
                + ("" if token else "; no token was given")
                + "."
            )
        self._pipeline = pipeline.to(torch.device(device))
        self.load_s = time.perf_counter() - started

    def _diarize(self, samples: np.ndarray) -> tuple[Any, dict[str, np.ndarray]]:
        """The pipeline's exclusive diarization of one clip and each local speaker's unit-norm
        vector (speakers without a usable embedding left out)."""
        # Writable and contiguous: torch.from_numpy shares memory, and Ray hands out read-only arrays.
        wave = np.require(samples, np.float32, ["C_CONTIGUOUS", "WRITEABLE"])
        output = self._pipeline({"waveform": torch.from_numpy(wave)[None], "sample_rate": self.sample_rate})
        if not hasattr(output, "exclusive_speaker_diarization"):
            raise RuntimeError(
                f"{self.name!r} did not return pyannote.audio 4's DiarizeOutput "
                "(a legacy pipeline returns only an Annotation, without speaker embeddings)."
            )
        vectors: dict[str, np.ndarray] = {}
        if output.speaker_embeddings is not None:  # None: oracle clustering
            # Rows follow the (overlapping) diarization's labels, which the exclusive one shares.
            labels = output.speaker_diarization.labels()
            for label, row in zip(labels, np.asarray(output.speaker_embeddings, np.float64), strict=False):
                norm = float(np.linalg.norm(row))
                if np.isfinite(row).all() and norm > 0:  # NaN: heard too little; zeros: padding
                    vectors[label] = (row / norm).astype(np.float32)
        return output.exclusive_speaker_diarization, vectors

    def embed_window(self, samples: np.ndarray, start_s: float = 0.0) -> list[SpeakerEmbedding]:
        """Voice prints of one stretch of audio (an ASR window) that starts ``start_s`` seconds
        into its file: each exclusive turn cut into pieces of 1.6 s every 0.4 s, each carrying its
        local speaker's vector. Times in the result are from the start of the file."""
        if samples.size == 0:
            return []
        exclusive, vectors = self._diarize(samples)
        rate = self.sample_rate
        offset = round(start_s * rate)
        window, hop = round(self.windows.window_s * rate), round(self.windows.hop_s * rate)
        out: list[SpeakerEmbedding] = []
        for turn, _, label in exclusive.itertracks(yield_label=True):
            vector = vectors.get(label)
            if vector is None:
                continue
            a, b = max(0, round(turn.start * rate)), min(samples.size, round(turn.end * rate))
            out += [
                SpeakerEmbedding((offset + s) / rate, (offset + e) / rate, vector)
                for s, e in sliding_spans(a, b, window, hop, 1)
            ]
        return sorted(out, key=lambda e: (e.start_s, e.end_s))

    def embed_reference(self, samples: np.ndarray) -> np.ndarray:
        """One voice print for a reference clip of a known speaker: the vector of the local
        speaker heard longest in it."""
        exclusive, vectors = self._diarize(samples)
        heard: dict[str, float] = {}
        for turn, _, label in exclusive.itertracks(yield_label=True):
            if label in vectors:
                heard[label] = heard.get(label, 0.0) + turn.duration
        if not heard:
            raise ValueError("pyannote found no speaker with a voice print in the reference clip")
        return vectors[max(heard, key=lambda label: heard[label])]

    def info(self) -> ModelInfo:
        return ModelInfo(
            stage="diarization",
            model=self.name,
            backend="pyannote",
            device=self.device,
            dtype="float32",
            load_s=self.load_s,
        )
