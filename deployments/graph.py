"""The graph's orchestration: upload, plan, fan-out to ASR, post-processing, the document.

Apart from HTTP (FastAPI never appears here) and written against objects shaped like Serve's
``DeploymentHandle``s (``handle.remote(...)``, ``handle.method.remote(...)``, answers that are
awaitable and cancellable), so it is unit-tested with fakes, without a cluster.

The driver never holds audio samples: the preprocessor returns an :class:`AudioPlan` of
``ObjectRef``s, and each ref is passed on, unresolved, to an ASR call (Ray resolves a top-level
ref argument in the ASR replica, straight from the object store). Every window goes to ASR at
once, where Serve spreads the windows over replicas and ``@serve.batch`` batches them with other
requests'. One stream of events serves every answer: a progress event as each window finishes,
the windows in order as soon as each and all before it are done, then the document; the routes
pick what they send of it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing, suppress
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from deployments.audio_plan import AudioPlan, Rejected, Upload
from deployments.http_errors import Overloaded, StageUnavailable
from deployments.protocol import WindowProgress
from deployments.stage_calls import RecutWindows, once_more_if_replica_died, stage_errors
from pipeline.decoding import DecodeOptions
from pipeline.document import NO_SPEECH_LANGUAGE, build_document, stitch_segments, transcript_text
from pipeline.errors import InvalidParameter
from pipeline.schemas import (
    PostprocessResult,
    StageNodes,
    StageTimings,
    TranscriptionResult,
    WindowTranscript,
)
from pipeline.settings import PipelineSettings
from pipeline.windows import Window

log = logging.getLogger("ray.serve")

UPLOAD_CHUNK_BYTES = 4 << 20

GraphEvent = WindowProgress | WindowTranscript | TranscriptionResult
"""What :meth:`TranscriptionGraph.run` yields; the last event is always the document."""


class UploadedFile(Protocol):
    """What the graph needs of an upload (Starlette's ``UploadFile`` is one)."""

    filename: str | None

    async def read(self, size: int = -1) -> bytes: ...


@dataclass(frozen=True)
class TranscriptionRequest:
    """What a request asks of the graph, whatever route it came by."""

    language: str | None
    options: DecodeOptions
    punctuate: bool
    summarize: bool
    request_id: str | None = None


@dataclass(frozen=True)
class PlannedAudio:
    """An upload cut into windows, and when its preprocessing started and ended
    (``perf_counter``): a streamed request builds its document after its windows are done."""

    plan: AudioPlan
    started: float
    preprocessed: float


class TranscriptionGraph:
    """The three stages composed for one request at a time (many requests run at once)."""

    def __init__(
        self,
        preprocess: Any,
        asr: Any,
        postprocess: Any,
        settings: PipelineSettings,
        *,
        put: Callable[[np.ndarray], Any],
        node_id: str | None = None,
        on_llm_fallback: Callable[[PostprocessResult], None] = lambda result: None,
    ):
        """``put`` stores an upload chunk in the object store (``ray.put``); ``on_llm_fallback``
        hears of each request whose post-processing was skipped because the LLM could not answer."""
        self.preprocess, self.asr, self.postprocess = preprocess, asr, postprocess
        self.settings = settings
        self.put = put
        self.node_id = node_id
        self.on_llm_fallback = on_llm_fallback

    async def upload(self, file: UploadedFile) -> Upload:
        """Copy the upload from its spooled temporary file into the object store a chunk at a
        time, so the driver's heap holds one chunk, never the whole file."""
        chunks, size = [], 0
        while chunk := await file.read(UPLOAD_CHUNK_BYTES):
            chunks.append(self.put(np.frombuffer(chunk, np.uint8)))
            size += len(chunk)
        if not size:
            raise InvalidParameter(
                f"The uploaded file {file.filename!r} is empty (0 bytes). Send an audio file.",
                "file",
                "empty_file",
            )
        return Upload(chunks=chunks, size=size)

    async def plan(self, upload: Upload) -> PlannedAudio:
        started = time.perf_counter()
        with stage_errors():
            plan = await self._plan(upload)
        return PlannedAudio(plan, started, time.perf_counter())

    async def _plan(self, upload: Upload) -> AudioPlan:
        """The upload decoded and cut into windows (sent once more if the replica died)."""
        plan: AudioPlan | Rejected = await once_more_if_replica_died(
            lambda: self.preprocess.remote(upload), "the upload's preprocessing"
        )
        if isinstance(plan, Rejected):
            raise plan.error
        return plan

    async def run(
        self, audio: PlannedAudio, request: TranscriptionRequest
    ) -> AsyncGenerator[GraphEvent, None]:
        """Progress and windows as they finish, then the document."""
        windows: list[WindowTranscript] = []
        # aclosing: a consumer that stops early closes the fan-out too, which cancels its calls.
        async with aclosing(self._windows(audio.plan, request)) as events:
            async for event in events:
                if isinstance(event, WindowTranscript):
                    windows.append(event)
                yield event
        yield await self._document(audio, windows, request)

    async def _windows(
        self, plan: AudioPlan, request: TranscriptionRequest
    ) -> AsyncGenerator[WindowProgress | WindowTranscript, None]:
        """A progress event after each window that finishes, in whatever order they finish; the
        windows themselves in order, each as soon as it and all before it are done."""
        if not plan.windows:
            return  # no speech: Whisper is not called
        asr, options = self.asr, request.options
        language = request.language or self.settings.asr.default_language
        tasks: dict[asyncio.Future, int] = {}
        responses: list = []
        try:
            with stage_errors():
                windows = RecutWindows(plan, lambda: self._plan(plan.upload))
                if language is None:
                    language = await windows.call(
                        0, asr.detect_language.remote, "window 0's language", responses
                    )
                for i, window in enumerate(plan.windows):

                    def transcribe(ref: Any, window: Window = window) -> Any:
                        return asr.transcribe.remote(ref, window, language, options)

                    call = windows.call(
                        i,
                        transcribe,
                        f"window {window.index}",
                        responses,
                    )
                    tasks[asyncio.ensure_future(call)] = i
                done: dict[int, WindowTranscript] = {}
                pending, next_index, seconds = set(tasks), 0, 0.0
                total_s = sum(w.duration_s for w in plan.windows)
                while pending:
                    finished, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                    for task in finished:
                        done[tasks[task]] = task.result()
                        seconds += plan.windows[tasks[task]].duration_s
                        yield WindowProgress(
                            windows_done=len(done),
                            windows_total=len(plan.windows),
                            audio_seconds_done=round(seconds, 3),
                            audio_seconds_total=round(total_s, 3),
                        )
                    while next_index in done:
                        yield done[next_index]
                        next_index += 1
        finally:
            # Stop the windows still queued or running when the request ends early (an error, a
            # client gone). Serve's cancel() re-raises the error of a call that already failed:
            # nothing is left to stop there.
            for task in tasks:
                task.cancel()
            for response in responses:
                with suppress(Exception):
                    response.cancel()

    async def _document(
        self, audio: PlannedAudio, transcripts: list[WindowTranscript], request: TranscriptionRequest
    ) -> TranscriptionResult:
        plan = audio.plan
        segments = stitch_segments(transcripts)
        transcribed = time.perf_counter()
        if request.punctuate or request.summarize:
            post = await self._postprocess(transcript_text(segments), request)
        else:
            post = PostprocessResult.not_requested()
        finished = time.perf_counter()
        nodes = StageNodes(
            ingress=self.node_id,
            preprocess=plan.node_id,
            postprocess=post.node_id,
            asr_windows=dict(Counter(t.node_id for t in transcripts if t.node_id is not None)),
        )
        timings = StageTimings(
            preprocess_s=audio.preprocessed - audio.started,
            asr_s=transcribed - audio.preprocessed,
            postprocess_s=finished - transcribed,
            total_s=finished - audio.started,
            windows=len(plan.windows),
            asr_windows_by_replica=dict(Counter(t.replica_id for t in transcripts if t.replica_id)),
            asr_largest_batch=max((t.batch_size for t in transcripts), default=0),
            nodes=nodes,
        )
        language = (
            transcripts[0].language
            if transcripts
            else request.language or self.settings.asr.default_language or NO_SPEECH_LANGUAGE
        )
        return build_document(
            language=language,
            task=request.options.task,
            duration_s=plan.duration_s,
            segments=segments,
            post=post,
            timings=timings,
            models={"asr": self.settings.asr.model, "llm": self.settings.llm.model},
            request_id=request.request_id,
        )

    async def _postprocess(self, text: str, request: TranscriptionRequest) -> PostprocessResult:
        """The LLM's punctuation and summary; when the LLM stage cannot answer (no live replica,
        at capacity), the transcript is not thrown away: the document goes out raw, saying why."""
        punctuate, summarize = request.punctuate, request.summarize
        try:
            with stage_errors():
                result: PostprocessResult = await once_more_if_replica_died(
                    lambda: self.postprocess.remote(text, punctuate, summarize), "post-processing"
                )
                return result
        except (StageUnavailable, Overloaded) as exc:
            log.warning("post-processing skipped: %s", exc.code)
            reason = "at capacity" if isinstance(exc, Overloaded) else "no live replica"
            fallback = PostprocessResult.llm_unavailable(reason, punctuate=punctuate, summarize=summarize)
            self.on_llm_fallback(fallback)
            return fallback


async def collect_document(
    events: AsyncGenerator[GraphEvent],
) -> tuple[TranscriptionResult, list[WindowTranscript]]:
    """The document at the end of ``events``, and the windows it was made of."""
    windows = []
    async with aclosing(events):
        async for event in events:
            if isinstance(event, WindowTranscript):
                windows.append(event)
            elif isinstance(event, TranscriptionResult):
                return event, windows
    raise RuntimeError("the graph's events ended without a document")
