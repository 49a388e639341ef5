"""LLM post-processing: the word-preservation check and the summary parser, with and without speakers."""

from __future__ import annotations

import itertools
import json
import re

import pytest

from pipeline.llm import ChatOutput, Conversation, TransformersChat
from pipeline.llm_results import SpeakerPoint, SpeakerText
from pipeline.postprocess import (
    REDUCE_PROMPT,
    SUMMARY_PROMPT,
    PostProcessor,
    SummaryFormatError,
    normalized_words,
    parse_summary,
    word_difference,
)
from pipeline.schemas import Segment
from pipeline.settings import LlmSettings
from pipeline.speaker_text import (
    PUNCTUATE_TURNS_PROMPT,
    SPEAKER_REDUCE_PROMPT,
    SPEAKER_SUMMARY_PROMPT,
    render_turns,
    speaker_texts,
)


def test_normalized_words_ignore_case_and_punctuation():
    assert normalized_words("And so, my fellow Americans: ask not!") == [
        "and",
        "so",
        "my",
        "fellow",
        "americans",
        "ask",
        "not",
    ]
    assert normalized_words("don't well-known") == ["dont", "well", "known"]


@pytest.mark.parametrize(
    "candidate,same",
    [
        ("And so, my fellow Americans, ask not.", True),
        ("and so my fellow americans ask not", True),
        ("And so, my dear fellow Americans, ask not.", False),
        ("And so my fellow Americans", False),
        ("And so my fellow Americans ask not now", False),
        ("And so my fellow citizens ask not", False),
    ],
)
def test_word_difference(candidate, same):
    diff = word_difference("and so my fellow americans ask not", candidate)
    assert (diff is None) == same
    if not same:
        assert "word" in diff


def test_summary_parses_plain_and_fenced_json():
    s = parse_summary('{"abstract": "A speech.", "bullets": ["ask not"]}')
    assert s.abstract == "A speech." and s.bullets == ["ask not"]
    fenced = parse_summary('```json\n{"abstract": "A speech.", "bullets": ["a", "b"]}\n```')
    assert fenced.bullets == ["a", "b"]


@pytest.mark.parametrize(
    "raw,why",
    [
        ("Here is a summary of the talk.", "not valid JSON"),
        ('{"abstract": "x"}', "bullets"),
        ('{"abstract": "x", "bullets": "one"}', "bullets"),
        ('{"abstract": "", "bullets": ["a"]}', "abstract"),
        ('{"abstract": "x", "bullets": ["a"], "extra": 1}', "extra"),
        ('["abstract", "bullets"]', "shape"),
    ],
)
def test_bad_summaries_are_refused_with_a_reason(raw, why):
    with pytest.raises(SummaryFormatError, match=why):
        parse_summary(raw)


class ScriptedChat:
    """A chat backend that answers from a script. The random tiny LLM cannot write correct
    punctuation or JSON, so the *accepting* paths are driven by this script; the rejecting paths
    run on the real tiny model below."""

    def __init__(self, *answers: str):
        self.answers = list(answers)
        self.calls: list[tuple[list[Conversation], int]] = []

    def chat(self, conversations, max_new_tokens):
        self.calls.append((conversations, max_new_tokens))
        return [ChatOutput(self.answers.pop(0), 10, 5) for _ in conversations]

    def count_tokens(self, text):
        return len(text.split())

    def info(self):
        raise NotImplementedError


def test_accepts_punctuation_that_keeps_the_words_and_a_valid_summary():
    chat = ScriptedChat(
        "And so, my fellow Americans: ask not.", '{"abstract": "A call to service.", "bullets": ["Ask not."]}'
    )
    result = PostProcessor(LlmSettings(), chat).run(
        "and so my fellow americans ask not", punctuate=True, summarize=True
    )
    assert result.punctuation.applied and result.punctuation.text.startswith("And so,")
    assert result.summary.summary.bullets == ["Ask not."]
    assert result.tokens_in == 20 and result.tokens_out == 10
    system_prompt = chat.calls[0][0][0][0]["content"]
    assert "Do not add, remove" in system_prompt


def test_rejects_changed_words_and_keeps_the_raw_text():
    chat = ScriptedChat("And so, my dear fellow Americans.")
    result = PostProcessor(LlmSettings(), chat).run(
        "and so my fellow americans", punctuate=True, summarize=False
    )
    assert not result.punctuation.applied and result.punctuation.text is None
    assert "word 4 changed from 'fellow' to 'dear'" in result.punctuation.reason
    assert result.punctuation.fallback == "words_changed"
    assert result.summary.reason == "not requested" and result.summary.fallback is None


