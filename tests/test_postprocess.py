"""LLM post-processing: the word-preservation check and the summary parser."""

from __future__ import annotations

import itertools
import json

import pytest

from pipeline.llm import ChatOutput, Conversation, TransformersChat
from pipeline.postprocess import (
    REDUCE_PROMPT,
    PostProcessor,
    SummaryFormatError,
    normalized_words,
    parse_summary,
    word_difference,
)
from pipeline.settings import LlmSettings


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
