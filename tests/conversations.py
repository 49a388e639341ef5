"""Conversations with known turns, assembled from recordings of different real people in
``../shared/fixtures`` (see its speakers' README), and their diarization error rate, measured with
``pyannote.metrics`` (collar 0.25 s, overlapped speech skipped)."""

from __future__ import annotations

import itertools

import numpy as np
from conftest import ROOT

from pipeline.audio import decode_audio
from pipeline.schemas import SpeakerTurn
from pipeline.vad import SpeechDetector

SR = 16000
FIXTURES = ROOT.parent / "shared" / "fixtures"
RECORDINGS = {
    "kennedy": "audio/jfk.wav",
    "libri1995": "audio/librispeech-1995-1837-0001.wav",
    "libri1088": "speakers/libri-1088-134315-0000.wav",
    "libri2412": "speakers/2412-153948-0001.flac",
    "lj": "speakers/LJ002-0020.wav",
    "lj_other": "speakers/LJ002-0035.wav",
    "common_voice": "speakers/common_voice_en_651325.mp3",
}
GAP_S = 0.4


def load_recordings() -> dict[str, np.ndarray]:
    """Each recording decoded to 16 kHz mono, by speaker name."""
    return {name: decode_audio(FIXTURES / path, max_duration_s=60) for name, path in RECORDINGS.items()}


def der(reference: list[SpeakerTurn], hypothesis: list[SpeakerTurn]) -> float:
    return der_parts(reference, hypothesis)["diarization error rate"]


def der_parts(reference: list[SpeakerTurn], hypothesis: list[SpeakerTurn]) -> dict[str, float]:
    """DER and its parts as ``pyannote.metrics`` names them (``confusion``, ``missed detection``,
    ``false alarm`` in seconds, ``total`` the reference's speech)."""
    from pyannote.core import Annotation, Segment, Timeline
    from pyannote.metrics.diarization import DiarizationErrorRate

    def annotation(turns: list[SpeakerTurn]) -> Annotation:
        out = Annotation()
        for i, turn in enumerate(turns):
            out[Segment(turn.start, turn.end), i] = turn.speaker
        return out

    extent = Timeline([Segment(0, max(t.end for t in reference + hypothesis))])
    metric = DiarizationErrorRate(collar=0.25, skip_overlap=True)
    parts = metric(annotation(reference), annotation(hypothesis), uem=extent, detailed=True)
    return {name: float(value) for name, value in parts.items()}


def speech_pieces(audio: np.ndarray, detector: SpeechDetector, parts: int) -> list[np.ndarray]:
    """``audio``'s speech in ``parts`` pieces, cut in the pauses nearest to equal parts."""
    spans = detector.speech_spans(audio)
    first, last = spans[0][0], spans[-1][1]
    pauses = [(a[1] + b[0]) // 2 for a, b in itertools.pairwise(spans)]
    cuts = [first]
    for i in range(1, parts):
        target = first + (last - first) * i / parts
        cuts.append(min(pauses, key=lambda p: abs(p - target)) if pauses else round(target))
    cuts = [*sorted(set(cuts)), last]
    pieces = []
    for a, b in itertools.pairwise(cuts):
        inside = [(max(s, a), min(e, b)) for s, e in spans if e > a and s < b]
        pieces.append(audio[inside[0][0] : inside[-1][1]])
    return pieces


def conversation(turns: list[tuple[str, np.ndarray]]) -> tuple[np.ndarray, list[SpeakerTurn]]:
    """The pieces one after another with a short silence between, and their known turns."""
    silence = np.zeros(round(GAP_S * SR), np.float32)
    audio, reference, t = [silence], [], GAP_S
    for speaker, piece in turns:
        reference.append(SpeakerTurn(start=t, end=t + piece.size / SR, speaker=speaker))
        audio += [piece, silence]
        t += (piece.size + silence.size) / SR
    return np.concatenate(audio), reference


def round_robin(recordings, detector, names: list[str], parts: int):
    pieces = {name: speech_pieces(recordings[name], detector, parts) for name in names}
    return conversation([(name, pieces[name][i]) for i in range(parts) for name in names])


def stereo_call(recordings, detector, names: tuple[str, str], parts: int = 3):
    """A call recorded in stereo: each person's pieces in turn on their own channel (the first
    name's on the first), silence on the other; (2, n) samples and the known turns."""
    pieces = {name: speech_pieces(recordings[name], detector, parts) for name in names}
    gap = np.zeros(round(GAP_S * SR), np.float32)
    channels: list[list[np.ndarray]] = [[gap], [gap]]
    reference, t = [], GAP_S
    for i in range(parts):
        for c, name in enumerate(names):
            piece = pieces[name][i]
            reference.append(SpeakerTurn(start=t, end=t + piece.size / SR, speaker=name))
            channels[c] += [piece, gap]
            channels[1 - c] += [np.zeros(piece.size, np.float32), gap]
            t += (piece.size + gap.size) / SR
    return np.stack([np.concatenate(c) for c in channels]), reference


def stereo_file(samples: np.ndarray, fmt: str = "WAV") -> bytes:
    """(channels, n) float32 samples at 16 kHz as a file (soundfile's ``fmt``)."""
    import io

    import soundfile

    out = io.BytesIO()
    soundfile.write(out, samples.T, SR, format=fmt, subtype="FLOAT" if fmt == "WAV" else None)
    return out.getvalue()