def test_too_long_transcripts_are_not_sent():
    chat = ScriptedChat()
    result = PostProcessor(LlmSettings(max_transcript_tokens=16), chat).run(
        "word " * 17, punctuate=True, summarize=True
    )
    assert chat.calls == []
    assert "max_transcript_tokens" in result.punctuation.reason
    assert "max_transcript_tokens" in result.summary.reason
    assert result.punctuation.fallback == result.summary.fallback == "transcript_too_long"


def test_the_real_tiny_llm_output_is_checked_not_trusted():
    settings = LlmSettings(model="tiny-random", max_summary_tokens=32)
    backend = TransformersChat(settings)
    assert backend.info().device == "cpu"
    result = PostProcessor(settings, backend).run(
        "and so my fellow americans ask not", punctuate=True, summarize=True
    )
    assert result.punctuation.applied is False and "changed the words" in result.punctuation.reason
    assert result.summary.summary is None and result.summary.reason
    assert (result.punctuation.fallback, result.summary.fallback) == ("words_changed", "unusable_answer")
    assert result.tokens_in > 0 and result.tokens_out > 0


class RuleChat:
    """A chat backend that answers each conversation with ``rule(system, user)`` (one token per
    word): it stands in for an LLM that follows the instructions, so the chunking logic around it
    is what is tested."""

    def __init__(self, rule):
        self.rule = rule
        self.calls = []

    def chat(self, conversations, max_new_tokens):
        self.calls.append(conversations)
        return [ChatOutput(self.rule(c[0]["content"], c[1]["content"]), 1, 1) for c in conversations]

    def count_tokens(self, text):
        return len(text.split())


def sentence_case(system, user):
    return user[:1].upper() + user[1:] + "."


LONG = " ".join(f"w{i}" for i in range(1, 101))


def test_long_transcripts_are_cut_into_overlapping_chunks_that_fit():
    settings = LlmSettings(max_input_tokens=20, chunk_overlap_words=4)
    chunks = PostProcessor(settings, RuleChat(sentence_case)).chunks(LONG)
    assert len(chunks) > 5
    assert all(len(c.text.split()) <= 20 for c in chunks)
    assert " ".join(c.body for c in chunks) == LONG
    assert chunks[0].context == ""
    for before, after in itertools.pairwise(chunks):
        assert after.context.split() == before.body.split()[-4:]


def test_chunked_punctuation_keeps_every_word_once_in_one_batched_call():
    chat = RuleChat(sentence_case)
    result = PostProcessor(LlmSettings(max_input_tokens=20, chunk_overlap_words=4), chat).run(
        LONG, punctuate=True, summarize=False
    )
    assert (
        result.punctuation.applied
        and result.punctuation.reason is None
        and result.punctuation.fallback is None
    )
    assert normalized_words(result.punctuation.text) == normalized_words(LONG)
    assert len(chat.calls) == 1 and len(chat.calls[0]) > 5, "all chunks in one batch"


def test_a_garbled_chunk_stays_raw_and_the_others_are_punctuated():
    def garble_w50(system, user):
        return sentence_case(system, user.replace("w50", "fifty"))

    result = PostProcessor(LlmSettings(max_input_tokens=20, chunk_overlap_words=4), RuleChat(garble_w50)).run(
        LONG, punctuate=True, summarize=False
    )
    assert result.punctuation.applied
    assert (
        "changed the words in" in result.punctuation.reason
        and "'w50' to 'fifty'" in result.punctuation.reason
    )
    assert result.punctuation.fallback == "some_chunks_changed"
    assert normalized_words(result.punctuation.text) == normalized_words(LONG)
    assert "W1" in result.punctuation.text and "fifty" not in result.punctuation.text


