"""Transcript segments translated into any language by the LLM, each keeping its timing.

Whisper translates only into English. A chat LLM translates into the language a user reads, and
translating segment by segment (not the text as a whole) keeps each segment's start and end, so
the translation renders as subtitles with the source's cues.

Segments go to the LLM as numbered lines (``[1] text``), in batches that fit
``llm.max_input_tokens`` and ``llm.translation_batch_segments``, all batches of a call in one
batched chat call. Each batch comes after a few source segments before it, marked as context and
not translated, so that a batch starting mid-conversation keeps its pronouns and terms. The answer
is read back by number: a segment whose line is missing or empty keeps its source text and is
marked with the reason, never dropped and never filled from another line.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipeline.errors import InvalidParameter
from pipeline.languages import CODES_BY_NAME, LANGUAGES, language_name
from pipeline.llm_results import (
    SegmentTranslation,
    TranslatedSegment,
    TranslationBatch,
    TranslationResult,
    TranslationSource,
)
from pipeline.schemas import Segment
from pipeline.settings import LlmSettings

if TYPE_CHECKING:  # the backend is passed in: this module runs no model itself
    from pipeline.llm import ChatBackend

log = logging.getLogger(__name__)

TRANSLATE_PROMPT = (
    "You translate speech transcripts into {language}. The user sends numbered segments, one per "
    "line, as '[n] text', sometimes after lines that start with 'Context:', which came just "
    "before and are only there to help you understand. Answer with one line per numbered segment, "
    "in the same order, as '[n] translation', and nothing else. Translate each segment into "
    "{language} on its own line: do not merge, split, skip or add segments, and do not translate "
    "the context lines."
)

#: Languages written without spaces between words: their segments join without one.
_UNSPACED = frozenset({"zh", "ja", "th", "lo", "my", "km", "yue", "bo"})

_NUMBERED = re.compile(r"^\s*\[?(\d+)\s*[\]).:]\s?(.*)$")


def target_language(value: str | None) -> str | None:
    """``translate_to`` as a language code: an ISO-639-1 code or English name of one of Whisper's
    languages (``de``, ``German``). Raises :class:`InvalidParameter` naming it for anything else."""
    if value is None or not value.strip():
        return None
    key = value.strip().lower()
    code = key if key in LANGUAGES else CODES_BY_NAME.get(key)
    if code is None:
        raise InvalidParameter(
            f"Unknown language {value[:100]!r} for translate_to. Give an ISO-639-1 code (e.g. 'de', "
            "'ja') or an English language name (e.g. 'German').",
            "translate_to",
            "unknown_language",
        )
    return code


def segment_joiner(language: str) -> str:
    """What stands between two segments' text in ``language``: a space, or nothing for a language
    written without spaces between words."""
    return "" if language in _UNSPACED else " "


def translation_text(segments: Sequence[TranslatedSegment], language: str) -> str:
    """The translated segments' text joined."""
    return segment_joiner(language).join(s.text.strip() for s in segments if s.text.strip())


def translation_result(segments: list[TranslatedSegment], language: str) -> TranslationResult:
    return TranslationResult(
        language=language,
        text=translation_text(segments, language),
        segments=segments,
        untranslated=sum(not s.translated for s in segments),
    )


def sources(segments: Sequence[Segment]) -> list[TranslationSource]:
    return [TranslationSource(id=s.id, text=s.text) for s in segments]


def translated_segments(
    segments: Sequence[Segment], answers: Sequence[SegmentTranslation]
) -> list[TranslatedSegment]:
    """Each segment's translation with the segment's times and speaker."""
    return [
        TranslatedSegment(
            id=s.id,
            start=s.start,
            end=s.end,
            speaker=s.speaker,
            text=a.text if a.translated else s.text.strip(),
            translated=a.translated,
            reason=a.reason,
            fallback=a.fallback,
        )
        for s, a in zip(segments, answers, strict=True)
    ]


def untranslated_segments(segments: Sequence[Segment], reason: str) -> list[TranslatedSegment]:
    """The segments in their source text, marked: the LLM stage could not be reached."""
    return translated_segments(
        segments,
        [
            SegmentTranslation(
                id=s.id, text=s.text, translated=False, reason=reason, fallback="llm_unavailable"
            )
            for s in segments
        ],
    )


