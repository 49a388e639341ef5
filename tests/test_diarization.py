"""Speaker diarization on real speech: Resemblyzer's shipped GE2E weights, clustering, DER.

DER is measured with ``pyannote.metrics`` (collar 0.25 s, overlapped speech skipped) against the
shared sample's reference RTTM and against conversations assembled here from recordings of
different people, whose turns are therefore known exactly.
"""

from __future__ import annotations

import numpy as np
import pytest
from conversations import FIXTURES, SR, conversation, der, load_recordings, round_robin, speech_pieces

from pipeline.audio import decode_audio
from pipeline.diarization import Diarization, SpeakerCount, diarize, name_speakers
from pipeline.rttm import read_rttm
from pipeline.settings import AudioSettings
from pipeline.speaker_assignment import SpeakerTimeline
from pipeline.speaker_encoder import SpeakerEncoder
from pipeline.vad import SpeechDetector


@pytest.fixture(scope="module")
def encoder() -> SpeakerEncoder:
    return SpeakerEncoder()


@pytest.fixture(scope="module")
def detector() -> SpeechDetector:
    return SpeechDetector(AudioSettings())


@pytest.fixture(scope="module")
def recordings() -> dict[str, np.ndarray]:
    return load_recordings()


def _diarize_known(encoder, audio, reference, count: SpeakerCount | None = None) -> Diarization:
    """Diarization of an assembled conversation, its known turns as the speech."""
    speech = [(t.start, t.end) for t in reference]
    return diarize(encoder.embed_window(audio, 0.0, speech), count)


def test_features_are_resemblyzers(encoder, recordings):
    """The encoder sees what Resemblyzer feeds it: librosa's mel power spectrogram, after the
    volume raised to -30 dBFS."""
    import librosa

    clip = recordings["kennedy"][SR : 3 * SR] * np.float32(0.01)  # quiet: exercises the gain
    gain = 10 ** (-30 / 20) / np.sqrt(np.mean(clip.astype(np.float64) ** 2))
    expected = librosa.feature.melspectrogram(
        y=clip * np.float32(gain), sr=SR, n_fft=400, hop_length=160, n_mels=40
    ).T
    got = encoder.mel_power(clip).numpy()
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-5 * expected.max())


def test_embeddings_are_unit_windows_over_speech_in_absolute_time(encoder, recordings, detector):
    audio = recordings["kennedy"]
    speech = [(a / SR, b / SR) for a, b in detector.speech_spans(audio)]
    whole = encoder.embed_window(audio, 0.0, speech)
    assert whole and all(abs(np.linalg.norm(e.vector) - 1) < 1e-4 for e in whole)
    assert all(any(a - 1e-6 <= e.start_s < e.end_s <= b + 1e-6 for a, b in speech) for e in whole)
    # Cut into two ASR windows at a pause, window by window, as the Serve stage runs it: the same.
    cut = round((speech[0][1] + speech[1][0]) / 2 * SR)
    parts = encoder.embed_window(audio[:cut], 0.0, speech) + encoder.embed_window(
        audio[cut:], cut / SR, speech
    )
    np.testing.assert_allclose([(e.start_s, e.end_s) for e in parts], [(e.start_s, e.end_s) for e in whole])
    np.testing.assert_allclose(
        np.stack([e.vector for e in parts]), np.stack([e.vector for e in whole]), atol=1e-4
    )


def test_same_reader_is_closer_than_other_people(encoder, recordings):
    one, other = encoder.embed_reference(recordings["lj"]), encoder.embed_reference(recordings["lj_other"])
    strangers = [encoder.embed_reference(recordings[n]) for n in ("kennedy", "libri1995", "common_voice")]
    assert float(one @ other) > max(float(one @ s) for s in strangers)


def test_shared_sampleder(encoder, detector):
    """The two-speaker sample against its reference RTTM, speech found by Silero VAD, the number
    of speakers found from the data."""
    audio = decode_audio(FIXTURES / "diarization" / "sample.wav", max_duration_s=60)
    reference = read_rttm((FIXTURES / "diarization" / "sample.rttm").read_text())["sample"]
    speech = [(a / SR, b / SR) for a, b in detector.speech_spans(audio)]
    found = diarize(encoder.embed_window(audio, 0.0, speech))
    error = der(reference, found.turns)
    print(f"shared sample: DER {error:.3f}, {len(found.speakers)} speakers")
    assert len(found.speakers) == 2
    assert error <= 0.15


