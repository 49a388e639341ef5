"""OpenAI's audio API shapes: response bodies for each ``response_format``, stream events, models.

Kept apart from the HTTP handlers (as vLLM keeps its transcription protocol apart from serving)
and free of Ray, so the shapes are tested without a cluster. Field names and types follow the
official ``openai`` SDK's types (``Transcription``, ``TranscriptionVerbose``,
``TranscriptionTextDeltaEvent``, ...): the SDK parses every answer into those. Post-processing
results (``punctuation``, ``summary``) are extra keys, present only when a request asked for them,
so a plain OpenAI request gets a plain OpenAI answer. With ``translate_to`` (an extension) the
answer is in the language asked for: ``text``, the segments and the subtitles are the
translation's, on the source's times, and the extra key ``translation`` marks each segment that
kept its source text, with the reason.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict

from pipeline.formats import subtitle_segments, to_srt, to_vtt
from pipeline.languages import language_name
from pipeline.llm_results import PunctuationResult, SummaryResult, TranslationResult
from pipeline.schemas import Segment, TokenLogprob, TranscriptionResult, Word

ResponseFormat = Literal["json", "text", "srt", "verbose_json", "vtt", "diarized_json"]
Granularity = Literal["word", "segment"]

#: Media type of each text response format: OpenAI sends subtitles as plain text too.
MEDIA_TYPES: dict[str, str] = {
    "text": "text/plain; charset=utf-8",
    "srt": "text/plain; charset=utf-8",
    "vtt": "text/plain; charset=utf-8",
}


class _Body(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)


class DurationUsage(_Body):
    """Usage, billed by input duration as OpenAI reports it for Whisper."""

    type: Literal["duration"] = "duration"
    seconds: int
    """Input audio length in whole seconds, rounded up."""


class _Postprocessed(_Body):
    punctuation: PunctuationResult | None = None
    """Only when ``punctuate`` was asked for: whether ``text`` is the LLM's punctuated text."""
    summary: SummaryResult | None = None
    """Only when ``summarize`` was asked for: the summary, or why there is none."""
    translation: TranslationResult | None = None
    """Only with ``translate_to``: the translation segment by segment (``text`` and the segments
    of the answer are already translated), with each segment that kept its source text marked."""


class TranscriptionJson(_Postprocessed):
    """``response_format=json``."""

    text: str
    logprobs: list[TokenLogprob] | None = None
    """Only with ``include[]=logprobs``: each text token of ``text`` (Whisper's, before any
    punctuation) with its log-probability, in order."""
    usage: DurationUsage | None = None


class VerboseSegment(_Body):
    id: int
    seek: int
    start: float
    end: float
    text: str
    tokens: list[int]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float


class TranscriptionVerboseJson(_Postprocessed):
    """``response_format=verbose_json``."""

    task: Literal["transcribe", "translate"]
    language: str
    """The language's English name in lower case (``english``), as OpenAI writes it."""
    duration: float
    text: str
    segments: list[VerboseSegment] | None = None
    """Present unless only word timestamps were asked for."""
    words: list[Word] | None = None
    """Present when word timestamps were asked for."""
    usage: DurationUsage | None = None


class DiarizedSegment(_Body):
    """A segment with its speaker, in ``diarized_json``; also the stream event that carries it."""

    type: Literal["transcript.text.segment"] = "transcript.text.segment"
    id: str
    start: float
    end: float
    speaker: str
    """A letter (``A``, ``B``, ... in order of first appearance) or a known speaker's name."""
    text: str


class TranscriptionDiarized(_Postprocessed):
    """``response_format=diarized_json`` (a diarizing model)."""

    task: Literal["transcribe"] = "transcribe"
    duration: float
    text: str
    segments: list[DiarizedSegment]
    usage: DurationUsage


class TextDeltaEvent(_Body):
    """Stream event: the text of newly finished segments."""

    type: Literal["transcript.text.delta"] = "transcript.text.delta"
    delta: str


