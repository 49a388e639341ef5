"""LLM post-processing: the word-preservation check and the summary parser."""

from __future__ import annotations

import pytest

from pipeline.llm import ChatOutput, TransformersChat
from pipeline.postprocess import (
    PostProcessor,
    SummaryFormatError,
    normalized_words,
    parse_summary,
    word_difference,
)
from pipeline.settings import LlmSettings


def test_normalized_words_ignore_case_and_punctuation():
    assert normalized_words("And so, my fellow Americans: ask not!") == \
        ["and", "so", "my", "fellow", "americans", "ask", "not"]
    assert normalized_words("don't well-known") == ["dont", "well", "known"]


@pytest.mark.parametrize("candidate,same", [
    ("And so, my fellow Americans, ask not.", True),
    ("and so my fellow americans ask not", True),
    ("And so, my dear fellow Americans, ask not.", False),
    ("And so my fellow Americans", False),
    ("And so my fellow Americans ask not now", False),
    ("And so my fellow citizens ask not", False),
])
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


@pytest.mark.parametrize("raw,why", [
    ("Here is a summary of the talk.", "not valid JSON"),
    ('{"abstract": "x"}', "bullets"),
    ('{"abstract": "x", "bullets": "one"}', "bullets"),
    ('{"abstract": "", "bullets": ["a"]}', "abstract"),
    ('{"abstract": "x", "bullets": ["a"], "extra": 1}', "extra"),
    ('["abstract", "bullets"]', "shape"),
])
def test_bad_summaries_are_refused_with_a_reason(raw, why):
    with pytest.raises(SummaryFormatError, match=why):
        parse_summary(raw)


class ScriptedChat:
    """A chat backend that answers from a script. The random tiny LLM cannot write correct
    punctuation or JSON, so the *accepting* paths are driven by this script; the rejecting paths
    run on the real tiny model below."""

    def __init__(self, *answers: str):
        self.answers = list(answers)
        self.calls = []

    def chat(self, conversations, max_new_tokens):
        self.calls.append((conversations, max_new_tokens))
        return [ChatOutput(self.answers.pop(0), 10, 5) for _ in conversations]

    def count_tokens(self, text):
        return len(text.split())

    def info(self):
        raise NotImplementedError


def test_accepts_punctuation_that_keeps_the_words_and_a_valid_summary():
    chat = ScriptedChat("And so, my fellow Americans: ask not.",
                        '{"abstract": "A call to service.", "bullets": ["Ask not."]}')
    result = PostProcessor(LlmSettings(), chat).run("and so my fellow americans ask not",
                                                    punctuate=True, summarize=True)
    assert result.punctuation.applied and result.punctuation.text.startswith("And so,")
    assert result.summary.summary.bullets == ["Ask not."]
    assert result.tokens_in == 20 and result.tokens_out == 10
    system_prompt = chat.calls[0][0][0][0]["content"]
    assert "Do not add, remove" in system_prompt


def test_rejects_changed_words_and_keeps_the_raw_text():
    chat = ScriptedChat("And so, my dear fellow Americans.")
    result = PostProcessor(LlmSettings(), chat).run("and so my fellow americans", punctuate=True,
                                                    summarize=False)
    assert not result.punctuation.applied and result.punctuation.text is None
    assert "word 4 changed from 'fellow' to 'dear'" in result.punctuation.reason
    assert result.summary.reason == "not requested"


def test_too_long_transcripts_are_not_sent():
    chat = ScriptedChat()
    result = PostProcessor(LlmSettings(max_input_tokens=16), chat).run("word " * 17, punctuate=True,
                                                                       summarize=True)
    assert chat.calls == []
    assert "max_input_tokens" in result.punctuation.reason and "max_input_tokens" in result.summary.reason


def test_the_real_tiny_llm_output_is_checked_not_trusted():
    settings = LlmSettings(model="tiny-random", max_summary_tokens=32)
    backend = TransformersChat(settings)
    assert backend.info().device == "cpu"
    result = PostProcessor(settings, backend).run("and so my fellow americans ask not",
                                                  punctuate=True, summarize=True)
    assert result.punctuation.applied is False and "changed the words" in result.punctuation.reason
    assert result.summary.summary is None and result.summary.reason
    assert result.tokens_in > 0 and result.tokens_out > 0
