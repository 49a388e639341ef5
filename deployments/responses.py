"""How the API answers: the graph's events as each route sends them, and server-sent events framed.

The graph yields one stream of events for every route (progress, windows in order, then the
document); this module turns it into the document route's events (``progress``, ``segment``,
``translation``, ``document``), OpenAI's stream (``transcript.text.delta`` per segment, or per
translated segment with ``translate_to``, then ``transcript.text.done``), or one answer in the
asked ``response_format``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Literal

from pydantic import BaseModel
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from deployments.graph_request import GraphEvent, collect_document
from deployments.http_errors import http_status, speechgraph_error_body, unwrapped
from deployments.openai_protocol import (
    MEDIA_TYPES,
    ResponseFormat,
    TextDeltaEvent,
    TextDoneEvent,
    diarized_segments,
    output_text,
    render_openai,
)
from deployments.protocol import WindowProgress, error_body
from pipeline.errors import SpeechgraphError
from pipeline.formats import render
from pipeline.llm_results import TranslatedSegment
from pipeline.schemas import TranscriptionResult, WindowTranscript
from pipeline.translation import segment_joiner

log = logging.getLogger("ray.serve")

NamedEvents = AsyncIterator[tuple[str, BaseModel]]

DocumentFormat = Literal["json", "text", "srt", "vtt"]
DOCUMENT_FORMAT = (
    "json (the document), text, srt or vtt (subtitles; the translation's, on the same times, "
    "with translate_to). Not with stream=true, which sends the document's events."
)


def event_stream(events: NamedEvents, *, openai: bool, request_id: str | None) -> StreamingResponse:
    """Server-sent events from ``(name, body)`` pairs. OpenAI's stream has no ``event:`` line (the
    type is in the body) and leaves out empty keys. An error after the stream started is sent as
    an ``error`` event, in the API's error shape: the status is 200 by then."""

    def frame(name: str, body: str) -> str:
        return ("" if openai else f"event: {name}\n") + f"data: {body}\n\n"

    async def frames() -> AsyncIterator[str]:
        try:
            async for name, body in events:
                yield frame(name, body.model_dump_json(exclude_none=openai))
        except SpeechgraphError as exc:
            err = unwrapped(exc)
            assert isinstance(err, SpeechgraphError)
            error = speechgraph_error_body(err, http_status(err, openai_route=openai))
            yield frame("error", json.dumps(error))
        except Exception as exc:
            log.exception("stream failed")
            message = (
                f"The transcription failed ({exc.__class__.__name__}) in request {request_id}. "
                "Retry the request."
            )
            error = error_body(message, code="internal_error", type="server_error")
            yield frame("error", json.dumps(error))

    return StreamingResponse(frames(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


async def document_events(events: AsyncGenerator[GraphEvent]) -> NamedEvents:
    """``progress`` as each window finishes, ``segment`` as soon as it and every segment before
    it are ready (with its id in the document), ``translation`` as soon as a segment's translation
    is (with ``translate_to``; the source segment's id, in order), then ``document``."""
    next_id = 0
    async with aclosing(events):
        async for event in events:
            if isinstance(event, WindowProgress):
                yield "progress", event
            elif isinstance(event, WindowTranscript):
                for segment in sorted(event.segments, key=lambda s: (s.start, s.end)):
                    yield "segment", segment.model_copy(update={"id": next_id})
                    next_id += 1
            elif isinstance(event, TranslatedSegment):
                yield "translation", event
            else:
                yield "document", event


async def openai_events(
    events: AsyncGenerator[GraphEvent],
    *,
    punctuate: bool,
    summarize: bool,
    diarized: bool = False,
    translated_to: str | None = None,
) -> NamedEvents:
    """A ``transcript.text.delta`` per finished segment, in order, then ``transcript.text.done``.
    Segments finish a window at a time (one batched decode), and windows come in order. When
    ``translated_to`` (a language code), the deltas are the translated segments', each as soon as
    it is translated.
    When ``diarized``, each ``transcript.text.segment`` (with its speaker) comes before the done
    event: speakers are known once the whole file is heard."""
    sent = False
    async with aclosing(events):
        async for event in events:
            if isinstance(event, WindowTranscript | TranslatedSegment):
                if isinstance(event, TranslatedSegment) != (translated_to is not None):
                    continue
                pieces = (
                    [segment_joiner(translated_to or "") + event.text.strip()]
                    if isinstance(event, TranslatedSegment)
                    else [s.text for s in sorted(event.segments, key=lambda s: (s.start, s.end))]
                )
                for piece in pieces:
                    text = piece if sent else piece.lstrip()  # as the document's text
                    if text.strip():
                        sent = True
                        yield "delta", TextDeltaEvent(delta=text)
            elif isinstance(event, TranscriptionResult):
                for spoken in diarized_segments(event) if diarized else []:
                    yield "segment", spoken
                yield (
                    "done",
                    TextDoneEvent(
                        text=output_text(event),
                        punctuation=event.punctuation if punctuate else None,
                        summary=event.summary if summarize else None,
                        translation=event.translation,
                    ),
                )


async def openai_answer(
    events: AsyncGenerator[GraphEvent],
    response_format: ResponseFormat,
    *,
    granularities: frozenset[str],
    punctuate: bool,
    summarize: bool,
    logprobs: bool,
) -> Response:
    """The whole transcript in ``response_format``: JSON, or text in its media type."""
    result, windows = await collect_document(events)
    tokens = [t for w in windows for t in (w.logprobs or [])] if logprobs else None
    body = render_openai(
        result,
        response_format,
        granularities=granularities,
        punctuate=punctuate,
        summarize=summarize,
        logprobs=tokens,
    )
    if isinstance(body, dict):
        return JSONResponse(body)
    return PlainTextResponse(body, media_type=MEDIA_TYPES[response_format])


async def document_answer(
    events: AsyncGenerator[GraphEvent], fmt: DocumentFormat
) -> Response | TranscriptionResult:
    """The document route's answer: the document, or it rendered as text or subtitles."""
    result, _ = await collect_document(events)
    if fmt == "json":
        return result
    return PlainTextResponse(render(result, fmt), media_type=MEDIA_TYPES[fmt])