def test_long_summaries_are_map_reduced():
    def summarize(system, user):
        if system == REDUCE_PROMPT:
            return json.dumps({"abstract": "whole", "bullets": [f"{user.count('Part ')} parts"]})
        return json.dumps({"abstract": f"part from {user.split()[0]}", "bullets": [user.split()[-1]]})

    chat = RuleChat(summarize)
    result = PostProcessor(LlmSettings(max_input_tokens=40, chunk_overlap_words=4), chat).run(
        LONG, punctuate=False, summarize=True
    )
    map_calls = len(chat.calls[0])
    assert map_calls > 2
    first_reduce = chat.calls[1]
    assert all(c[0]["content"] == REDUCE_PROMPT for c in first_reduce)
    assert sum(c[1]["content"].count("Part ") for c in first_reduce) == map_calls, "every part reduced"
    assert "part from w1" in first_reduce[0][1]["content"]
    assert result.summary.summary.abstract == "whole"
    assert len(chat.calls[-1]) == 1, "the last round is one summary of everything"


# --- a transcript with speakers ---------------------------------------------------------------


def punctuate_lines(system, user):
    """An LLM that follows the speaker prompt: each line sentence-cased, its label kept."""
    assert system == PUNCTUATE_TURNS_PROMPT, "speaker lines get the speaker prompt"
    lines = [line.partition(": ") for line in user.split("\n")]
    return "\n".join(f"{label}: {text[:1].upper()}{text[1:]}." for label, _, text in lines)


CHAT = [
    SpeakerText(speaker="A", text="so shall we ship it on friday"),
    SpeakerText(speaker="Alice", text="not before the tests pass"),
    SpeakerText(speaker="A", text="then monday"),
    SpeakerText(speaker="B", text="monday works for me"),
]
CHAT_TEXT = " ".join(t.text for t in CHAT)


def test_speaker_texts_merge_one_speakers_segments_and_keep_every_word():
    def seg(i, text, speaker):
        return Segment(id=i, start=i, end=i + 1, text=text, speaker=speaker)

    segments = [
        seg(0, " so shall we", "A"),
        seg(1, " ship it on friday", "A"),
        seg(2, " not before", "Alice"),
        seg(3, " the tests pass", None),  # unlabelled: stays in the turn it is in
        seg(4, " ", "B"),  # nothing said: no turn, and no break in Alice's
        seg(5, " then\nmonday", "A"),
    ]
    turns = speaker_texts(segments)
    assert turns == [
        SpeakerText(speaker="A", text="so shall we ship it on friday"),
        SpeakerText(speaker="Alice", text="not before the tests pass"),
        SpeakerText(speaker="A", text="then monday"),
    ]
    assert speaker_texts([seg(0, " hello", None)]) is None
    assert speaker_texts([seg(0, " hello", None), seg(1, " there", "B")]) == [
        SpeakerText(speaker="B", text="hello there")
    ]


def test_punctuation_with_speakers_keeps_the_turns_and_their_labels():
    chat = RuleChat(punctuate_lines)
    result = PostProcessor(LlmSettings(), chat).run(CHAT_TEXT, punctuate=True, summarize=False, speakers=CHAT)
    sent = chat.calls[0][0][1]["content"]
    assert sent.split("\n") == [
        "A: so shall we ship it on friday",
        "Alice: not before the tests pass",
        "A: then monday",
        "B: monday works for me",
    ]
    punctuation = result.punctuation
    assert punctuation.applied and punctuation.reason is None and punctuation.fallback is None
    assert [t.speaker for t in punctuation.turns] == ["A", "Alice", "A", "B"]
    assert [t.text for t in punctuation.turns] == [
        "So shall we ship it on friday.",
        "Not before the tests pass.",
        "Then monday.",
        "Monday works for me.",
    ]
    assert punctuation.text == "\n".join(f"{t.speaker}: {t.text}" for t in punctuation.turns)


def test_a_word_moved_across_a_turn_boundary_keeps_those_turns_raw():
    def move_then(system, user):  # "then" moves up to Alice's line
        return punctuate_lines(system, user.replace("pass\nA: then monday", "pass then\nA: monday"))

    result = PostProcessor(LlmSettings(), RuleChat(move_then)).run(
        CHAT_TEXT, punctuate=True, summarize=False, speakers=CHAT
    )
    punctuation = result.punctuation
    assert punctuation.applied and punctuation.fallback == "some_chunks_changed"
    assert "of 2 of 4 turns" in punctuation.reason
    assert "turn 2: 1 word(s) added at the end" in punctuation.reason
    assert "turn 3: word 1 changed from 'then' to 'monday'" in punctuation.reason
    assert [t.text for t in punctuation.turns] == [
        "So shall we ship it on friday.",
        "not before the tests pass",
        "then monday",
        "Monday works for me.",
    ]
    assert normalized_words(punctuation.text) == normalized_words(render_turns(CHAT))


