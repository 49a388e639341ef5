"""Punctuation, casing and a summary from an LLM, checked so the LLM cannot change what was said.

The LLM may only add punctuation and casing. Its output is accepted only when its word sequence
equals the input's (compared without case and punctuation); otherwise the raw transcript is kept
and the result says why. A summary must be JSON of the shape ``{"abstract": str, "bullets":
[str, ...]}``; anything else is reported as missing with the reason, never patched up.

Long transcripts (hours of speech) do not fit one LLM call. They are cut into chunks of at most
``llm.max_input_tokens``, all sent in one batched call: each chunk is punctuated with the last
words of the chunk before it as context (checked with it, then dropped), and the word check holds
per chunk, so a chunk the LLM garbled stays raw while the others are punctuated. The summary is
map-reduce: a summary per chunk, then one summary of those summaries.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import ValidationError

from pipeline.schemas import FallbackReason, PostprocessResult, PunctuationResult, Summary, SummaryResult
from pipeline.settings import LlmSettings

if TYPE_CHECKING:  # the backend is passed in: this module runs no model itself
    from pipeline.llm import ChatBackend, ChatOutput

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

REDUCE_PROMPT = (
    "You combine the summaries of consecutive parts of one speech transcript into one summary of "
    "the whole. Answer with one JSON object and nothing else, of the form "
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
    for i, (x, y) in enumerate(zip(a, b, strict=False)):  # the tails are compared after
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
        text = text[text.index("{") : text.rindex("}") + 1]
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SummaryFormatError(
            f"the LLM's answer is not valid JSON ({exc.msg} at char {exc.pos})"
        ) from None
    try:
        return Summary.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'answer'}: {e['msg']}" for e in exc.errors())
        raise SummaryFormatError(
            f'the LLM\'s JSON is not of the shape {{"abstract": str, "bullets": [str]}} ({problems})'
        ) from None


def _parse_summaries(answers: list[str]) -> tuple[list[Summary], list[str]]:
    """The answers that parse as summaries, and why the others do not."""
    parsed, problems = [], []
    for answer in answers:
        try:
            parsed.append(parse_summary(answer))
        except SummaryFormatError as exc:
            problems.append(str(exc))
    return parsed, problems


def drop_leading_words(text: str, count: int) -> str:
    """``text`` from its ``count``-th word on (words as :func:`normalized_words` counts them)."""
    if count <= 0:
        return text
    matches = list(_WORD.finditer(text))
    return text[matches[count].start() :] if len(matches) > count else ""


@dataclass(frozen=True)
class Chunk:
    """A piece of the transcript for one LLM call, and the words before it given as context."""

    body: str
    context: str = ""

    @property
    def text(self) -> str:
        return f"{self.context} {self.body}".strip()


def _conversation(system: str, user: str) -> list[dict]:
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


class PostProcessor:
    """Runs punctuation and summary over a transcript with a chat backend."""

    def __init__(self, settings: LlmSettings, backend: ChatBackend):
        self.settings = settings
        self.backend = backend

    def run(self, text: str, *, punctuate: bool, summarize: bool) -> PostprocessResult:
        if not (punctuate or summarize):
            return PostprocessResult.not_requested()
        used: list[ChatOutput] = []
        problem, code = self._input_problem(text)
        chunks = [] if problem else self.chunks(text)
        if not punctuate:
            punctuation = PunctuationResult(applied=False, reason="not requested")
        elif problem:
            punctuation = PunctuationResult(applied=False, reason=problem, fallback=code)
        else:
            punctuation = self._punctuate(chunks, used)
        if not summarize:
            summary = SummaryResult(reason="not requested")
        elif problem:
            summary = SummaryResult(reason=problem, fallback=code)
        else:
            summary = self._summarize(chunks, used)
        return PostprocessResult(
            punctuation=punctuation,
            summary=summary,
            tokens_in=sum(o.tokens_in for o in used),
            tokens_out=sum(o.tokens_out for o in used),
        )

    def _input_problem(self, text: str) -> tuple[str | None, FallbackReason | None]:
        if not normalized_words(text):
            return "the transcript has no words", "no_words"
        n = self.backend.count_tokens(text)
        if n > self.settings.max_transcript_tokens:
            return (
                f"the transcript is {n} LLM tokens, over llm.max_transcript_tokens="
                f"{self.settings.max_transcript_tokens}"
            ), "transcript_too_long"
        return None, None

    def chunks(self, text: str) -> list[Chunk]:
        """Cut ``text`` at spaces into chunks whose text (context included) fits one call."""
        limit = self.settings.max_input_tokens
        total = self.backend.count_tokens(text)
        if total <= limit:
            return [Chunk(text.strip())]
        words = text.split()
        overlap = self.settings.chunk_overlap_words
        size = max(1, int(limit * 0.9 * len(words) / total) - overlap)  # from the mean word size
        chunks: list[Chunk] = []
        start = 0
        while start < len(words):
            context = " ".join(words[max(0, start - overlap) : start])
            n = min(size, len(words) - start)
            while (
                n > 1 and self.backend.count_tokens(f"{context} {' '.join(words[start : start + n])}") > limit
            ):
                n = max(1, n * 3 // 4)
            chunks.append(Chunk(" ".join(words[start : start + n]), context))
            start += n
        return chunks

    def _chat(self, system: str, texts: list[str], max_new_tokens: int, used: list[ChatOutput]) -> list[str]:
        outs = self.backend.chat([_conversation(system, t) for t in texts], max_new_tokens=max_new_tokens)
        used.extend(outs)
        return [o.text.strip() for o in outs]

    def _punctuate(self, chunks: list[Chunk], used: list[ChatOutput]) -> PunctuationResult:
        budget = int(max(self.backend.count_tokens(c.text) for c in chunks) * 1.5) + 16
        answers = self._chat(PUNCTUATE_PROMPT, [c.text for c in chunks], budget, used)
        pieces, rejected = [], []
        for i, (chunk, answer) in enumerate(zip(chunks, answers, strict=True), start=1):
            difference = word_difference(chunk.text, answer)
            if difference:
                log.info("punctuation of chunk %d/%d rejected: %s", i, len(chunks), difference)
                rejected.append(f"chunk {i}: {difference}" if len(chunks) > 1 else difference)
                pieces.append(chunk.body)
            else:
                pieces.append(drop_leading_words(answer, len(normalized_words(chunk.context))))
        if len(rejected) == len(chunks):
            return PunctuationResult(
                applied=False,
                fallback="words_changed",
                reason=f"the LLM changed the words ({'; '.join(rejected[:3])}); kept the raw text",
            )
        text = " ".join(p for p in pieces if p)
        if rejected:
            return PunctuationResult(
                applied=True,
                text=text,
                fallback="some_chunks_changed",
                reason=f"the LLM changed the words in {len(rejected)} of {len(chunks)} "
                f"chunks ({'; '.join(rejected[:3])}); those chunks are raw",
            )
        return PunctuationResult(applied=True, text=text)

    def _summarize(self, chunks: list[Chunk], used: list[ChatOutput]) -> SummaryResult:
        answers = self._chat(SUMMARY_PROMPT, [c.body for c in chunks], self.settings.max_summary_tokens, used)
        parts, problems = _parse_summaries(answers)
        if len(chunks) == 1:
            if problems:
                log.info("summary rejected: %s", problems[0])
                return SummaryResult(reason=problems[0], fallback="unusable_answer")
            return SummaryResult(summary=parts[0])
        if not parts:
            return SummaryResult(
                reason=f"no chunk summary was usable ({problems[0]})", fallback="unusable_answer"
            )
        return self._reduce(parts, used)

    def _reduce(self, parts: list[Summary], used: list[ChatOutput]) -> SummaryResult:
        """One summary of the chunk summaries; in rounds when they do not fit one call."""
        while True:
            texts = [
                f"Part {i}: {p.abstract}\n" + "\n".join(f"- {b}" for b in p.bullets)
                for i, p in enumerate(parts, start=1)
            ]
            groups = self._groups(texts)
            answers = self._chat(
                REDUCE_PROMPT, ["\n\n".join(g) for g in groups], self.settings.max_summary_tokens, used
            )
            reduced, problems = _parse_summaries(answers)
            if len(groups) == 1:
                return (
                    SummaryResult(summary=reduced[0])
                    if reduced
                    else SummaryResult(
                        reason=f"the combined summary was not usable ({problems[0]})",
                        fallback="unusable_answer",
                    )
                )
            if not reduced or len(reduced) >= len(parts):
                return SummaryResult(
                    reason=f"the chunk summaries could not be combined "
                    f"({problems[0] if problems else 'they do not shrink'})",
                    fallback="not_combined",
                )
            parts = reduced

    def _groups(self, texts: list[str]) -> list[list[str]]:
        """Consecutive texts grouped so each group fits one call (a text too long stays alone)."""
        groups: list[list[str]] = [[]]
        for text in texts:
            if (
                groups[-1]
                and self.backend.count_tokens("\n\n".join([*groups[-1], text]))
                > self.settings.max_input_tokens
            ):
                groups.append([])
            groups[-1].append(text)
        return groups