def numbered_lines(answer: str) -> dict[int, str]:
    """The answer's lines by their number. A line without a number continues the line before it
    (a translation the LLM wrapped); text before the first number is not a segment's. A number
    given twice keeps its first line."""
    lines: dict[int, list[str]] = {}
    current: int | None = None
    for raw in answer.splitlines():
        match = _NUMBERED.match(raw)
        if match:
            number = int(match.group(1))
            current = number if number not in lines else None
            if current is not None:
                lines[current] = [match.group(2).strip()]
        elif current is not None and raw.strip():
            lines[current].append(raw.strip())
    return {n: " ".join(parts).strip() for n, parts in lines.items()}


@dataclass(frozen=True)
class _Batch:
    segments: tuple[TranslationSource, ...]
    context: tuple[str, ...]

    @property
    def text(self) -> str:
        context = [f"Context: {c}" for c in self.context]
        numbered = [f"[{i}] {s.text.strip()}" for i, s in enumerate(self.segments, start=1)]
        return "\n".join([*context, *numbered])


class Translator:
    """Translates segments with a chat backend, in batches that fit its context."""

    def __init__(self, settings: LlmSettings, backend: ChatBackend):
        self.settings = settings
        self.backend = backend

    def translate(
        self, segments: Sequence[TranslationSource], language: str, context: Sequence[str] = ()
    ) -> TranslationBatch:
        """A translation of each of ``segments`` into ``language`` (a code), in their order.
        ``context``: the source text of the segments just before them, for the first batch."""
        answers: dict[int, SegmentTranslation] = {
            s.id: SegmentTranslation(
                id=s.id, text=s.text, translated=False, reason="the segment has no text", fallback="no_text"
            )
            for s in segments
            if not s.text.strip()
        }
        batches = self.batches([s for s in segments if s.text.strip()], context)
        tokens_in = tokens_out = 0
        if batches:
            system = TRANSLATE_PROMPT.format(language=language_name(language).title())
            texts = [b.text for b in batches]
            ratio = self.settings.translation_token_ratio
            budget = (
                max(
                    int(self.backend.count_tokens(t) * ratio) + 4 * len(b.segments)
                    for t, b in zip(texts, batches, strict=True)
                )
                + 16
            )
            outputs = self.backend.chat(
                [[{"role": "system", "content": system}, {"role": "user", "content": t}] for t in texts],
                max_new_tokens=budget,
            )
            for batch, output in zip(batches, outputs, strict=True):
                answers.update({a.id: a for a in _read_answer(batch, output.text)})
                tokens_in += output.tokens_in
                tokens_out += output.tokens_out
        return TranslationBatch(
            segments=[answers[s.id] for s in segments], tokens_in=tokens_in, tokens_out=tokens_out
        )

    def batches(self, segments: Sequence[TranslationSource], context: Sequence[str] = ()) -> list[_Batch]:
        """Consecutive segments in batches of at most ``translation_batch_segments`` whose text,
        context lines included, fits ``max_input_tokens`` (a segment too long for that goes alone)."""
        keep = self.settings.translation_context_segments
        before = [c for c in context if c.strip()][-keep:] if keep else []
        batches: list[_Batch] = []
        current: list[TranslationSource] = []
        for segment in segments:
            candidate = _Batch(tuple([*current, segment]), tuple(before))
            if current and (
                len(candidate.segments) > self.settings.translation_batch_segments
                or self.backend.count_tokens(candidate.text) > self.settings.max_input_tokens
            ):
                batches.append(_Batch(tuple(current), tuple(before)))
                before = [s.text.strip() for s in current][-keep:] if keep else []
                current = []
            current.append(segment)
        if current:
            batches.append(_Batch(tuple(current), tuple(before)))
        return batches


def _read_answer(batch: _Batch, answer: str) -> list[SegmentTranslation]:
    lines = numbered_lines(answer)
    results = []
    for number, segment in enumerate(batch.segments, start=1):
        line = lines.get(number)
        if line:
            results.append(SegmentTranslation(id=segment.id, text=line, translated=True))
            continue
        reason = (
            f"the LLM's answer has no line [{number}] for this segment"
            if line is None
            else f"the LLM's line [{number}] for this segment is empty"
        )
        log.info("segment %d not translated: %s", segment.id, reason)
        results.append(
            SegmentTranslation(
                id=segment.id,
                text=segment.text,
                translated=False,
                reason=f"{reason}; the source text is kept",
                fallback="no_line" if line is None else "empty_line",
            )
        )
    return results
