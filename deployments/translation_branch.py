"""The translation branch of one request: segments translated by the LLM stage as ASR finishes them.

The graph's windows come in order, each final once it and every window before it are done. Their
segments go to the LLM stage's ``translate`` as they come, one call at a time per request: what
becomes final while a call runs goes in the next, so a short file takes one or two calls and a
long file's translation runs beside its transcription, chunk after chunk, and ends soon after it.
Each call carries the source text of the segments just before it as context. Translations come
back in order, so a stream sends each one as soon as it is known.

When the LLM stage cannot answer (no live replica, at capacity), the segments of that call keep
their source text, marked with the reason: the transcript is never lost to the translation.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Sequence
from contextlib import suppress
from typing import Any, TypeVar

from deployments.http_errors import Overloaded, StageUnavailable
from deployments.stage_calls import once_more_if_replica_died, stage_errors
from pipeline.llm_results import TranslatedSegment, TranslationBatch
from pipeline.schemas import Segment, WindowTranscript
from pipeline.translation import sources, translated_segments, untranslated_segments

log = logging.getLogger("ray.serve")

Event = TypeVar("Event")

_END = object()


class TranslationBranch:
    """A request's translation calls, one in flight at a time; results in :attr:`results`."""

    def __init__(self, stage: Any, language: str, context_segments: int):
        """``stage`` is the LLM stage's handle; ``language`` the code to translate into."""
        self.stage, self.language, self.context_segments = stage, language, context_segments
        self.results: asyncio.Queue[TranslatedSegment | BaseException | None] = asyncio.Queue()
        """Each translated segment in document order; then ``None`` (all done) or the error."""
        self.segments: list[TranslatedSegment] = []
        self.calls = 0
        self._pending: list[Segment] = []
        self._context: list[str] = []
        self._next_id = 0
        self._closed = False
        self._call: asyncio.Task | None = None
        self._responses: list = []
        self._closed_at: float | None = None
        self._finished_at: float | None = None

    def add(self, window: WindowTranscript) -> None:
        """A window that is final: its segments, with their ids in the document (the order of
        ``pipeline.document.stitch_segments``), are translated in the next call."""
        for segment in sorted(window.segments, key=lambda s: (s.start, s.end)):
            self._pending.append(segment.model_copy(update={"id": self._next_id}))
            self._next_id += 1
        self._start()

    def close(self) -> None:
        """No more windows: the results end once the segments added are translated."""
        self._closed = True
        self._closed_at = time.perf_counter()
        self._start()

    @property
    def wait_s(self) -> float:
        """Seconds from the last window until the last translation: what translation added."""
        if self._closed_at is None or self._finished_at is None:
            return 0.0
        return max(0.0, self._finished_at - self._closed_at)

    def with_speakers(self, segments: Sequence[Segment]) -> list[TranslatedSegment]:
        """The translated segments, each with the speaker its source segment got (diarization
        ends after the translations: the speakers are known once the whole file is heard)."""
        speaker = {s.id: s.speaker for s in segments}
        return [t.model_copy(update={"speaker": speaker.get(t.id)}) for t in self.segments]

    def cancel(self) -> None:
        if self._call is not None:
            self._call.cancel()
        for response in self._responses:
            with suppress(Exception):
                response.cancel()

    def _start(self) -> None:
        if self._call is not None:
            return
        if self._pending:
            batch, self._pending = self._pending, []
            self._call = asyncio.ensure_future(self._translate(batch))
        elif self._closed:
            self._finished_at = time.perf_counter()
            self.results.put_nowait(None)

    async def _translate(self, batch: list[Segment]) -> None:
        keep = self.context_segments  # [-0:] would keep everything: 0 keeps nothing
        context = self._context
        self._context = [*context, *(s.text.strip() for s in batch)][-keep:] if keep else []
        self.calls += 1
        try:
            done = await self._answer(batch, context)
        except BaseException as exc:  # the stream reports it; a cancelled request ends here
            self.results.put_nowait(exc)
            raise
        self.segments.extend(done)
        for segment in done:
            self.results.put_nowait(segment)
        self._call = None  # this call is over: the next may start
        self._start()

    async def _answer(self, batch: list[Segment], context: Sequence[str]) -> list[TranslatedSegment]:
        try:
            with stage_errors():
                answer: TranslationBatch = await once_more_if_replica_died(
                    lambda: self.stage.translate.remote(sources(batch), self.language, list(context)),
                    "the translation",
                    self._responses,
                )
        except (StageUnavailable, Overloaded) as exc:
            log.warning("translation skipped for %d segments: %s", len(batch), exc.code)
            why = "at capacity" if isinstance(exc, Overloaded) else "no live replica"
            return untranslated_segments(
                batch, f"the LLM stage was unavailable ({why}); the source text is kept"
            )
        return translated_segments(batch, answer.segments)


async def with_translations(
    events: AsyncGenerator[Event], branch: TranslationBranch
) -> AsyncGenerator[Event | TranslatedSegment]:
    """``events`` with each translated segment put in as soon as it is known; each final window
    (:class:`WindowTranscript`) goes to ``branch``. Ends once both have ended."""
    next_event: asyncio.Future | None = asyncio.ensure_future(anext(events, _END))
    next_result: asyncio.Future | None = asyncio.ensure_future(branch.results.get())
    try:
        while next_event is not None or next_result is not None:
            waiting = {f for f in (next_event, next_result) if f is not None}
            finished, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if next_event in finished:
                event = next_event.result()
                next_event = None
                if event is _END:
                    branch.close()
                else:
                    if isinstance(event, WindowTranscript):
                        branch.add(event)
                    yield event
                    next_event = asyncio.ensure_future(anext(events, _END))
            if next_result is not None and next_result in finished:
                result = next_result.result()
                next_result = None
                if isinstance(result, BaseException):
                    raise result
                if result is not None:
                    yield result
                    next_result = asyncio.ensure_future(branch.results.get())
    finally:
        for future in (next_event, next_result):
            if future is not None:
                future.cancel()
                with suppress(BaseException):
                    await future
