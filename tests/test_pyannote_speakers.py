"""The pyannote.audio backend of speaker embeddings (``pipeline.pyannote_speakers``).

pyannote.audio cannot be imported here: it imports torchaudio, and the only torchaudio on PyPI is a
CUDA build that fails to load against this CPU-only torch (``libc10_cuda.so`` is missing). Its
gated weights could not be fetched anyway. So these tests put a stand-in ``pyannote.audio`` in
``sys.modules`` (``pyannote`` is a namespace package: the real ``pyannote.core``, which
pyannote.metrics brings, stays in use) with pyannote.audio 4's interface: ``Pipeline.from_pretrained``
(``token``, ``None`` for a gated model without one), ``.to(torch.device)`` and a call on
``{"waveform": (channel, time) tensor, "sample_rate": ...}`` that returns a ``DiarizeOutput`` of real
``pyannote.core.Annotation``s and one embedding row per speaker in ``speaker_diarization.labels()``
order. The stand-in diarizes for real, on a toy signal: a voice is a tone (200, 250 or 300 Hz),
speech is where there is energy, and the louder tone is the one speaker of the exclusive
diarization. Like pyannote's, its local labels follow the order speakers are first heard in, so they
change meaning from window to window; each voice's embedding is a fixed vector plus seeded noise, as
spread as WeSpeaker's, and a speaker heard less than a second gets a NaN row.
"""

from __future__ import annotations

import importlib
import itertools
import sys
import types
import warnings
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
from pyannote.core import Annotation, Segment

from pipeline.diarization import DiarizationOptions, SpeakerCount, diarize
from pipeline.pyannote_speakers import PyannoteSpeakers

RATE = 16_000
FRAME = 1_600  # the stand-in's 0.1 s analysis frames: 10 Hz bins, so each tone falls on one
TONES = {"low": 200, "mid": 250, "high": 300}
DIM = 256
MIN_HEARD_S = 1.0
GATED = "pyannote/speaker-diarization-community-1"


def _voice_vectors() -> dict[str, np.ndarray]:
    """A unit vector per voice, 0.15 alike (one channel makes different voices a little alike)."""
    rng = np.random.default_rng(7)
    first = rng.normal(size=DIM)
    first /= np.linalg.norm(first)
    out = {"low": first}
    for voice in ("mid", "high"):
        other = rng.normal(size=DIM)
        other -= (other @ first) * first
        out[voice] = 0.15 * first + np.sqrt(1 - 0.15**2) * other / np.linalg.norm(other)
    return out


VOICES = _voice_vectors()


@dataclass
class DiarizeOutput:
    speaker_diarization: Annotation
    exclusive_speaker_diarization: Annotation
    speaker_embeddings: np.ndarray | None = None


