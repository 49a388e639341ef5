"""Punctuation, casing and a summary from an LLM, checked so the LLM cannot change what was said.

The LLM may only add punctuation and casing. Its output is accepted only when its word sequence
equals the input's (compared without case and punctuation); otherwise the raw transcript is kept
and the result says why. A summary must be JSON of the shape ``{"abstract": str, "bullets":
[str, ...]}``; anything else is reported as missing with the reason, never patched up.
"""

from __future__ import annotations

import json
import logging
import re

from pydantic import ValidationError

from pipeline.llm import ChatBackend, ChatOutput
from pipeline.schemas import PostprocessResult, PunctuationResult, Summary, SummaryResult
from pipeline.settings import LlmSettings

log = logging.getLogger(__name__)

PUNCTUATE_PROMPT = (
    "You restore punctuation and capitalization in speech transcripts. Return the transcript "
    "with punctuation and capital letters added. Do not add, remove, reorder or change any word. "
    "Answer with the corrected transcript only."
)
SUMMARY_PROMPT = (
    "You summarize speech transcripts. Answer with one JSON object and nothing else, of the form "
    '{"abstract": "<two or three sentences>", "bullets": ["<main point>", "..."]}.'
)

_WORD = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)*")


def normalized_words(text: str) -> list[str]:
    """Words of ``text`` without case or punctuation (apostrophes dropped, hyphens split)."""
    return [w.lower().replace("'", "").replace("\u2019", "") for w in _WORD.findall(text)]


def word_difference(original: str, candidate: str) -> str | None:
    """``None`` when both have the same words; else a description of the first difference."""
    a, b = normalized_words(original), normalized_words(candidate)
    if a == b:
        return None
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return f"word {i + 1} changed from {x!r} to {y!r}"
    if len(b) < len(a):
        return f"{len(a) - len(b)} word(s) dropped at the end (after word {len(b)})"
    return f"{len(b) - len(a)} word(s) added at the end (after word {len(a)})"


class SummaryFormatError(ValueError):
    """The LLM's answer is not a summary of the expected shape."""


def parse_summary(raw: str) -> Summary:
    """Parse the LLM's answer as a :class:`Summary`; raise :class:`SummaryFormatError` if it isn't."""
    text = raw.strip()
    fenced = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", text, re.S)
    if fenced:
        text = fenced.group(1)
    if not text.startswith("{") and "{" in text and "}" in text:
        text = text[text.index("{"): text.rindex("}") + 1]
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SummaryFormatError(f"the LLM's answer is not valid JSON ({exc.msg} at char {exc.pos})") from None
    try:
        return Summary.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'answer'}: {e['msg']}" for e in exc.errors())
        raise SummaryFormatError(
            f'the LLM\'s JSON is not of the shape {{"abstract": str, "bullets": [str]}} ({problems})') from None


def not_requested() -> PostprocessResult:
    """The result when the caller asked for neither punctuation nor a summary."""
    return PostprocessResult(punctuation=PunctuationResult(applied=False, reason="not requested"),
                             summary=SummaryResult(reason="not requested"))


class PostProcessor:
    """Runs punctuation and summary over a transcript with a chat backend."""

    def __init__(self, settings: LlmSettings, backend: ChatBackend):
        self.settings = settings
        self.backend = backend

    def run(self, text: str, *, punctuate: bool, summarize: bool) -> PostprocessResult:
        if not (punctuate or summarize):
            return not_requested()
        used: list[ChatOutput] = []
        problem = self._input_problem(text)
        if not punctuate:
            punctuation = PunctuationResult(applied=False, reason="not requested")
        elif problem:
            punctuation = PunctuationResult(applied=False, reason=problem)
        else:
            punctuation = self._punctuate(text, used)
        if not summarize:
            summary = SummaryResult(reason="not requested")
        elif problem:
            summary = SummaryResult(reason=problem)
        else:
            summary = self._summarize(text, used)
        return PostprocessResult(punctuation=punctuation, summary=summary,
                                 tokens_in=sum(o.tokens_in for o in used),
                                 tokens_out=sum(o.tokens_out for o in used))

    def _input_problem(self, text: str) -> str | None:
        if not normalized_words(text):
            return "the transcript has no words"
        n = self.backend.count_tokens(text)
        if n > self.settings.max_input_tokens:
            return (f"the transcript is {n} LLM tokens, over llm.max_input_tokens="
                    f"{self.settings.max_input_tokens}")
        return None

    def _punctuate(self, text: str, used: list[ChatOutput]) -> PunctuationResult:
        budget = int(self.backend.count_tokens(text) * 1.5) + 16
        out = self.backend.chat([[{"role": "system", "content": PUNCTUATE_PROMPT},
                                  {"role": "user", "content": text}]], max_new_tokens=budget)[0]
        used.append(out)
        candidate = out.text.strip()
        difference = word_difference(text, candidate)
        if difference:
            log.info("punctuation rejected: %s", difference)
            return PunctuationResult(applied=False,
                                     reason=f"the LLM changed the words ({difference}); kept the raw text")
        return PunctuationResult(applied=True, text=candidate)

    def _summarize(self, text: str, used: list[ChatOutput]) -> SummaryResult:
        out = self.backend.chat([[{"role": "system", "content": SUMMARY_PROMPT},
                                  {"role": "user", "content": text}]],
                                max_new_tokens=self.settings.max_summary_tokens)[0]
        used.append(out)
        try:
            return SummaryResult(summary=parse_summary(out.text))
        except SummaryFormatError as exc:
            log.info("summary rejected: %s", exc)
            return SummaryResult(reason=str(exc))