def test_a_relabelled_line_keeps_its_turn_raw():
    def b_says_it(system, user):
        return punctuate_lines(system, user).replace("A: Then monday.", "B: Then monday.")

    result = PostProcessor(LlmSettings(), RuleChat(b_says_it)).run(
        CHAT_TEXT, punctuate=True, summarize=False, speakers=CHAT
    )
    punctuation = result.punctuation
    assert punctuation.fallback == "some_chunks_changed"
    assert "turn 3: label 'A' came back as 'B'" in punctuation.reason
    assert [t.speaker for t in punctuation.turns] == ["A", "Alice", "A", "B"]
    assert punctuation.turns[2].text == "then monday"
    assert punctuation.turns[3].text == "Monday works for me."


def test_lines_that_do_not_come_back_one_for_one_are_not_taken():
    def merge_lines(system, user):
        return punctuate_lines(system, user).replace(".\nA: Then", ", then")

    result = PostProcessor(LlmSettings(), RuleChat(merge_lines)).run(
        CHAT_TEXT, punctuate=True, summarize=False, speakers=CHAT
    )
    punctuation = result.punctuation
    assert not punctuation.applied and punctuation.text is None and punctuation.turns is None
    assert punctuation.fallback == "words_changed"
    assert "turns 1-4: 3 line(s) came back for 4" in punctuation.reason


def test_turns_that_are_not_the_texts_words_are_refused():
    with pytest.raises(ValueError, match="do not hold the words"):
        PostProcessor(LlmSettings(), RuleChat(punctuate_lines)).run(
            CHAT_TEXT + " tuesday", punctuate=True, summarize=False, speakers=CHAT
        )


LENGTHS = [3, 7, 2, 30, 5, 9, 1, 12, 4, 6, 8, 33]  # two turns longer than a chunk
LONG_TURNS = [
    SpeakerText(
        speaker=["A", "B", "Alice"][i % 3], text=" ".join(f"w{j}" for j in range(start + 1, start + n + 1))
    )
    for i, (start, n) in enumerate(zip(itertools.accumulate([0, *LENGTHS]), LENGTHS, strict=False))
]
LONG_TURNS_TEXT = " ".join(t.text for t in LONG_TURNS)


def test_long_speaker_transcripts_are_cut_at_turn_boundaries():
    assert " ".join(f"w{i}" for i in range(1, 121)) == LONG_TURNS_TEXT
    chunks = PostProcessor(
        LlmSettings(max_input_tokens=20, chunk_overlap_words=4), RuleChat(None)
    ).speaker_chunks(LONG_TURNS)
    assert len(chunks) > 6
    assert all(len(c.text.split()) <= 20 for c in chunks)
    lines = [line for c in chunks for line in c.lines]
    for i, turn in enumerate(LONG_TURNS):
        mine = [line for line in lines if line.turn == i]
        assert all(line.speaker == turn.speaker for line in mine)
        assert " ".join(line.text for line in mine) == turn.text, "every word once, in order"
        assert (len(mine) == 1) == (len(turn.text.split()) <= 12), "only turns longer than a chunk are cut"
    assert chunks[0].context is None
    for before, after in itertools.pairwise(chunks):
        last = before.lines[-1]
        assert after.context.speaker == last.speaker
        assert after.context.text.split() == last.text.split()[-4:]


def test_long_speaker_transcripts_are_punctuated_in_one_batched_call_every_word_once():
    chat = RuleChat(punctuate_lines)
    settings = LlmSettings(max_input_tokens=20, chunk_overlap_words=4)
    result = PostProcessor(settings, chat).run(
        LONG_TURNS_TEXT, punctuate=True, summarize=False, speakers=LONG_TURNS
    )
    punctuation = result.punctuation
    assert punctuation.applied and punctuation.fallback is None and punctuation.reason is None
    assert len(chat.calls) == 1 and len(chat.calls[0]) > 6, "all chunks in one batch"
    assert chat.calls[0][1][1]["content"].count("\n") >= 1, "a later chunk starts with a context line"
    assert [t.speaker for t in punctuation.turns] == [t.speaker for t in LONG_TURNS]
    for got, raw in zip(punctuation.turns, LONG_TURNS, strict=True):
        assert normalized_words(got.text) == normalized_words(raw.text)
        assert got.text.startswith(raw.text[:1].upper())
    assert normalized_words(punctuation.text) == normalized_words(render_turns(LONG_TURNS))
    assert punctuation.text.count("\n") == len(LONG_TURNS) - 1