class TextDoneEvent(_Postprocessed):
    """Stream event, last: the whole text."""

    type: Literal["transcript.text.done"] = "transcript.text.done"
    text: str


class ModelCard(_Body):
    id: str
    object: Literal["model"] = "model"
    created: int
    """Unix time the service started."""
    owned_by: str = "speechgraph"


class ModelList(_Body):
    object: Literal["list"] = "list"
    data: list[ModelCard]


def output_text(result: TranscriptionResult) -> str:
    """The translation when one was asked for; else the punctuated text when punctuation was asked
    for and applied, else Whisper's text."""
    if result.translation is not None:
        return result.translation.text
    punctuated = result.punctuation.text
    return punctuated if result.punctuation.applied and punctuated is not None else result.text


def _postprocessed(result: TranscriptionResult, punctuate: bool, summarize: bool) -> dict:
    return {
        "punctuation": result.punctuation if punctuate else None,
        "summary": result.summary if summarize else None,
        "translation": result.translation,
    }


def _usage(result: TranscriptionResult) -> DurationUsage:
    return DurationUsage(seconds=math.ceil(result.duration_s))


def _dump(body: BaseModel) -> dict:
    return body.model_dump(mode="json", exclude_none=True)


def diarized_segments(result: TranscriptionResult) -> list[DiarizedSegment]:
    """The document's segments with their speakers (a segment in which no voice was found is put
    with the first speaker: OpenAI's shape has a speaker on every segment)."""
    return [
        DiarizedSegment(
            id=f"seg_{s.id}", start=s.start, end=s.end, speaker=s.speaker or "A", text=s.text.strip()
        )
        for s in subtitle_segments(result)
    ]


def verbose_segment(segment: Segment, text: str | None = None) -> VerboseSegment:
    """``segment`` in OpenAI's shape; with ``text``, its translation in place of its text."""
    body = segment.model_dump(exclude={"words", "window"})
    return VerboseSegment.model_validate(body if text is None else {**body, "text": text})


def verbose_segments(result: TranscriptionResult) -> list[VerboseSegment]:
    if result.translation is None:
        return [verbose_segment(s) for s in result.segments]
    translated = {t.id: t.text for t in result.translation.segments}
    return [verbose_segment(s, translated.get(s.id, s.text)) for s in result.segments]


def render_openai(
    result: TranscriptionResult,
    response_format: ResponseFormat,
    *,
    granularities: frozenset[str] = frozenset(),
    punctuate: bool = False,
    summarize: bool = False,
    logprobs: list[TokenLogprob] | None = None,
) -> dict | str:
    """The response body: a JSON-able dict for ``json``/``verbose_json``, else text (its media
    type in :data:`MEDIA_TYPES`). ``logprobs`` go into ``json`` when given."""
    if response_format == "text":
        return output_text(result) + "\n"
    if response_format == "srt":
        return to_srt(subtitle_segments(result))
    if response_format == "vtt":
        return to_vtt(subtitle_segments(result))
    extra = _postprocessed(result, punctuate, summarize)
    if response_format == "diarized_json":
        return _dump(
            TranscriptionDiarized(
                duration=result.duration_s,
                text=output_text(result),
                segments=diarized_segments(result),
                usage=_usage(result),
                **extra,
            )
        )
    if response_format == "json":
        return _dump(
            TranscriptionJson(text=output_text(result), logprobs=logprobs, usage=_usage(result), **extra)
        )
    with_segments = "segment" in granularities or not granularities
    body = TranscriptionVerboseJson(
        task=result.task,
        language=language_name(result.language),
        duration=result.duration_s,
        text=output_text(result),
        segments=verbose_segments(result) if with_segments else None,
        words=[w for s in result.segments for w in s.words] if "word" in granularities else None,
        usage=_usage(result),
        **extra,
    )
    return _dump(body)