@pytest.mark.parametrize(
    ("names", "parts"),
    [
        (["kennedy", "libri1088"], 3),
        (["libri1995", "libri2412"], 3),
        (["kennedy", "libri1995", "libri2412"], 3),
        (["libri1088", "kennedy", "libri1995"], 3),
    ],
    ids=["two-a", "two-b", "three-a", "three-b"],
)
def test_assembled_conversationder(encoder, recordings, detector, names, parts):
    audio, reference = round_robin(recordings, detector, names, parts)
    found = _diarize_known(encoder, audio, reference)
    error = der(reference, found.turns)
    print(f"{'+'.join(names)}: DER {error:.3f}, {len(found.speakers)} speakers")
    assert len(found.speakers) == len(names)
    assert found.speakers == ["A", "B", "C"][: len(names)]
    assert error <= 0.10


def test_one_voice_is_one_speaker(encoder, recordings, detector):
    audio, reference = round_robin(recordings, detector, ["libri1088"], 3)
    assert _diarize_known(encoder, audio, reference).speakers == ["A"]


def test_speaker_count_options_are_honoured(encoder, recordings, detector):
    audio, reference = round_robin(recordings, detector, ["kennedy", "libri1088"], 3)
    speech = [(t.start, t.end) for t in reference]
    embeddings = encoder.embed_window(audio, 0.0, speech)
    assert len(diarize(embeddings, SpeakerCount(num_speakers=3)).speakers) == 3
    assert len(diarize(embeddings, SpeakerCount(num_speakers=1)).speakers) == 1
    assert len(diarize(embeddings, SpeakerCount(min_speakers=3)).speakers) == 3
    assert len(diarize(embeddings, SpeakerCount(max_speakers=1)).speakers) == 1
    assert len(diarize(embeddings, SpeakerCount(min_speakers=1, max_speakers=4)).speakers) == 2


def _three_with_a_short_voice(recordings, detector):
    """Kennedy and LibriSpeech 2412 in turns, and LJ Speech's reader once for 1.5 s."""
    kennedy = speech_pieces(recordings["kennedy"], detector, 3)  # the last third is left for a reference
    libri = speech_pieces(recordings["libri2412"], detector, 2)
    audio, reference = conversation(
        [
            ("kennedy", kennedy[0]),
            ("libri2412", libri[0]),
            ("lj", recordings["lj"]),
            ("kennedy", kennedy[1]),
            ("libri2412", libri[1]),
        ]
    )
    return audio, reference, kennedy


def test_a_given_count_finds_a_short_voice(encoder, recordings, detector):
    """A speaker with one 1.5 s turn is too little to be found from the data alone (a speaker
    needs 3.2 s of speech for that); ``num_speakers`` makes it one."""
    audio, reference, _ = _three_with_a_short_voice(recordings, detector)
    found = _diarize_known(encoder, audio, reference, SpeakerCount(num_speakers=3))
    error = der(reference, found.turns)
    print(f"three speakers, one short, num_speakers=3: DER {error:.3f}")
    assert len(found.speakers) == 3
    assert error <= 0.10


def test_known_speakers_name_the_clusters(encoder, recordings, detector):
    """References of the same people from other clips: LJ002-0035 for the reader whose
    LJ002-0020 is in the conversation, the last third of Kennedy's speech (the conversation has
    the first two); the third speaker has no reference and keeps a letter."""
    audio, reference, kennedy = _three_with_a_short_voice(recordings, detector)
    found = _diarize_known(encoder, audio, reference, SpeakerCount(num_speakers=3))
    assert found.speakers == ["A", "B", "C"]
    references = {
        "Linda": encoder.embed_reference(recordings["lj_other"]),
        "John": encoder.embed_reference(kennedy[2]),
    }
    named = name_speakers(found, references)
    assert named.speakers == ["John", "B", "Linda"]
    expected = {"kennedy": "John", "libri2412": "B", "lj": "Linda"}
    timeline = SpeakerTimeline(named.turns)
    assert [timeline.speaker(t.start, t.end) for t in reference] == [expected[t.speaker] for t in reference]
    assert set(named.voices) == {"John", "B", "Linda"}
