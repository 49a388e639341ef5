"""Speaker options, turns from embeddings, speakers on segments and RTTM (no model: synthetic
voice prints, so these run in milliseconds)."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.diarization import (
    MAX_SPEAKERS,
    Diarization,
    DiarizationOptions,
    SpeakerCount,
    SpeakerEmbedding,
    diarize,
    name_speakers,
    speaker_label,
)
from pipeline.errors import InvalidParameter
from pipeline.rttm import read_rttm, write_rttm
from pipeline.schemas import Segment, SpeakerTurn, Word
from pipeline.speaker_assignment import assign_speakers, talk_time
from pipeline.speaker_encoder import sliding_spans


@pytest.mark.parametrize(
    ("options", "param"),
    [
        ({"num_speakers": 0}, "num_speakers"),
        ({"num_speakers": MAX_SPEAKERS + 1}, "num_speakers"),
        ({"min_speakers": 0}, "min_speakers"),
        ({"max_speakers": -1}, "max_speakers"),
        ({"min_speakers": 4, "max_speakers": 2}, "min_speakers"),
        ({"num_speakers": 5, "max_speakers": 3}, "num_speakers"),
        ({"num_speakers": 1, "min_speakers": 2}, "num_speakers"),
    ],
)
def test_bad_speaker_counts_name_the_parameter(options, param):
    with pytest.raises(InvalidParameter) as raised:
        SpeakerCount(**options)
    assert raised.value.param == param and raised.value.code == "invalid_parameter"
    assert param in raised.value.message


def test_speaker_labels():
    assert [speaker_label(i) for i in (0, 1, 25, 26, 27, 52)] == ["A", "B", "Z", "AA", "AB", "BA"]


def test_sliding_spans_cover_the_tail():
    assert sliding_spans(0, 100, 40, 20, 10) == [(0, 40), (20, 60), (40, 80), (60, 100)]
    assert sliding_spans(0, 90, 40, 20, 10) == [(0, 40), (20, 60), (40, 80), (50, 90)]
    assert sliding_spans(5, 30, 40, 20, 10) == [(5, 30)]
    assert sliding_spans(5, 10, 40, 20, 10) == []


def _voice(seed: int) -> np.ndarray:
    vector = np.random.default_rng(seed).random(256) ** 8  # peaky: two voices far apart
    return vector / np.linalg.norm(vector)


def _windows(
    plan: list[tuple[float, float, int]], hop: float = 0.4, length: float = 1.6, noise: float = 0.02
):
    """Embeddings over stretches of speech, each (start, end, voice seed), plus a little noise."""
    rng = np.random.default_rng(7)
    out = []
    for start, end, seed in plan:
        t = start
        while True:
            stop = min(t + length, end)
            vector = _voice(seed) + noise * rng.standard_normal(256)
            out.append(SpeakerEmbedding(round(t, 3), round(stop, 3), vector / np.linalg.norm(vector)))
            if stop >= end:
                break
            t += hop
    return out


def test_turns_follow_the_voices_and_stay_on_speech():
    embeddings = _windows([(1.0, 6.0, 5), (6.0, 11.0, 9), (12.0, 17.0, 5)])
    found = diarize(embeddings[::-1])  # any order
    assert [(t.speaker, t.start, t.end) for t in found.turns] == [
        ("A", 1.0, pytest.approx(6.0, abs=0.3)),
        ("B", pytest.approx(6.0, abs=0.3), 11.0),
        ("A", 12.0, 17.0),
    ]
    assert found.speakers == ["A", "B"] and set(found.voices) == {"A", "B"}
    talk = talk_time(found.turns)
    assert [(t.speaker, t.turns) for t in talk] == [("A", 2), ("B", 1)]
    assert [t.talk_s for t in talk] == pytest.approx([10.0, 5.0], abs=0.01)


def test_a_flicker_is_smoothed_away_and_pauses_within_a_turn_merge():
    # one odd window inside A's speech, and a 0.2 s pause inside B's
    embeddings = _windows([(0.0, 8.0, 5), (8.0, 12.0, 9), (12.2, 20.0, 9)])
    embeddings[6] = SpeakerEmbedding(embeddings[6].start_s, embeddings[6].end_s, _voice(9))
    found = diarize(embeddings, SpeakerCount(num_speakers=2))
    assert [t.speaker for t in found.turns] == ["A", "B"]


def test_no_embeddings_no_turns():
    assert diarize([]) == Diarization([])


def test_known_speakers_are_matched_one_to_one():
    a, b = _voice(1), _voice(2)
    diarization = Diarization(
        [SpeakerTurn(start=0, end=1, speaker="A"), SpeakerTurn(start=1, end=2, speaker="B")], {"A": a, "B": b}
    )
    # "Ann" resembles both; the assignment that is best overall gives A to Bob only if it must
    ann = (a + b) / np.linalg.norm(a + b)
    named = name_speakers(diarization, {"Ann": ann, "Bob": a})
    assert named.speakers == ["Bob", "Ann"]
    only_one = name_speakers(diarization, {"Bea": b})
    assert only_one.speakers == ["A", "Bea"]
    assert name_speakers(diarization, {"Bea": b}, min_similarity=1.1).speakers == ["A", "B"]


def _segment(id: int, start: float, end: float, text: str, words: list[Word] | None = None) -> Segment:
    return Segment(id=id, start=start, end=end, text=text, tokens=[1, 2], words=words or [])


TURNS = [
    SpeakerTurn(start=0.0, end=4.0, speaker="A"),
    SpeakerTurn(start=4.0, end=9.0, speaker="B"),
    SpeakerTurn(start=10.0, end=12.0, speaker="A"),
]


def test_each_segment_gets_the_speaker_who_overlaps_it_most():
    segments = [_segment(0, 0.5, 3.0, " one"), _segment(1, 3.0, 8.0, " two"), _segment(2, 9.2, 9.6, " three")]
    out = assign_speakers(segments, TURNS)
    assert [s.speaker for s in out] == ["A", "B", "B"]  # the last: in a pause, nearest turn is B's
    assert [s.tokens for s in out] == [[1, 2]] * 3
    assert [s.speaker for s in assign_speakers(segments, [])] == [None, None, None]


def test_a_segment_is_split_where_its_words_change_speaker():
    words = [
        Word(word="Yes", start=3.0, end=3.4),
        Word(word="indeed.", start=3.4, end=3.9),
        Word(word="And", start=4.2, end=4.5),
        Word(word="you?", start=4.5, end=5.0),
    ]
    segments = [_segment(0, 0.5, 2.5, " Hello."), _segment(1, 2.9, 5.2, " Yes indeed. And you?", words)]
    out = assign_speakers(segments, TURNS)
    assert [(s.id, s.speaker, s.text, s.start, s.end) for s in out] == [
        (0, "A", " Hello.", 0.5, 2.5),
        (1, "A", " Yes indeed.", 2.9, 3.9),
        (2, "B", " And you?", 4.2, 5.2),
    ]
    assert [w.speaker for w in out[1].words + out[2].words] == ["A", "A", "B", "B"]
    assert out[1].tokens == [] and out[0].tokens == [1, 2]


def test_rttm_round_trips_and_pyannote_reads_it(tmp_path):
    turns = [
        SpeakerTurn(start=0.5, end=2.25, speaker="A"),
        SpeakerTurn(start=2.5, end=4.0, speaker="Jane Doe"),
    ]
    text = write_rttm(turns, "my file")
    assert text.splitlines()[0] == "SPEAKER my_file 1 0.500 1.750 <NA> <NA> A <NA> <NA>"
    back = read_rttm(";; a comment\n" + text)
    assert list(back) == ["my_file"]
    assert [(t.start, t.end, t.speaker) for t in back["my_file"]] == [
        (0.5, 2.25, "A"),
        (2.5, 4.0, "Jane_Doe"),
    ]

    from pyannote.database.util import load_rttm

    (tmp_path / "turns.rttm").write_text(text)
    annotation = load_rttm(tmp_path / "turns.rttm")["my_file"]
    assert sorted(annotation.labels()) == ["A", "Jane_Doe"]
    assert annotation.label_duration("A") == pytest.approx(1.75)
    with pytest.raises(ValueError, match="line 1"):
        read_rttm("SPEAKER x 1 0.0\n")


def test_subtitles_carry_the_speaker_as_players_read_it():
    import io

    import srt
    import webvtt

    from pipeline.formats import to_srt, to_vtt

    segments = [
        Segment(id=0, start=0.0, end=2.0, text=" Hello there.", speaker="A"),
        Segment(id=1, start=2.0, end=4.5, text=" Hi.", speaker="Linda <B>"),
        Segment(id=2, start=5.0, end=6.0, text=" Plain."),
    ]
    cues = webvtt.from_buffer(io.StringIO(to_vtt(segments)))
    assert [c.voice for c in cues] == ["A", "Linda B", None]
    assert [c.text for c in cues] == ["Hello there.", "Hi.", "Plain."]
    subtitles = list(srt.parse(to_srt(segments)))
    assert [s.content for s in subtitles] == ["[A] Hello there.", "[Linda <B>] Hi.", "Plain."]


def test_an_hour_of_embeddings_is_clustered_on_a_subsample_and_every_window_votes(monkeypatch):
    import pipeline.diarization as diarization

    clustered = []
    real = diarization.cluster_embeddings

    def recording(vectors, *args):
        clustered.append(len(vectors))
        return real(vectors, *args)

    monkeypatch.setattr(diarization, "cluster_embeddings", recording)
    # An hour of speech, three voices taking 40 s turns in rotation: 9,000 embeddings.
    plan = [(t, t + 40.0, (5, 9, 13)[i % 3]) for i, t in enumerate(np.arange(0.0, 3600.0, 40.0))]
    embeddings = _windows(plan)
    assert len(embeddings) > 8000
    found = diarize(embeddings)
    # Spectral clustering of all 9,000 took minutes and 2 GB: a subsample of at most 2,000 is
    # clustered, and every embedding votes, so turns keep their full resolution.
    assert clustered == [len(embeddings[:: -(-len(embeddings) // 2000)])] and clustered[0] <= 2000
    assert found.speakers == ["A", "B", "C"]
    assert [t.speaker for t in found.turns] == ["A", "B", "C"] * 30
    assert all(abs(t.start - 40.0 * i) < 0.5 for i, t in enumerate(found.turns))


def test_on_a_long_file_a_voice_needs_its_share_to_count_unless_the_count_is_given():
    """Twenty minutes of two voices, and a third heard for 8 s (20 windows): on a short file 20
    windows are a speaker, on a long one under 2% of the windows are not (stray windows add up
    to that much), unless the request asks for at least three."""
    plan = [(t, t + 30.0, (5, 9)[i % 2]) for i, t in enumerate(np.arange(0.0, 1200.0, 30.0))]
    plan.insert(10, (1200.0, 1208.0, 13))
    long = _windows(sorted(plan))
    assert 0.02 * len(long) > 20
    assert diarize(long).speakers == ["A", "B"]
    assert diarize(long, SpeakerCount(min_speakers=3)).speakers == ["A", "B", "C"]
    assert diarize(long, options=DiarizationOptions(min_speaker_share=0.0)).speakers == ["A", "B", "C"]
    short = _windows([(0.0, 30.0, 5), (30.0, 60.0, 9), (60.0, 68.0, 13)])
    assert diarize(short).speakers == ["A", "B", "C"], "a short file's 8 s voice is a speaker"