class FakePipeline:
    """pyannote.audio 4's ``Pipeline`` as this backend uses it (see the module docstring)."""

    loaded: ClassVar[list[FakePipeline]] = []

    def __init__(self, checkpoint: Any, token: str | None):
        self.checkpoint, self.token = checkpoint, token
        self.device: torch.device | None = None
        self.legacy = False
        self.files: list[dict] = []
        self.local: list[dict[str, str]] = []  # per call: voice -> local label
        self.outputs: list[DiarizeOutput] = []

    @classmethod
    def from_pretrained(cls, checkpoint, revision=None, hparams_file=None, token=None, cache_dir=None):
        if checkpoint == GATED and not token:
            return None  # what pyannote does when the hub refuses the download
        pipeline = cls(checkpoint, token)
        cls.loaded.append(pipeline)
        return pipeline

    def to(self, device):
        if not isinstance(device, torch.device):
            raise TypeError(f"`device` must be an instance of `torch.device`, got `{type(device).__name__}`")
        self.device = device
        return self

    def __call__(self, file, num_speakers=None, min_speakers=None, max_speakers=None, hook=None):
        waveform = file["waveform"]
        if len(waveform.shape) != 2 or waveform.shape[0] > waveform.shape[1]:
            raise ValueError("'waveform' must be provided as a (channel, time) torch Tensor.")
        if file.get("sample_rate") != RATE:
            raise ValueError("the stand-in only reads 16 kHz")
        self.files.append(file)
        wave = waveform.mean(dim=0).numpy().astype(np.float64)
        frames = wave[: wave.size // FRAME * FRAME].reshape(-1, FRAME)
        spectrum = np.abs(np.fft.rfft(frames, axis=1)) * 2 / FRAME
        amps = np.stack([spectrum[:, tone * FRAME // RATE] for tone in TONES.values()], axis=1)
        speech = np.sqrt(np.mean(frames**2, axis=1)) > 0.01
        active = speech[:, None] & (amps >= 0.25 * amps.max(axis=1, keepdims=True))
        dominant = np.where(speech, amps.argmax(axis=1), -1)
        heard = [v for v in np.argsort([np.argmax(active[:, v]) for v in range(3)]) if active[:, v].any()]
        names = list(TONES)
        local = {names[v]: f"SPEAKER_{i:02d}" for i, v in enumerate(heard)}
        overlapping, exclusive = Annotation(uri="waveform"), Annotation(uri="waveform")
        for v in heard:
            for annotation, mask in ((overlapping, active[:, v]), (exclusive, dominant == v)):
                for a, b in _runs(mask):
                    annotation[Segment(a * FRAME / RATE, b * FRAME / RATE), names[v]] = local[names[v]]
        rng = np.random.default_rng(len(self.files))
        rows = []
        for label in overlapping.labels():
            voice = next(name for name, lab in local.items() if lab == label)
            if active[:, names.index(voice)].sum() * FRAME / RATE < MIN_HEARD_S:
                rows.append(np.full(DIM, np.nan))
            else:  # raw, not unit-norm, like pyannote's centroids
                rows.append(3.0 * (VOICES[voice] + rng.normal(0, 0.045, DIM)))
        output = DiarizeOutput(overlapping, exclusive, np.array(rows).reshape(-1, DIM))
        self.local.append(local)
        self.outputs.append(output)
        return output.speaker_diarization if self.legacy else output


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True))


def synth(duration_s: float, script: list[tuple[str, float, float, float]], seed: int = 0) -> np.ndarray:
    """Faint noise with (voice, start, end, amplitude) tones on it, float32 at 16 kHz."""
    out = np.random.default_rng(seed).normal(0, 0.001, round(duration_s * RATE))
    t = np.arange(out.size) / RATE
    for voice, a, b, amp in script:
        span = slice(round(a * RATE), round(b * RATE))
        out[span] += amp * np.sin(2 * np.pi * TONES[voice] * t[span])
    return out.astype(np.float32)


@pytest.fixture
def fake_pyannote(monkeypatch):
    import pyannote.core  # the real one, beside the stand-in

    assert pyannote.core.Annotation is Annotation
    module = types.ModuleType("pyannote.audio")
    module.Pipeline = FakePipeline  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pyannote.audio", module)
    FakePipeline.loaded.clear()
    return module


def test_pyannote_audio_is_imported_only_when_the_backend_is_built(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []

    class Recorder:
        def find_spec(self, name, path=None, target=None):
            asked.append(name)
            return None

    monkeypatch.delitem(sys.modules, "pyannote.audio", raising=False)
    monkeypatch.delitem(sys.modules, "pipeline.pyannote_speakers")
    monkeypatch.setattr(sys, "meta_path", [Recorder(), *sys.meta_path])
    module = importlib.import_module("pipeline.pyannote_speakers")
    assert "pyannote.audio" not in asked and "pyannote.audio" not in sys.modules
    monkeypatch.setitem(sys.modules, "pyannote.audio", None)  # import pyannote.audio -> ImportError
    with pytest.raises(
        RuntimeError, match=r"'pyannote' extra.*pip install -e \"\.\[pyannote\]\".*torchaudio"
    ):
        module.PyannoteSpeakers(GATED, "hf_token", "cpu")


def test_the_pipeline_is_loaded_with_the_token_and_moved_to_the_device(fake_pyannote, tmp_path):
    speakers = PyannoteSpeakers(GATED, "hf_token", "cpu")
    pipeline = FakePipeline.loaded[0]
    assert (pipeline.checkpoint, pipeline.token, pipeline.device) == (GATED, "hf_token", torch.device("cpu"))
    info = speakers.info()
    assert (info.model, info.backend, info.device, info.stage) == (GATED, "pyannote", "cpu", "diarization")
    local = str(tmp_path / "config.yaml")  # a local checkpoint goes through unchanged, with no token
    PyannoteSpeakers(local, None, "cpu")
    assert (FakePipeline.loaded[1].checkpoint, FakePipeline.loaded[1].token) == (local, None)


def test_a_gated_model_without_a_token_says_what_to_do(fake_pyannote):
    with pytest.raises(RuntimeError, match=r"(?s)accepted on huggingface\.co.*token.*no token was given"):
        PyannoteSpeakers(GATED, None, "cpu")


def test_the_window_goes_to_the_pipeline_as_a_mono_16khz_float32_tensor(fake_pyannote):
    speakers = PyannoteSpeakers(GATED, "hf_token", "cpu")
    samples = synth(4.0, [("low", 0.5, 3.5, 0.3)])
    samples.setflags(write=False)  # as Ray's object store hands them out
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns on a read-only array
        speakers.embed_window(samples, 12.0)
    file = FakePipeline.loaded[0].files[0]
    waveform = file["waveform"]
    assert isinstance(waveform, torch.Tensor) and waveform.dtype == torch.float32
    assert tuple(waveform.shape) == (1, samples.size) and file["sample_rate"] == 16000
    assert np.array_equal(waveform[0].numpy(), samples)
    assert speakers.embed_window(np.zeros(0, np.float32), 12.0) == []


def test_exclusive_turns_become_absolute_pieces_of_their_speakers_vector(fake_pyannote):
    speakers = PyannoteSpeakers(GATED, "hf_token", "cpu")
    start = 30.0
    script = [
        ("low", 0.5, 4.3, 0.3),
        ("high", 2.0, 3.0, 0.12),  # under "low": in the overlapping diarization only
        ("high", 5.0, 6.2, 0.3),  # shorter than a piece: one piece
        ("mid", 6.6, 7.1, 0.3),  # heard 0.5 s: a NaN embedding
        ("low", 7.5, 9.6, 0.3),
    ]
    embeddings = speakers.embed_window(synth(10.0, script), start)
    output, local = FakePipeline.loaded[0].outputs[0], FakePipeline.loaded[0].local[0]
    rows = dict(zip(output.speaker_diarization.labels(), output.speaker_embeddings, strict=True))
    assert np.isnan(rows[local["mid"]]).all(), "the stand-in gave the short speaker no embedding"
    assert Segment(2.0, 3.0) in output.speaker_diarization.label_timeline(local["high"])

    assert all(start <= e.start_s < e.end_s <= start + 10.0 for e in embeddings)
    assert all(e.end_s - e.start_s <= 1.6 + 1e-9 for e in embeddings)
    assert all(e.vector.dtype == np.float32 and abs(np.linalg.norm(e.vector) - 1) < 1e-5 for e in embeddings)
    turns = [
        (round(turn.start + start, 3), round(turn.end + start, 3), label)
        for turn, _, label in output.exclusive_speaker_diarization.itertracks(yield_label=True)
    ]
    assert [(a, b) for a, b, label in turns if label != local["mid"]] == [
        (30.5, 34.3),
        (35.0, 36.2),
        (37.5, 39.6),
    ]
    covered = []
    for a, b, label in turns:
        pieces = [e for e in embeddings if a - 1e-6 <= e.start_s and e.end_s <= b + 1e-6]
        if label == local["mid"]:
            assert pieces == []
            continue
        unit = rows[label] / np.linalg.norm(rows[label])
        assert all(np.allclose(e.vector, unit, atol=1e-6) for e in pieces)
        assert pieces[0].start_s == pytest.approx(a) and pieces[-1].end_s == pytest.approx(b)
        assert np.allclose(np.diff([e.start_s for e in pieces[:-1]]), 0.4), "pieces every 0.4 s"
        assert all(q.start_s <= p.end_s for p, q in itertools.pairwise(pieces)), "a gap in the turn"
        covered += pieces
    assert len(covered) == len(embeddings), "every piece lies in one exclusive turn"
    assert [e.end_s - e.start_s for e in embeddings if 35.0 <= e.start_s < 36.2] == [pytest.approx(1.2)]


def test_a_legacy_pipeline_without_embeddings_is_refused(fake_pyannote):
    speakers = PyannoteSpeakers(GATED, "hf_token", "cpu")
    FakePipeline.loaded[0].legacy = True
    with pytest.raises(RuntimeError, match="DiarizeOutput"):
        speakers.embed_window(synth(3.0, [("low", 0.0, 3.0, 0.3)]))


# Four 12 s windows of one conversation; who speaks first changes, and with it the local labels.
CONVERSATION = [
    [("low", 0.5, 5.0), ("high", 5.4, 12.0)],
    [("high", 0.0, 4.0), ("low", 4.5, 11.6)],  # "high" goes on across the window's start
    [("low", 0.3, 6.0), ("high", 6.5, 11.5)],
    [("high", 0.2, 5.8), ("low", 6.2, 11.8)],
]


def test_diarize_joins_each_voice_across_windows_whatever_its_local_label(fake_pyannote):
    speakers = PyannoteSpeakers(GATED, "hf_token", "cpu")
    embeddings = []
    for i, script in enumerate(CONVERSATION):
        audio = synth(12.0, [(voice, a, b, 0.3) for voice, a, b in script], seed=i)
        embeddings += speakers.embed_window(audio, 12.0 * i)
    locals_of_low = {local["low"] for local in FakePipeline.loaded[0].local}
    assert locals_of_low == {"SPEAKER_00", "SPEAKER_01"}, (
        "the local labels must swap for this to test anything"
    )

    count = SpeakerCount()
    found = diarize(embeddings, count, DiarizationOptions(threshold=PyannoteSpeakers.count_threshold))
    assert len(found.speakers) == 2
    frame = 0.05
    truth = np.full(round(48 / frame), "", dtype=object)
    for i, script in enumerate(CONVERSATION):
        for voice, a, b in script:
            truth[round((12 * i + a) / frame) : round((12 * i + b) / frame)] = voice
    said = np.full(truth.size, "", dtype=object)
    for turn in found.turns:
        said[round(turn.start / frame) : round(turn.end / frame)] = turn.speaker
    voice_of = {}
    for speaker in found.speakers:
        heard = truth[said == speaker]
        voice_of[speaker] = max(("low", "high"), key=lambda v, heard=heard: int((heard == v).sum()))
    assert sorted(voice_of.values()) == ["high", "low"], "one speaker per voice"
    for turn in found.turns:
        span = truth[round(turn.start / frame) : round(turn.end / frame)]
        assert (span == voice_of[turn.speaker]).mean() >= 0.9, turn
    speech = truth != ""
    mapped = np.array([voice_of.get(s, "") for s in said], dtype=object)
    assert (mapped[speech] == truth[speech]).mean() >= 0.95

    # GE2E's threshold takes the windows of one WeSpeaker-like voice for several speakers.
    assert len(diarize(embeddings, count, DiarizationOptions(threshold=0.3)).speakers) > 2


def test_a_reference_clip_gives_the_voice_of_its_main_speaker(fake_pyannote):
    speakers = PyannoteSpeakers(GATED, "hf_token", "cpu")
    clip = synth(6.0, [("high", 0.2, 4.5, 0.3), ("low", 4.8, 6.0, 0.3)])
    vector = speakers.embed_reference(clip)
    assert abs(np.linalg.norm(vector) - 1) < 1e-5
    assert vector @ VOICES["high"] > 0.7 > vector @ VOICES["low"]
    with pytest.raises(ValueError, match="no speaker"):
        speakers.embed_reference(synth(3.0, []))


def test_the_config_picks_the_backend_its_model_token_and_threshold(fake_pyannote):
    """The diarization stage's settings to the backend (the stage's ``load_voice_encoder``): the
    token from config reaches the hub client, and the backend's own count threshold applies
    unless the config sets one."""
    from deployments.diarization import load_voice_encoder
    from pipeline.settings import DiarizationSettings
    from pipeline.speaker_encoder import SpeakerEncoder

    settings = DiarizationSettings.model_validate(
        {"backend": "pyannote", "pyannote_model": "/models/community-1", "pyannote_token": "hf_secret"}
    )
    assert "hf_secret" not in repr(settings), "the token stays out of logs and reprs"
    encoder = load_voice_encoder(settings, "cpu")
    assert isinstance(encoder, PyannoteSpeakers)
    assert (FakePipeline.loaded[-1].checkpoint, FakePipeline.loaded[-1].token) == (
        "/models/community-1",
        "hf_secret",
    )
    assert (settings.count_threshold or encoder.count_threshold) == 0.6
    assert isinstance(load_voice_encoder(DiarizationSettings(), "cpu"), SpeakerEncoder)
    assert len(FakePipeline.loaded) == 1, "the default backend never touches pyannote"