def test_a_garbled_line_of_a_long_speaker_transcript_stays_raw_in_its_turn():
    def garble_w50(system, user):
        return punctuate_lines(system, user.replace("w50", "fifty"))

    settings = LlmSettings(max_input_tokens=20, chunk_overlap_words=4)
    result = PostProcessor(settings, RuleChat(garble_w50)).run(
        LONG_TURNS_TEXT, punctuate=True, summarize=False, speakers=LONG_TURNS
    )
    punctuation = result.punctuation
    assert punctuation.applied and punctuation.fallback == "some_chunks_changed"
    assert f"of 1 of {len(LONG_TURNS)} turns" in punctuation.reason
    assert "turn 6: word 3 changed from 'w50' to 'fifty'" in punctuation.reason
    assert punctuation.turns[5] == LONG_TURNS[5], "w48 ... w56 stays raw"
    assert punctuation.turns[4].text == "W43 w44 w45 w46 w47."
    assert "fifty" not in punctuation.text


def points_by_first_word(system, user):
    """An LLM that summarizes speaker lines: a point per speaker, the first word they said."""
    assert system == SPEAKER_SUMMARY_PROMPT
    said: dict[str, str] = {}
    for line in user.split("\n"):
        label, _, text = line.partition(": ")
        said.setdefault(label, text.split()[0])
    return json.dumps(
        {
            "abstract": f"part from {user.split()[1]}",
            "bullets": [user.split()[-1]],
            "speaker_points": [{"speaker": s, "point": f"said {w}"} for s, w in said.items()],
        }
    )


def test_a_summary_with_speakers_says_who_said_what():
    chat = RuleChat(points_by_first_word)
    result = PostProcessor(LlmSettings(), chat).run(CHAT_TEXT, punctuate=False, summarize=True, speakers=CHAT)
    assert chat.calls[0][0][1]["content"].startswith("A: so shall we")
    summary = result.summary.summary
    assert summary.abstract == "part from so" and summary.bullets == ["me"]
    assert summary.speaker_points == [
        SpeakerPoint(speaker="A", point="said so"),
        SpeakerPoint(speaker="Alice", point="said not"),
        SpeakerPoint(speaker="B", point="said monday"),
    ]


def test_without_speakers_the_summary_prompt_and_shape_are_unchanged():
    chat = ScriptedChat('{"abstract": "A plan.", "bullets": ["Ship on monday."]}')
    result = PostProcessor(LlmSettings(), chat).run(CHAT_TEXT, punctuate=False, summarize=True)
    assert chat.calls[0][0][0][0]["content"] == SUMMARY_PROMPT
    assert chat.calls[0][0][0][1]["content"] == CHAT_TEXT
    assert result.summary.summary.speaker_points is None


def test_a_speaker_point_by_someone_not_in_the_transcript_is_refused():
    def invent_carol(system, user):
        return points_by_first_word(system, user).replace('"speaker": "B"', '"speaker": "Carol"')

    result = PostProcessor(LlmSettings(), RuleChat(invent_carol)).run(
        CHAT_TEXT, punctuate=False, summarize=True, speakers=CHAT
    )
    assert result.summary.summary is None and result.summary.fallback == "unusable_answer"
    assert (
        "speaker_points name 'Carol', not a speaker of the transcript ('A', 'Alice', 'B')"
        in result.summary.reason
    )


@pytest.mark.parametrize(
    "raw,speakers,why",
    [
        ('{"abstract": "x", "bullets": ["a"]}', ["A"], "has no speaker_points"),
        ('{"abstract": "x", "bullets": ["a"], "speaker_points": []}', None, "the transcript has no speakers"),
        (
            '{"abstract": "x", "bullets": ["a"], "speaker_points": [{"speaker": "A"}]}',
            ["A"],
            "speaker_points.0.point",
        ),
        (
            '{"abstract": "x", "bullets": ["a"], "speaker_points": [{"speaker": "A", "point": "p", "x": 1}]}',
            ["A"],
            "x",
        ),
        (
            '{"abstract": "x", "bullets": ["a"], "speaker_points": [{"speaker": "a", "point": "p"}]}',
            ["A"],
            "'a'",
        ),
    ],
)
def test_bad_speaker_points_are_refused_with_a_reason(raw, speakers, why):
    with pytest.raises(SummaryFormatError, match=why):
        parse_summary(raw, speakers)


