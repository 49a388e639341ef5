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

A diarized transcript comes with its speaker turns, sent as ``speaker: text`` lines (see
:mod:`pipeline.speaker_text`). Each line must come back with its label and words unchanged, so a
line the LLM garbled stays raw; the result keeps the turns. The summary also says who said or
proposed what (``speaker_points``), by the transcript's labels only.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import ValidationError

from pipeline import speaker_text as st
from pipeline.llm_results import (
    FallbackReason,
    PostprocessResult,
    PunctuationResult,
    SpeakerText,
    Summary,
    SummaryResult,
)
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


def parse_summary(raw: str, speakers: Collection[str] | None = None) -> Summary:
    """Parse the LLM's answer as a :class:`Summary`; raise :class:`SummaryFormatError` if it isn't.
    With ``speakers`` (the transcript's labels) it must have ``speaker_points`` naming only those;
    without, it must have none."""
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
        summary = Summary.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'answer'}: {e['msg']}" for e in exc.errors())
        points = ', "speaker_points": [{"speaker": str, "point": str}]' if speakers is not None else ""
        raise SummaryFormatError(
            f'the LLM\'s JSON is not of the shape {{"abstract": str, "bullets": [str]{points}}} ({problems})'
        ) from None
    problem = st.speaker_points_problem(summary.speaker_points, speakers)
    if problem:
        raise SummaryFormatError(problem)
    return summary


def _parse_summaries(answers: list[str], speakers: list[str] | None) -> tuple[list[Summary], list[str]]:
    """The answers that parse as summaries, and why the others do not."""
    parsed, problems = [], []
    for answer in answers:
        try:
            parsed.append(parse_summary(answer, speakers))
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

    def run(
        self, text: str, *, punctuate: bool, summarize: bool, speakers: Sequence[SpeakerText] | None = None
    ) -> PostprocessResult:
        """Punctuation and/or a summary of ``text``, the raw transcript. With ``speakers`` (its
        words as speaker turns, in order) the LLM is shown the turns, and the result keeps them."""
        if not (punctuate or summarize):
            return PostprocessResult.not_requested()
        # the turns stand for the text, so they must hold its words; compared without the breaks
        # between words, as a turn boundary inside unspaced script splits what the text has as one
        if speakers is not None and "".join(normalized_words(text)) != "".join(
            normalized_words(" ".join(t.text for t in speakers))
        ):
            raise ValueError("the speaker turns do not hold the words of the transcript text")
        used: list[ChatOutput] = []
        problem, code = self._input_problem(text, text if speakers is None else st.render_turns(speakers))
        not_asked = PostprocessResult.not_requested()
        punctuation, summary = not_asked.punctuation, not_asked.summary
        if problem:
            if punctuate:
                punctuation = PunctuationResult(applied=False, reason=problem, fallback=code)
            if summarize:
                summary = SummaryResult(reason=problem, fallback=code)
        elif speakers is None:
            chunks = self.chunks(text)
            if punctuate:
                punctuation = self._punctuate(chunks, used)
            if summarize:
                summary = self._summarize(chunks, used, None)
        else:
            turn_chunks = self.speaker_chunks(speakers)
            if punctuate:
                punctuation = self._punctuate_turns(turn_chunks, speakers, used)
            if summarize:
                summary = self._summarize(turn_chunks, used, list(dict.fromkeys(t.speaker for t in speakers)))
        return PostprocessResult(
            punctuation=punctuation,
            summary=summary,
            tokens_in=sum(o.tokens_in for o in used),
            tokens_out=sum(o.tokens_out for o in used),
        )

    def _input_problem(self, text: str, sent: str) -> tuple[str | None, FallbackReason | None]:
        """Why ``text`` is not sent to the LLM (as ``sent``, labels included), if it is not."""
        if not normalized_words(text):
            return "the transcript has no words", "no_words"
        n = self.backend.count_tokens(sent)
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

    def speaker_chunks(self, turns: Sequence[SpeakerText]) -> list[st.SpeakerChunk]:
        """The turns as lines, cut at turn boundaries into chunks that fit one call."""
        limit, overlap = self.settings.max_input_tokens, self.settings.chunk_overlap_words
        return st.speaker_chunks(st.turn_lines(turns), self.backend.count_tokens, limit, overlap)

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

    def _punctuate_turns(
        self, chunks: list[st.SpeakerChunk], turns: Sequence[SpeakerText], used: list[ChatOutput]
    ) -> PunctuationResult:
        """Like :meth:`_punctuate`, with the word check held per line (see :mod:`.speaker_text`)."""
        budget = int(max(self.backend.count_tokens(c.text) for c in chunks) * 1.5) + 16
        answers = self._chat(st.PUNCTUATE_TURNS_PROMPT, [c.text for c in chunks], budget, used)
        return st.punctuated_turns(turns, chunks, answers, word_difference)

    def _summarize(
        self, chunks: list[Chunk] | list[st.SpeakerChunk], used: list[ChatOutput], speakers: list[str] | None
    ) -> SummaryResult:
        """With ``speakers`` (the transcript's labels), a summary with speaker points by those."""
        prompt = SUMMARY_PROMPT if speakers is None else st.SPEAKER_SUMMARY_PROMPT
        answers = self._chat(prompt, [c.body for c in chunks], self.settings.max_summary_tokens, used)
        parts, problems = _parse_summaries(answers, speakers)
        if len(chunks) == 1:
            if problems:
                log.info("summary rejected: %s", problems[0])
                return SummaryResult(reason=problems[0], fallback="unusable_answer")
            return SummaryResult(summary=parts[0])
        if not parts:
            return SummaryResult(
                reason=f"no chunk summary was usable ({problems[0]})", fallback="unusable_answer"
            )
        return self._reduce(parts, used, speakers)

    def _reduce(
        self, parts: list[Summary], used: list[ChatOutput], speakers: list[str] | None
    ) -> SummaryResult:
        """One summary of the chunk summaries; in rounds when they do not fit one call."""
        prompt = REDUCE_PROMPT if speakers is None else st.SPEAKER_REDUCE_PROMPT
        while True:
            texts = [
                f"Part {i}: {p.abstract}\n"
                + "\n".join(f"- {b}" for b in p.bullets)
                + (f"\n{st.speaker_points_text(p.speaker_points)}" if p.speaker_points is not None else "")
                for i, p in enumerate(parts, start=1)
            ]
            groups = self._groups(texts)
            answers = self._chat(
                prompt, ["\n\n".join(g) for g in groups], self.settings.max_summary_tokens, used
            )
            reduced, problems = _parse_summaries(answers, speakers)
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
