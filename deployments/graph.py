"""The graph's orchestration: upload, plan, fan-out to ASR, post-processing, the document.

Apart from HTTP (FastAPI never appears here) and written against objects shaped like Serve's
``DeploymentHandle``s (``handle.remote(...)``, ``handle.method.remote(...)``, answers that are
awaitable and cancellable), so it is unit-tested with fakes, without a cluster.

The preprocessing stage answers with parts of the plan (``deployments.audio_parts``), windows
with their samples as read-only views of the answer in the object store, and each window's samples
go on to an ASR call, which Ray puts in the object store for the ASR replica to map. A part's
windows go to ASR as soon as it is planned, while a long file's later chunks are still being
decoded; Serve spreads the windows over replicas and ``@serve.batch`` batches them with other
requests'. One stream of events serves every answer: a progress event as each part is planned
and each window finishes, the windows in order as soon as each and all before it are done, then
the document; the routes pick what they send of it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import Counter
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing, suppress
from typing import Any

import numpy as np

from deployments.audio_parts import AudioParts, PlannedAudio, PlanProgress
from deployments.audio_plan import AudioPart, Upload
from deployments.graph_request import GraphEvent, TranscriptionRequest, UploadedFile
from deployments.http_errors import Overloaded, StageUnavailable
from deployments.protocol import WindowProgress
from deployments.speaker_branch import ChannelBranch, SpeakerBranch, speaker_branch
from deployments.stage_calls import once_more_if_replica_died, stage_errors
from deployments.translation_branch import TranslationBranch, with_translations
from pipeline.diarization import MAX_SPEAKERS
from pipeline.document import NO_SPEECH_LANGUAGE, build_document, stitch_segments, transcript_text
from pipeline.errors import ChannelCountError, InvalidParameter
from pipeline.llm_results import PostprocessResult, SpeakerText
from pipeline.schemas import StageNodes, StageTimings, TranscriptionResult, WindowTranscript
from pipeline.settings import PipelineSettings, VadOptions
from pipeline.speaker_assignment import assign_speakers, talk_time
from pipeline.speaker_text import speaker_texts
from pipeline.translation import translation_result
from pipeline.windows import Window

log = logging.getLogger("ray.serve")

UPLOAD_CHUNK_BYTES = 4 << 20

Speakers = SpeakerBranch | ChannelBranch
"""A request's diarization branch: speakers by voice, or by channel."""