def combine_points(system, user):
    """The reduce step of an LLM: each speaker's first point of all the parts."""
    assert system == SPEAKER_REDUCE_PROMPT
    points = dict(reversed(re.findall(r"^- ([^:\n]+): (.*)$", user, re.M)))
    return json.dumps(
        {
            "abstract": "whole",
            "bullets": [f"{user.count('Part ')} parts"],
            "speaker_points": [{"speaker": s, "point": p} for s, p in reversed(points.items())],
        }
    )


def test_long_speaker_summaries_are_map_reduced_with_their_speaker_points():
    chat = RuleChat(
        lambda system, user: (combine_points if system == SPEAKER_REDUCE_PROMPT else points_by_first_word)(
            system, user
        )
    )
    result = PostProcessor(LlmSettings(max_input_tokens=70, chunk_overlap_words=4), chat).run(
        LONG_TURNS_TEXT, punctuate=False, summarize=True, speakers=LONG_TURNS
    )
    assert len(chat.calls) == 2 and len(chat.calls[0]) > 2, "map over the chunks, then one reduce"
    reduce_input = chat.calls[1][0][1]["content"]
    assert reduce_input.count("Speaker points:") == len(chat.calls[0])
    assert "Part 1: part from w1\n- w" in reduce_input and "\nSpeaker points:\n- A: said w1\n" in reduce_input
    summary = result.summary.summary
    assert summary.bullets == [f"{len(chat.calls[0])} parts"]
    assert summary.speaker_points == [
        SpeakerPoint(speaker="A", point="said w1"),
        SpeakerPoint(speaker="B", point="said w4"),
        SpeakerPoint(speaker="Alice", point="said w11"),
    ]


def test_a_combined_summary_naming_an_unknown_speaker_is_refused():
    def reduce_to_carol(system, user):
        if system == SPEAKER_REDUCE_PROMPT:
            return combine_points(system, user).replace('"speaker": "Alice"', '"speaker": "Carol"')
        return points_by_first_word(system, user)

    chat = RuleChat(reduce_to_carol)
    result = PostProcessor(LlmSettings(max_input_tokens=70, chunk_overlap_words=4), chat).run(
        LONG_TURNS_TEXT, punctuate=False, summarize=True, speakers=LONG_TURNS
    )
    assert len(chat.calls) == 2
    assert result.summary.summary is None and result.summary.fallback == "unusable_answer"
    assert "combined summary was not usable" in result.summary.reason
    assert "'Carol', not a speaker" in result.summary.reason


class Recording:
    """A backend that notes the conversations it is given, and passes them on."""

    def __init__(self, backend):
        self.backend = backend
        self.conversations = []

    def chat(self, conversations, max_new_tokens):
        self.conversations += conversations
        return self.backend.chat(conversations, max_new_tokens)

    def count_tokens(self, text):
        return self.backend.count_tokens(text)


def test_the_real_tiny_llm_output_with_speakers_is_checked_not_trusted():
    settings = LlmSettings(model="tiny-random", max_summary_tokens=32)
    backend = Recording(TransformersChat(settings))
    speakers = [
        SpeakerText(speaker="A", text="and so my fellow americans"),
        SpeakerText(speaker="B", text="ask not"),
    ]
    result = PostProcessor(settings, backend).run(
        "and so my fellow americans ask not", punctuate=True, summarize=True, speakers=speakers
    )
    assert [c[0]["content"] for c in backend.conversations] == [
        PUNCTUATE_TURNS_PROMPT,
        SPEAKER_SUMMARY_PROMPT,
    ]
    assert backend.conversations[0][1]["content"] == "A: and so my fellow americans\nB: ask not"
    punctuation = result.punctuation
    assert punctuation.applied is False and punctuation.turns is None and punctuation.text is None
    assert "changed the words or speaker labels" in punctuation.reason
    assert result.summary.summary is None and result.summary.reason
    assert (punctuation.fallback, result.summary.fallback) == ("words_changed", "unusable_answer")
    assert result.tokens_in > 0 and result.tokens_out > 0
