"""Translation by the LLM stage: batching, the answer read back by number, and the graph's branch.

The LLM here is a scripted chat backend (its rule is the test's), or the real tiny random LLM,
whose words are meaningless: these tests check structure (count, order, ids, times, batches,
context, marks with reasons, streaming before the document), never a word of a translation.
The graph's branch runs over the fake stage handles of ``test_orchestration`` (no Ray).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

import pytest
import srt
import webvtt
from conftest import SHARED_AUDIO, tiny_settings
from ray.serve.exceptions import DeploymentUnavailableError
from test_orchestration import FakeAsr, FakeMethod, FakePreprocess, make_graph, part, request

from deployments.audio_plan import Upload
from deployments.graph import TranscriptionGraph
from pipeline.errors import InvalidParameter
from pipeline.formats import render
from pipeline.llm import ChatOutput
from pipeline.llm_results import TranslatedSegment, TranslationBatch, TranslationSource
from pipeline.schemas import Segment, TranscriptionResult, WindowTranscript
from pipeline.settings import LlmSettings
from pipeline.translation import Translator, numbered_lines, target_language, translated_segments

_LINE = re.compile(r"^\[(\d+)\] (.*)$")


class LineChat:
    """Answers each numbered line of a batch with ``rule(number, text)`` (None: leave it out)."""

    def __init__(self, rule: Callable[[int, str], str | None] = lambda n, text: f"«{text.upper()}»"):
        self.rule = rule
        self.calls: list[list[str]] = []  # the user messages of each chat call

    def chat(self, conversations, max_new_tokens):
        users = [c[-1]["content"] for c in conversations]
        self.calls.append(users)
        outputs = []
        for user in users:
            lines = []
            for match in filter(None, (_LINE.match(line) for line in user.splitlines())):
                answer = self.rule(int(match.group(1)), match.group(2))
                if answer is not None:
                    lines.append(f"[{match.group(1)}] {answer}")
            answer = "\n".join(lines)
            outputs.append(ChatOutput(answer, len(user.split()), len(answer.split())))
        return outputs

    def count_tokens(self, text: str) -> int:
        return len(text.split())


def sources(*texts: str) -> list[TranslationSource]:
    return [TranslationSource(id=i, text=f" {t}") for i, t in enumerate(texts)]


def test_translate_to_takes_codes_and_names_and_refuses_the_rest():
    assert target_language("de") == "de"
    assert target_language(" German ") == "de"
    assert target_language("JA") == "ja"
    assert target_language("") is None
    with pytest.raises(InvalidParameter) as err:
        target_language("klingon")
    assert err.value.param == "translate_to" and "klingon" in str(err.value)


def test_every_segment_is_translated_in_order_with_its_id():
    chat = LineChat()
    answer = Translator(LlmSettings(), chat).translate(sources("one two", "three", "four five six"), "de")
    assert [s.id for s in answer.segments] == [0, 1, 2]
    assert [s.text for s in answer.segments] == ["«ONE TWO»", "«THREE»", "«FOUR FIVE SIX»"]
    assert all(s.translated and s.reason is None for s in answer.segments)
    assert len(chat.calls) == 1 and len(chat.calls[0]) == 1, "one batch, one call"
    assert answer.tokens_in > 0 and answer.tokens_out > 0


def test_the_system_prompt_names_the_language_in_english():
    seen = []

    class Recording(LineChat):
        def chat(self, conversations, max_new_tokens):
            seen.extend(c[0]["content"] for c in conversations)
            return super().chat(conversations, max_new_tokens)

    Translator(LlmSettings(), Recording()).translate(sources("hello"), "ja")
    assert "into Japanese" in seen[0]


@pytest.mark.parametrize(
    ("max_input_tokens", "batch_segments", "sizes"),
    [(40, 4, [4, 4, 4]), (25, 4, [3, 2, 2, 2, 2, 1]), (25, 2, [2] * 6)],
    ids=["by-count", "by-tokens-context-included", "by-count-under-tokens"],
)
def test_batches_fit_the_context_carry_earlier_segments_and_go_in_one_call(
    max_input_tokens, batch_segments, sizes
):
    settings = LlmSettings(
        max_input_tokens=max_input_tokens,
        translation_batch_segments=batch_segments,
        translation_context_segments=2,
    )
    chat = LineChat()
    texts = [f"segment {i} has five words" for i in range(12)]
    translator = Translator(settings, chat)
    answer = translator.translate(
        sources(*texts), "fr", context=["earlier one", "earlier two", "earlier three"]
    )
    assert len(chat.calls) == 1, "every batch in one batched chat call"
    batches = chat.calls[0]
    assert [sum(bool(_LINE.match(line)) for line in b.splitlines()) for b in batches] == sizes
    numbered_so_far = 0
    for i, text in enumerate(batches):
        lines = text.splitlines()
        numbered = [line for line in lines if _LINE.match(line)]
        context = [line for line in lines if line.startswith("Context: ")]
        assert chat.count_tokens(text) <= max_input_tokens
        before = ["earlier two", "earlier three"] if i == 0 else texts[:numbered_so_far][-2:]
        assert [c.removeprefix("Context: ") for c in context] == before
        numbered_so_far += len(numbered)
    assert numbered_so_far == 12
    assert [s.text for s in answer.segments] == [f"«{t.upper()}»" for t in texts]


def test_a_missing_or_empty_line_keeps_the_source_text_marked_with_the_reason():
    def rule(n: int, text: str) -> str | None:
        return None if n == 2 else "" if n == 3 else f"ok {n}"

    answer = Translator(LlmSettings(), LineChat(rule)).translate(sources("a", "b", "c", "d", ""), "es")
    by_id = {s.id: s for s in answer.segments}
    assert [s.id for s in answer.segments] == [0, 1, 2, 3, 4], "none dropped"
    assert by_id[0].translated and by_id[0].text == "ok 1"
    assert not by_id[1].translated and by_id[1].text == " b" and by_id[1].fallback == "no_line"
    assert "no line [2]" in by_id[1].reason
    assert not by_id[2].translated and by_id[2].fallback == "empty_line" and "empty" in by_id[2].reason
    assert by_id[3].translated and by_id[3].text == "ok 4"
    assert not by_id[4].translated and by_id[4].fallback == "no_text"


def test_numbered_lines_are_read_by_number_not_by_position():
    answer = "Here you go:\n[2] second\n1. first, wrapped\nonto two lines\n[2] again\n3) third\n"
    assert numbered_lines(answer) == {2: "second", 1: "first, wrapped onto two lines", 3: "third"}


def test_the_tiny_llm_translation_keeps_segments_and_renders_as_subtitles():
    from pipeline.runner import InProcessPipeline

    result = InProcessPipeline(tiny_settings()).transcribe(
        SHARED_AUDIO / "jfk.wav", language="en", punctuate=False, summarize=False, translate_to="French"
    )
    translation = result.translation
    assert translation is not None and translation.language == "fr" and result.segments
    assert [(t.id, t.start, t.end) for t in translation.segments] == [
        (s.id, s.start, s.end) for s in result.segments
    ]
    for t in translation.segments:  # random weights: whatever came back is checked, not trusted
        assert t.translated or (t.reason and t.fallback)
    assert translation.untranslated == sum(not t.translated for t in translation.segments)
    assert result.timings.translation_s > 0
    cues = list(srt.parse(render(result, "srt")))
    assert [(c.start.total_seconds(), c.end.total_seconds()) for c in cues] == [
        (pytest.approx(s.start, abs=1e-3), pytest.approx(s.end, abs=1e-3)) for s in result.segments
    ]
    assert [c.content for c in cues] == [t.text.strip() for t in translation.segments]
    captions = webvtt.from_string(render(result, "vtt"))
    assert [c.text for c in captions] == [t.text.strip() for t in translation.segments]


# --- the graph's translation branch, over fake stages --------------------------------------


def translating(graph_stages: dict, delay: float = 0.0, fail: Exception | None = None) -> FakeMethod:
    """A ``translate`` method on the fake LLM stage: each text upper-cased, after ``delay``."""
    in_flight = {"now": 0, "most": 0}

    async def translate(segments: list[TranslationSource], language: str, context: list[str]):
        in_flight["now"] += 1
        in_flight["most"] = max(in_flight["most"], in_flight["now"])
        try:
            await asyncio.sleep(delay)
            if fail is not None:
                raise fail
            return TranslationBatch(
                segments=[
                    {"id": s.id, "text": f"{language}:{s.text.strip()}", "translated": True} for s in segments
                ]
            )
        finally:
            in_flight["now"] -= 1

    method = FakeMethod(translate)
    method.in_flight = in_flight  # type: ignore[attr-defined]
    graph_stages["postprocess"].translate = method
    return method


async def translated_events(graph: TranscriptionGraph, language: str = "de") -> list:
    audio = await graph.plan(Upload(chunks=[], size=1))
    req = request(punctuate=False)
    req = type(req)(**{**req.__dict__, "translate_to": language})
    return [event async for event in graph.run(audio, req)]


def test_translated_segments_stream_as_windows_end_before_the_document():
    graph, stages = make_graph(asr=FakeAsr(delays={0: 0.0, 1: 0.05, 2: 0.4}))
    translate = translating(stages, delay=0.02)
    events = asyncio.run(translated_events(graph))
    document = events[-1]
    assert isinstance(document, TranscriptionResult) and document.translation is not None
    streamed = [e for e in events if isinstance(e, TranslatedSegment)]
    assert [t.id for t in streamed] == [s.id for s in document.segments] == [0, 1, 2]
    assert [(t.start, t.end) for t in streamed] == [(s.start, s.end) for s in document.segments]
    assert [t.text for t in streamed] == [f"de:{s.text.strip()}" for s in document.segments]
    assert document.translation.segments == streamed and document.translation.untranslated == 0
    last_window = max(i for i, e in enumerate(events) if isinstance(e, WindowTranscript))
    first_translation = events.index(streamed[0])
    assert first_translation < last_window, "window 0's translation came while window 2 was still running"
    assert translate.in_flight["most"] == 1, "one translation call in flight per request"
    sent = [s.id for call in translate.calls for s in call[0]]
    assert sent == [0, 1, 2], "each segment sent once, in order"
    assert document.timings.translation_calls == len(translate.calls) >= 2
    texts = [s.text.strip() for s in document.segments]
    for segments, language, context in translate.calls:
        assert language == "de" and context == texts[: segments[0].id][-3:], "the segments before as context"


def test_segments_final_during_a_call_go_together_in_the_next():
    graph, stages = make_graph(
        preprocess=FakePreprocess([[part(4)]]), asr=FakeAsr(delays={0: 0.0, 1: 0.05, 2: 0.06, 3: 0.07})
    )
    translate = translating(stages, delay=0.3)
    asyncio.run(translated_events(graph))
    assert [[s.id for s in call[0]] for call in translate.calls] == [[0], [1, 2, 3]]


def test_an_unavailable_llm_keeps_the_source_text_marked_and_the_document_goes_out():
    graph, stages = make_graph()
    translating(stages, fail=DeploymentUnavailableError("postprocess"))
    document = asyncio.run(translated_events(graph))[-1]
    assert [s.text for s in document.segments]
    assert document.translation.untranslated == len(document.segments) == 3
    for t, s in zip(document.translation.segments, document.segments, strict=True):
        assert t.text == s.text.strip() and t.fallback == "llm_unavailable" and "unavailable" in t.reason


def test_translated_segments_take_their_source_segments_speakers():
    segments = [Segment(id=i, start=i, end=i + 1, text=f" s{i}", speaker="AB"[i % 2]) for i in range(3)]
    answers = Translator(LlmSettings(), LineChat()).translate(
        [TranslationSource(id=s.id, text=s.text) for s in segments], "it"
    )
    translated = translated_segments(segments, answers.segments)
    assert [t.speaker for t in translated] == ["A", "B", "A"]
    assert [t.text for t in translated] == ["«S0»", "«S1»", "«S2»"]