class TranscriptionGraph:
    """The stages composed for one request at a time (many requests run at once)."""

    def __init__(
        self,
        preprocess: Any,
        asr: Any,
        postprocess: Any,
        settings: PipelineSettings,
        *,
        put: Callable[[np.ndarray], Any],
        diarization: Any = None,
        node_id: str | None = None,
        on_llm_fallback: Callable[[PostprocessResult], None] = lambda result: None,
    ):
        """``put`` stores an upload chunk in the object store (``ray.put``); ``diarization`` is the
        diarization stage, when deployed; ``on_llm_fallback`` hears of each request whose
        post-processing was skipped because the LLM could not answer."""
        self.preprocess, self.asr, self.postprocess = preprocess, asr, postprocess
        self.diarization = diarization
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

    async def plan(
        self, upload: Upload, vad: VadOptions | None = None, *, by_channel: bool = False
    ) -> PlannedAudio:
        """Probe the upload and plan its first windows (the rest come while ASR runs); with
        ``by_channel`` (speakers by channel), a file without a channel per speaker is refused
        here, before any of it is transcribed."""
        started = time.perf_counter()
        with stage_errors():
            parts = AudioParts(self.preprocess, self.settings.audio, upload, vad)
            rest = parts.stream()
            try:
                first = await anext(rest)
                if by_channel and parts.probe is not None:
                    ChannelCountError.check(parts.probe.channels, MAX_SPEAKERS)
            except BaseException:
                await rest.aclose()
                parts.cancel()
                raise
        declared = parts.probe.duration_s if parts.probe is not None else None
        return PlannedAudio(parts, first, rest, started, time.perf_counter(), duration_s=declared or 0.0)

    async def run(
        self, audio: PlannedAudio, request: TranscriptionRequest
    ) -> AsyncGenerator[GraphEvent, None]:
        """Progress and windows as they finish (and their translated segments, when asked), then
        the document."""
        windows: list[WindowTranscript] = []
        speakers = (
            speaker_branch(
                self.diarization,
                audio.parts.upload,
                request.speakers,
                request.known_voices,
                request.speakers_by_channel,
            )
            if request.speakers
            else None
        )
        translation = (
            TranslationBranch(
                self.postprocess, request.translate_to, self.settings.llm.translation_context_segments
            )
            if request.translate_to
            else None
        )
        try:
            try:
                # aclosing: a consumer that stops early closes the fan-out, which cancels its calls.
                async with (
                    aclosing(self._windows(audio, request, speakers)) as asr_events,
                    aclosing(
                        asr_events if translation is None else with_translations(asr_events, translation)
                    ) as events,
                ):
                    async for event in events:
                        if isinstance(event, WindowTranscript):
                            windows.append(event)
                        yield event
            finally:
                audio.parts.cancel()
            yield await self._document(audio, windows, request, speakers, translation)
        finally:
            if speakers is not None:
                speakers.cancel()
            if translation is not None:
                translation.cancel()

    async def _windows(
        self, audio: PlannedAudio, request: TranscriptionRequest, speakers: Speakers | None
    ) -> AsyncGenerator[WindowProgress | WindowTranscript, None]:
        """A progress event after each window that finishes, in whatever order they finish, and
        after each part planned; the windows themselves in order, each as soon as it and all
        before it are done. Windows go to ASR as soon as their part is planned."""
        progress = PlanProgress(audio)
        language = request.language or self.settings.asr.default_language
        tasks: dict[asyncio.Future, Window] = {}
        responses: list = []
        parts = audio.all_parts()
        next_part: asyncio.Future | None = asyncio.ensure_future(anext(parts))
        done: dict[int, WindowTranscript] = {}
        next_index = 0
        try:
            with stage_errors():
                while next_part is not None or tasks:
                    waiting = set(tasks) | ({next_part} if next_part is not None else set())
                    finished, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                    if next_part in finished:
                        part: AudioPart = next_part.result()
                        next_part = None if part.last else asyncio.ensure_future(anext(parts))
                        if part.last:
                            audio.preprocessed, audio.duration_s = time.perf_counter(), part.planned_to_s
                        if language is None and part.windows:
                            language = await once_more_if_replica_died(
                                functools.partial(
                                    self.asr.detect_language.remote, part.samples[0], request.options.adapter
                                ),
                                "the language",
                                responses,
                            )
                        for window, samples in zip(part.windows, part.samples, strict=True):
                            call = once_more_if_replica_died(
                                functools.partial(
                                    self.asr.transcribe.remote, samples, window, language, request.options
                                ),
                                f"window {window.index}",
                                responses,
                            )
                            tasks[asyncio.ensure_future(call)] = window
                            if speakers is not None:
                                speakers.add(samples, window)
                        yield progress.planned(part)
                    for task in finished - {next_part}:
                        if task not in tasks:
                            continue
                        window = tasks.pop(task)
                        done[window.index] = task.result()
                        yield progress.transcribed(window)
                    while next_index in done:
                        yield done.pop(next_index)
                        next_index += 1
        finally:
            # Stop the windows still queued or running when the request ends early (an error, a
            # client gone). Serve's cancel() re-raises the error of a call that already failed:
            # nothing is left to stop there.
            for task in [*tasks, *([next_part] if next_part is not None else [])]:
                task.cancel()
            await parts.aclose()
            for response in responses:
                with suppress(Exception):
                    response.cancel()

    async def _document(
        self,
        audio: PlannedAudio,
        transcripts: list[WindowTranscript],
        request: TranscriptionRequest,
        speakers: Speakers | None,
        translation: TranslationBranch | None = None,
    ) -> TranscriptionResult:
        segments = stitch_segments(transcripts)
        transcribed = time.perf_counter()
        talk = None
        if speakers is not None:
            with stage_errors():
                turns = (await speakers.speakers()).turns
            segments, talk = assign_speakers(segments, turns), talk_time(turns)
        diarized = time.perf_counter()
        preprocessed = audio.preprocessed or transcribed
        if request.punctuate or request.summarize:
            turns_said = speaker_texts(segments) if talk is not None else None
            post = await self._postprocess(transcript_text(segments), request, turns_said)
        else:
            post = PostprocessResult.not_requested()
        finished = time.perf_counter()
        nodes = StageNodes(
            ingress=self.node_id,
            preprocess=audio.first.node_id,
            postprocess=post.node_id,
            asr_windows=dict(Counter(t.node_id for t in transcripts if t.node_id is not None)),
        )
        timings = StageTimings(
            preprocess_s=preprocessed - audio.started,
            asr_s=transcribed - audio.first_planned,
            postprocess_s=finished - diarized,
            total_s=finished - audio.started,
            windows=len(transcripts),
            first_window_s=audio.first_planned - audio.started,
            preprocess_chunks_by_replica=dict(audio.parts.replicas),
            asr_windows_by_replica=dict(Counter(t.replica_id for t in transcripts if t.replica_id)),
            asr_largest_batch=max((t.batch_size for t in transcripts), default=0),
            asr_windows_by_adapter=dict(Counter(t.adapter or "base" for t in transcripts)),
            nodes=nodes,
            diarization_s=diarized - transcribed,
            translation_s=translation.wait_s if translation is not None else 0.0,
            translation_calls=translation.calls if translation is not None else 0,
        )
        language = (
            transcripts[0].language
            if transcripts
            else request.language or self.settings.asr.default_language or NO_SPEECH_LANGUAGE
        )
        return build_document(
            language=language,
            task=request.options.task,
            duration_s=audio.duration_s,
            segments=segments,
            post=post,
            timings=timings,
            models={"asr": self.settings.asr.model, "llm": self.settings.llm.model},
            request_id=request.request_id,
            speakers=talk,
            translation=(
                translation_result(translation.with_speakers(segments), translation.language)
                if translation is not None
                else None
            ),
        )

    async def _postprocess(
        self, text: str, request: TranscriptionRequest, speakers: list[SpeakerText] | None = None
    ) -> PostprocessResult:
        """The LLM's punctuation and summary; when the LLM stage cannot answer (no live replica,
        at capacity), the transcript is not thrown away: the document goes out raw, saying why."""
        punctuate, summarize = request.punctuate, request.summarize
        try:
            with stage_errors():
                result: PostprocessResult = await once_more_if_replica_died(
                    lambda: self.postprocess.remote(text, punctuate, summarize, speakers), "post-processing"
                )
                return result
        except (StageUnavailable, Overloaded) as exc:
            log.warning("post-processing skipped: %s", exc.code)
            reason = "at capacity" if isinstance(exc, Overloaded) else "no live replica"
            fallback = PostprocessResult.llm_unavailable(reason, punctuate=punctuate, summarize=summarize)
            self.on_llm_fallback(fallback)
            return fallback
