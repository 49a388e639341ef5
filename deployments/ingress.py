"""The ingress (driver): the HTTP API, composing the stages through DeploymentHandles.

The driver never holds audio samples: the preprocessor returns an :class:`AudioPlan` of
``ObjectRef``s, and each ref is passed on, unresolved, to an ASR call (Ray resolves a top-level
ref argument in the ASR replica, straight from the object store).
"""

# No `from __future__ import annotations`: FastAPI reads the route signatures at runtime.

import asyncio
import json
import logging
import math
import os
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Annotated

import numpy as np
import ray
from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from pydantic import BaseModel
from ray import serve
from ray.exceptions import ObjectLostError, RayActorError, RayTaskError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError
from ray.serve.handle import DeploymentHandle
from starlette.exceptions import HTTPException

from deployments.api_key import ApiKeyAuth, api_keys_from
from deployments.audio_plan import AudioPlan, Rejected, Upload
from deployments.metrics import IngressMetrics, count_fallbacks
from deployments.openai_protocol import (
    MEDIA_TYPES,
    Granularity,
    ModelCard,
    ModelList,
    ResponseFormat,
    TextDeltaEvent,
    TextDoneEvent,
    TranscriptionJson,
    TranscriptionVerboseJson,
    output_text,
    render_openai,
)
from deployments.protocol import (
    ErrorResponse,
    HealthResponse,
    LivenessResponse,
    ModelsResponse,
    StageHealth,
    WindowProgress,
    error_body,
)
from deployments.request_log import RequestRecorder, note_request
from deployments.upload_limit import UploadSizeLimit
from pipeline.decoding import DecodeOptions
from pipeline.document import NO_SPEECH_LANGUAGE, build_document, stitch_segments, transcript_text
from pipeline.errors import InvalidParameter, ModelNotFound, SpeechgraphError
from pipeline.languages import normalize_language
from pipeline.schemas import (
    PostprocessResult,
    StageNodes,
    StageTimings,
    Task,
    TranscriptionResult,
    WindowTranscript,
)
from pipeline.settings import PipelineSettings

log = logging.getLogger("ray.serve")

STAGES = ("preprocess", "asr", "postprocess")
RETRY_AFTER_S = 2

api = FastAPI(
    title="speechgraph",
    description="Speech-to-text as an autoscaling Ray Serve graph: preprocess -> Whisper -> LLM.",
    version="0.1.0",
)


# Serve runs a frozen copy of `api` in the replica, so the middlewares read their settings from
# the replica's deployment object rather than from state stored on the app.
def _ingress() -> "IngressDeployment":
    return serve.get_replica_context().servable_object


api.add_middleware(UploadSizeLimit, max_bytes=lambda: _ingress().settings.audio.max_upload_bytes)
api.add_middleware(ApiKeyAuth, keys=lambda: _ingress().api_keys)
api.add_middleware(RequestRecorder, metrics=lambda: _ingress().metrics, routes=api.routes)  # outermost

_ERRORS = {status: {"model": ErrorResponse} for status in (400, 401, 404, 413, 415, 422, 429, 503)}


def _openapi_with_api_key() -> dict:
    """FastAPI's schema plus the API key: a bearer scheme that every ``/v1`` route accepts and,
    when the service has keys configured, needs (``[{}, bearer]``: optional in the schema, since
    the same code runs with and without keys)."""
    if api.openapi_schema is None:
        schema = FastAPI.openapi(api)
        schema.setdefault("components", {})["securitySchemes"] = {
            "apiKey": {
                "type": "http",
                "scheme": "bearer",
                "description": "Needed when the service has an API key (api.api_key_env is set).",
            }
        }
        for path, operations in schema["paths"].items():
            if path.startswith("/v1/"):
                for operation in operations.values():
                    operation["security"] = [{}, {"apiKey": []}]
    return api.openapi_schema


api.openapi = _openapi_with_api_key


def _cause(exc: BaseException) -> BaseException:
    """The exception a stage raised, without Ray's wrapper around it."""
    return exc.cause if isinstance(exc, RayTaskError) and exc.cause is not None else exc


class Overloaded(SpeechgraphError):
    """A stage's queue is full (its ``max_queued_requests``)."""

    code = "overloaded"

    def __init__(self, message: str, status: int = 503, retry_after_s: float = RETRY_AFTER_S):
        super().__init__(message)
        self.args = (message, status, retry_after_s)
        self.status = status
        self.type = "rate_limit_error" if status == 429 else "overloaded_error"
        self.headers = {"Retry-After": str(max(1, math.ceil(retry_after_s)))}


class StageUnavailable(SpeechgraphError):
    """A stage has no live replica (starting, restarting, or failed)."""

    code = "stage_unavailable"
    status = 503
    type = "server_error"
    headers = {"Retry-After": str(RETRY_AFTER_S)}


@contextmanager
def _stage_errors():
    """Turn Serve's refusals, raised when a stage is called or awaited, into the API's errors.

    Serve registers its own plain-text handlers for ``BackPressureError`` and
    ``DeploymentUnavailableError`` on the ingress app, replacing any of ours, so they are
    converted here, around the calls to the stages.
    """
    try:
        yield
    except BackPressureError as exc:
        log.warning("stage refused work: %s", exc)
        raise Overloaded(
            "The service is at capacity. Retry after a short wait.",
            exc.status_code,
            exc.retry_after_s if exc.retry_after_s is not None else RETRY_AFTER_S,
        ) from None
    except (DeploymentUnavailableError, RayActorError) as exc:
        log.warning("stage unavailable: %s", exc.__class__.__name__)
        raise StageUnavailable(
            "A pipeline stage is restarting or unavailable. Retry after a short wait."
        ) from None


@api.exception_handler(SpeechgraphError)
async def _speechgraph_error(request: Request, exc: SpeechgraphError) -> JSONResponse:
    err = _cause(exc)
    return JSONResponse(
        error_body(str(err.args[0]), code=err.code, type=err.type, param=err.param),
        status_code=err.status,
        headers=err.headers,
    )


@api.exception_handler(RequestValidationError)
async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0]
    # loc is ("body", field[, list index ...]): the field is the parameter to name.
    names = [part for part in first.get("loc", ())[1:] if isinstance(part, str)]
    param = names[0] if names else None
    return JSONResponse(
        error_body(f"Invalid parameter {param!r}: {first['msg']}.", code="invalid_parameter", param=param),
        status_code=400,
    )


@api.exception_handler(HTTPException)
async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return JSONResponse(
        error_body(str(exc.detail), code=code),
        status_code=exc.status_code,
        headers=getattr(exc, "headers", None),
    )


@api.exception_handler(Exception)
async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    # A bug, not the client's fault: still answer in the API's error shape, with the request id.
    return JSONResponse(
        error_body(
            f"Internal error ({exc.__class__.__name__}) in request "
            f"{_request_id()}; the replica logs carry that id.",
            code="internal_error",
            type="server_error",
        ),
        status_code=500,
    )


def _request_id() -> str | None:
    # Serve assigns every HTTP request an id (also returned as the X-Request-Id header).
    return serve.context._get_serve_request_context().request_id or None


def _event_stream(events: AsyncIterator[tuple[str, BaseModel]], *, named: bool) -> StreamingResponse:
    """Server-sent events from ``(name, body)`` pairs; ``named`` writes the ``event:`` line
    (OpenAI's stream has none: the type is in the body). An error after the stream started is sent
    as an ``error`` event, in the API's error shape: the status is 200 by then."""

    def frame(name: str, body: str) -> str:
        return (f"event: {name}\n" if named else "") + f"data: {body}\n\n"

    async def frames() -> AsyncIterator[str]:
        try:
            async for name, body in events:
                yield frame(name, body.model_dump_json(exclude_none=not named))
        except SpeechgraphError as exc:
            err = _cause(exc)
            yield frame(
                "error",
                json.dumps(error_body(str(err.args[0]), code=err.code, type=err.type, param=err.param)),
            )
        except Exception as exc:
            log.exception("stream failed")
            yield frame(
                "error",
                json.dumps(
                    error_body(
                        f"The transcription failed ({exc.__class__.__name__}) in request {_request_id()}. "
                        "Retry the request.",
                        code="internal_error",
                        type="server_error",
                    )
                ),
            )

    return StreamingResponse(frames(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


@dataclass(frozen=True)
class PreprocessClock:
    """When a request's preprocessing started and ended (``perf_counter``): a streamed request
    builds its document after its windows are done, so the split cannot be timed there."""

    started: float
    preprocessed: float


UPLOAD_CHUNK_BYTES = 4 << 20


async def _to_object_store(file: UploadFile) -> Upload:
    """Copy the upload from its spooled temporary file into the object store a chunk at a time,
    so the driver's heap holds one chunk, never the whole file (#4)."""
    chunks, size = [], 0
    while chunk := await file.read(UPLOAD_CHUNK_BYTES):
        chunks.append(ray.put(np.frombuffer(chunk, np.uint8)))
        size += len(chunk)
    return Upload(chunks=chunks, size=size)


async def _once_more_if_replica_died(call, what: str, responses: list | None = None):
    """``call()`` (a stage call), sent once more if the replica working on it died: Serve re-routes
    only the calls no replica had taken yet, and every stage call is safe to make twice (the
    inputs are the ingress's own objects). Each call goes into ``responses`` when given, so the
    request can cancel them."""
    for attempt in range(2):
        response = call()
        if responses is not None:
            responses.append(response)
        try:
            return await response
        except RayActorError:
            if attempt:
                raise
            log.warning("the replica working on %s died; sending it again", what)


class _RecutWindows:
    """A plan's windows as stage calls, cut again once if they are lost. A window's ``ObjectRef``
    is owned by the preprocessing replica that cut it and dies with it (Ray 2.56 removed
    ``ray.put``'s ``_owner``); the upload is the ingress's own, and cutting it again gives the
    same windows (decoding and VAD are deterministic)."""

    def __init__(self, plan: AudioPlan, cut):
        self.plan = plan
        self._cut = cut
        self._again: asyncio.Future | None = None

    async def call(self, index: int, send, what: str, responses: list):
        """``send(window_ref)``, sent once more if its replica died, and with a freshly cut window
        if the window was lost."""
        try:
            return await _once_more_if_replica_died(lambda: send(self.plan.refs[index]), what, responses)
        except ObjectLostError:
            log.warning(
                "%s was lost with the preprocessing replica that cut it; cutting the audio again", what
            )
        refs = await self._refs_again()
        return await _once_more_if_replica_died(lambda: send(refs[index]), what, responses)

    async def _refs_again(self) -> list:
        if self._again is None:  # once per request, however many windows were lost
            self._again = asyncio.ensure_future(self._cut())
        plan = await self._again
        if plan.windows != self.plan.windows:
            raise StageUnavailable(
                "The audio's windows were lost and cut differently the second time. Send the request again."
            )
        return plan.refs


async def _replay(items: list) -> AsyncIterator:
    for item in items:
        yield item


_FILE = Annotated[
    UploadFile | None, File(description="Audio file (wav, flac, mp3, ogg/opus, m4a, webm, mp4).")
]
_MODEL = Annotated[
    str | None,
    Form(
        description="A model name from GET /v1/models (e.g. whisper-1); "
        "the configured ASR model when left out."
    ),
]
_PROMPT = Annotated[str | None, Form(description="Text that came before, to guide style and spelling.")]
_FORMAT = Annotated[ResponseFormat, Form(description="json, text, srt, verbose_json or vtt.")]
_TEMPERATURE = Annotated[float, Form(ge=0.0, le=1.0, description="0 decodes greedily; up to 1 samples.")]
_PUNCTUATE = Annotated[bool, Form(description="Extension: restore punctuation and casing with the LLM.")]
_SUMMARIZE = Annotated[bool, Form(description="Extension: add an LLM summary under the key 'summary'.")]
_GRANULARITIES = Annotated[
    list[Granularity] | None,
    Form(
        alias="timestamp_granularities[]",
        description="word and/or segment; word timestamps need response_format=verbose_json.",
    ),
]
_GRANULARITIES_PLAIN = Annotated[
    list[Granularity] | None,
    Form(alias="timestamp_granularities", description="The same as timestamp_granularities[]."),
]

_OPENAI_RESPONSES = {
    200: {
        "model": TranscriptionJson | TranscriptionVerboseJson,
        "content": {
            "text/plain": {"schema": {"type": "string"}},
            "application/x-subrip": {"schema": {"type": "string"}},
            "text/vtt": {"schema": {"type": "string"}},
            "text/event-stream": {"schema": {"type": "string"}},
        },
        "description": "The transcript in the asked response_format, or a stream of events.",
    },
    **_ERRORS,
}


@serve.deployment(name="ingress")
@serve.ingress(api)
class IngressDeployment:
    def __init__(
        self,
        preprocess: DeploymentHandle,
        asr: DeploymentHandle,
        postprocess: DeploymentHandle,
        settings: PipelineSettings,
    ):
        self.stages = {"preprocess": preprocess, "asr": asr, "postprocess": postprocess}
        self.settings = settings
        self.node_id = ray.get_runtime_context().get_node_id()
        self.api_keys = api_keys_from(os.environ.get(settings.api.api_key_env))
        self.model_names = list(dict.fromkeys([*settings.api.model_aliases, settings.asr.model]))
        self.started_at = int(time.time())
        self.metrics = IngressMetrics()
        log.info(
            "ingress ready; models %s; API key %s",
            self.model_names,
            "required" if self.api_keys else "not required",
        )

    # --- the document route -------------------------------------------------------------------

    @api.post(
        "/v1/transcribe",
        response_model=TranscriptionResult,
        responses={
            200: {
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
                "description": "The document, or (stream=true) a stream of events.",
            },
            **_ERRORS,
        },
        summary="Transcribe an audio file (segments, punctuated text, summary)",
    )
    async def transcribe(
        self,
        file: _FILE = None,
        language: Annotated[str | None, Form(description="Language code; detected when left out.")] = None,
        task: Annotated[Task, Form(description="transcribe, or translate into English.")] = "transcribe",
        punctuate: Annotated[bool, Form(description="Restore punctuation and casing with the LLM.")] = True,
        summarize: Annotated[bool, Form(description="Write a summary with the LLM.")] = True,
        stream: Annotated[
            bool,
            Form(
                description="Send server-sent events instead: 'progress' as "
                "each window finishes, 'segment' as soon as it and "
                "all before it are ready, then 'document'."
            ),
        ] = False,
    ) -> TranscriptionResult:
        language = normalize_language(language)
        plan, clock = await self._preprocess(file)
        options = DecodeOptions(task=task)
        if stream:
            return _event_stream(
                self._document_events(
                    plan, clock, language=language, options=options, punctuate=punctuate, summarize=summarize
                ),
                named=True,
            )
        return await self._finish(
            self._transcribe_windows(plan, language, options),
            plan,
            clock,
            task=task,
            language=language,
            punctuate=punctuate,
            summarize=summarize,
        )

    async def _document_events(
        self,
        plan: AudioPlan,
        clock: PreprocessClock,
        *,
        language: str | None,
        options: DecodeOptions,
        punctuate: bool,
        summarize: bool,
    ) -> AsyncIterator[tuple[str, BaseModel]]:
        collected: list[WindowTranscript] = []
        next_id = 0  # document-wide segment ids, as stitch_segments numbers them
        async for event in self._window_events(plan, language, options):
            if isinstance(event, WindowProgress):
                yield "progress", event
                continue
            collected.append(event)
            for segment in sorted(event.segments, key=lambda s: (s.start, s.end)):
                yield "segment", segment.model_copy(update={"id": next_id})
                next_id += 1
        yield (
            "document",
            await self._finish(
                _replay(collected),
                plan,
                clock,
                task=options.task,
                language=language,
                punctuate=punctuate,
                summarize=summarize,
            ),
        )

    # --- OpenAI's audio API -------------------------------------------------------------------

    @api.post(
        "/v1/audio/transcriptions",
        responses=_OPENAI_RESPONSES,
        response_model=None,
        summary="Transcribe audio (OpenAI-compatible)",
    )
    async def openai_transcriptions(
        self,
        file: _FILE = None,
        model: _MODEL = None,
        language: Annotated[str | None, Form(description="ISO-639-1 code; detected when left out.")] = None,
        prompt: _PROMPT = None,
        response_format: _FORMAT = "json",
        temperature: _TEMPERATURE = 0.0,
        timestamp_granularities: _GRANULARITIES = None,
        timestamp_granularities_plain: _GRANULARITIES_PLAIN = None,
        stream: Annotated[
            bool,
            Form(
                description="Stream transcript.text.delta events, then "
                "transcript.text.done (json or text only)."
            ),
        ] = False,
        punctuate: _PUNCTUATE = False,
        summarize: _SUMMARIZE = False,
    ):
        granularities = frozenset((timestamp_granularities or []) + (timestamp_granularities_plain or []))
        if "word" in granularities and response_format != "verbose_json":
            raise InvalidParameter(
                "Word timestamps come only with response_format=verbose_json, as in "
                "OpenAI's API. Ask for verbose_json, or leave out 'word'.",
                "timestamp_granularities[]",
            )
        if stream and response_format not in ("json", "text"):
            raise InvalidParameter(
                f"stream=true works with response_format json or text, not {response_format!r}.", "stream"
            )
        return await self._openai(
            file,
            model=model,
            language=normalize_language(language),
            options=DecodeOptions(
                task="transcribe",
                temperature=temperature,
                prompt=self._prompt(prompt),
                word_timestamps="word" in granularities,
            ),
            response_format=response_format,
            granularities=granularities,
            stream=stream,
            punctuate=punctuate,
            summarize=summarize,
        )

    @api.post(
        "/v1/audio/translations",
        responses=_OPENAI_RESPONSES,
        response_model=None,
        summary="Translate audio into English text (OpenAI-compatible)",
    )
    async def openai_translations(
        self,
        file: _FILE = None,
        model: _MODEL = None,
        prompt: _PROMPT = None,
        response_format: _FORMAT = "json",
        temperature: _TEMPERATURE = 0.0,
        punctuate: _PUNCTUATE = False,
        summarize: _SUMMARIZE = False,
    ):
        return await self._openai(
            file,
            model=model,
            language=None,
            options=DecodeOptions(task="translate", temperature=temperature, prompt=self._prompt(prompt)),
            response_format=response_format,
            granularities=frozenset(),
            stream=False,
            punctuate=punctuate,
            summarize=summarize,
        )

    @api.get(
        "/v1/models",
        response_model=ModelList,
        responses=_ERRORS,
        summary="The model names requests may use (OpenAI's list shape)",
    )
    async def list_models(self) -> ModelList:
        return ModelList(data=[self._card(name) for name in self.model_names])

    @api.get(
        "/v1/models/{model_id:path}",
        response_model=ModelCard,
        responses=_ERRORS,
        summary="One model name (404 model_not_found when the service does not serve it)",
    )
    async def get_model(self, model_id: str) -> ModelCard:
        return self._card(self._model(model_id))

    def _card(self, name: str) -> ModelCard:
        return ModelCard(id=name, created=self.started_at)

    def _model(self, name: str | None) -> str:
        if name is None or name.strip() == "":
            return self.settings.asr.model
        if name not in self.model_names:
            raise ModelNotFound(
                f"The model {name[:200]!r} does not exist here. Use one of "
                f"{', '.join(self.model_names)} (see GET /v1/models)."
            )
        return name

    def _prompt(self, prompt: str | None) -> str | None:
        limit = self.settings.api.max_prompt_chars
        if prompt is not None and len(prompt) > limit:
            raise InvalidParameter(
                f"The prompt is {len(prompt)} characters long; the limit is "
                f"{limit}. Send the end of the previous text only.",
                "prompt",
            )
        return prompt or None

    async def _openai(
        self,
        file: UploadFile | None,
        *,
        model: str | None,
        language: str | None,
        options: DecodeOptions,
        response_format: ResponseFormat,
        granularities: frozenset[str],
        stream: bool,
        punctuate: bool,
        summarize: bool,
    ):
        self._model(model)
        plan, clock = await self._preprocess(file)
        windows = self._transcribe_windows(plan, language, options)
        if stream:
            return _event_stream(
                self._openai_events(
                    windows,
                    plan,
                    clock,
                    task=options.task,
                    language=language,
                    punctuate=punctuate,
                    summarize=summarize,
                ),
                named=False,
            )
        result = await self._finish(
            windows,
            plan,
            clock,
            task=options.task,
            language=language,
            punctuate=punctuate,
            summarize=summarize,
        )
        body = render_openai(
            result, response_format, granularities=granularities, punctuate=punctuate, summarize=summarize
        )
        if isinstance(body, dict):
            return JSONResponse(body)
        return PlainTextResponse(body, media_type=MEDIA_TYPES[response_format])

    async def _openai_events(
        self,
        windows: AsyncIterator[WindowTranscript],
        plan: AudioPlan,
        clock: PreprocessClock,
        *,
        task: Task,
        language: str | None,
        punctuate: bool,
        summarize: bool,
    ) -> AsyncIterator[tuple[str, BaseModel]]:
        """A ``transcript.text.delta`` per finished segment, in order, then ``transcript.text.done``.
        Segments finish a window at a time (one batched decode), and windows are sent in order."""
        collected: list[WindowTranscript] = []
        sent = False
        async for window in windows:
            collected.append(window)
            for segment in sorted(window.segments, key=lambda s: (s.start, s.end)):
                text = segment.text if sent else segment.text.lstrip()  # as the document's text
                if text:
                    sent = True
                    yield "delta", TextDeltaEvent(delta=text)
        result = await self._finish(
            _replay(collected),
            plan,
            clock,
            task=task,
            language=language,
            punctuate=punctuate,
            summarize=summarize,
        )
        yield (
            "done",
            TextDoneEvent(
                text=output_text(result),
                punctuation=result.punctuation if punctuate else None,
                summary=result.summary if summarize else None,
            ),
        )

    # --- the graph ----------------------------------------------------------------------------

    async def _preprocess(self, file: UploadFile | None) -> tuple[AudioPlan, PreprocessClock]:
        if file is None:
            raise InvalidParameter(
                "The request has no 'file' part. Send the audio as "
                "multipart/form-data in a field named 'file'.",
                "file",
                "missing_file",
            )
        upload = await _to_object_store(file)
        if upload.size:
            self.metrics.received_bytes.inc(upload.size)
        if not upload.size:
            raise InvalidParameter(
                f"The uploaded file {file.filename!r} is empty (0 bytes). Send an audio file.",
                "file",
                "empty_file",
            )
        started = time.perf_counter()
        with _stage_errors():
            plan = await self._plan(upload)
        return plan, PreprocessClock(started=started, preprocessed=time.perf_counter())

    async def _plan(self, upload: Upload) -> AudioPlan:
        """The upload decoded and cut into windows (sent once more if the replica died)."""
        plan: AudioPlan | Rejected = await _once_more_if_replica_died(
            lambda: self.stages["preprocess"].remote(upload), "the upload's preprocessing"
        )
        if isinstance(plan, Rejected):
            raise plan.error
        return plan

    async def _window_events(
        self, plan: AudioPlan, language: str | None, options: DecodeOptions
    ) -> AsyncIterator[WindowProgress | WindowTranscript]:
        """Every window goes to ASR at once (Serve spreads them over replicas and batches). A
        progress event follows each window that finishes, in whatever order they finish; the
        windows themselves are yielded in order, each as soon as it and all before it are done."""
        asr = self.stages["asr"]
        language = language or self.settings.asr.default_language
        if not plan.windows:
            return  # no speech: Whisper is not called
        tasks: dict[asyncio.Future, int] = {}
        responses = []
        try:
            with _stage_errors():
                windows = _RecutWindows(plan, lambda: self._plan(plan.upload))
                if language is None:
                    language = await windows.call(
                        0, asr.detect_language.remote, "window 0's language", responses
                    )
                for i, window in enumerate(plan.windows):
                    tasks[
                        asyncio.ensure_future(
                            windows.call(
                                i,
                                lambda ref, window=window: asr.transcribe.remote(
                                    ref, window, language, options
                                ),
                                f"window {window.index}",
                                responses,
                            )
                        )
                    ] = i
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

    async def _transcribe_windows(
        self, plan: AudioPlan, language: str | None, options: DecodeOptions
    ) -> AsyncIterator[WindowTranscript]:
        """The windows' transcripts, in order."""
        async for event in self._window_events(plan, language, options):
            if isinstance(event, WindowTranscript):
                yield event

    async def _finish(
        self,
        windows: AsyncIterator[WindowTranscript],
        plan: AudioPlan,
        clock: PreprocessClock,
        *,
        task: Task,
        language: str | None,
        punctuate: bool,
        summarize: bool,
    ) -> TranscriptionResult:
        started, preprocessed = clock.started, clock.preprocessed
        transcripts = [w async for w in windows]
        segments = stitch_segments(transcripts)
        transcribed = time.perf_counter()
        if punctuate or summarize:
            post = await self._postprocess(transcript_text(segments), punctuate, summarize)
        else:
            post = PostprocessResult.not_requested()
        finished = time.perf_counter()
        nodes = StageNodes(
            ingress=self.node_id,
            preprocess=plan.node_id,
            postprocess=post.node_id,
            asr_windows=dict(Counter(t.node_id for t in transcripts)),
        )
        timings = StageTimings(
            preprocess_s=preprocessed - started,
            asr_s=transcribed - preprocessed,
            postprocess_s=finished - transcribed,
            total_s=finished - started,
            windows=len(plan.windows),
            asr_windows_by_replica=dict(Counter(t.replica_id for t in transcripts)),
            asr_largest_batch=max((t.batch_size for t in transcripts), default=0),
            nodes=nodes,
        )
        self.metrics.record_document(timings, plan.duration_s)
        note_request(
            audio_s=round(plan.duration_s, 3),
            windows=timings.windows,
            **{
                f"{stage}_s": round(getattr(timings, f"{stage}_s"), 4)
                for stage in ("preprocess", "asr", "postprocess")
            },
        )
        language = (
            transcripts[0].language
            if transcripts
            else language or self.settings.asr.default_language or NO_SPEECH_LANGUAGE
        )
        return build_document(
            language=language,
            task=task,
            duration_s=plan.duration_s,
            segments=segments,
            post=post,
            timings=timings,
            models={"asr": self.settings.asr.model, "llm": self.settings.llm.model},
            request_id=_request_id(),
        )

    async def _postprocess(self, text: str, punctuate: bool, summarize: bool) -> PostprocessResult:
        """The LLM's punctuation and summary; when the LLM stage cannot answer (no live replica,
        at capacity), the transcript is not thrown away: the document goes out raw, saying why."""
        try:
            with _stage_errors():
                return await _once_more_if_replica_died(
                    lambda: self.stages["postprocess"].remote(text, punctuate, summarize), "post-processing"
                )
        except (StageUnavailable, Overloaded) as exc:
            log.warning("post-processing skipped: %s", exc.code)
            reason = "at capacity" if isinstance(exc, Overloaded) else "no live replica"
            result = PostprocessResult.llm_unavailable(reason, punctuate=punctuate, summarize=summarize)
            count_fallbacks(self.metrics.fallbacks, result)
            return result

    # --- operations ---------------------------------------------------------------------------

    @api.get(
        "/healthz",
        response_model=LivenessResponse,
        summary="Liveness: 200 while the ingress answers (it asks nothing of the stages)",
    )
    async def healthz(self) -> LivenessResponse:
        return LivenessResponse(status="ok")

    @api.get(
        "/readyz",
        response_model=HealthResponse,
        responses={503: {"model": HealthResponse}},
        summary="Readiness: 200 when every stage has a running replica with its model loaded",
    )
    async def readyz(self) -> JSONResponse:
        # Serve counts a replica RUNNING only once its __init__ (model load and warm-up) returned
        # and its check_health (a probe of the model) passes.
        stages = await self._stage_health()
        ok = all(s.running_replicas > 0 for s in stages.values())
        body = HealthResponse(status="ok" if ok else "unavailable", stages=stages)
        return JSONResponse(body.model_dump(), status_code=200 if ok else 503)

    @api.get(
        "/v1/stages",
        response_model=ModelsResponse,
        responses=_ERRORS,
        summary="Each stage's model, device, dtype, load time and replica count",
    )
    async def stages_info(self) -> ModelsResponse:
        with _stage_errors():
            health, infos = await asyncio.gather(
                self._stage_health(),
                asyncio.gather(*(handle.model_info.remote() for handle in self.stages.values())),
            )
        return ModelsResponse(
            stages={
                name: info.model_copy(update={"replicas": health[name].running_replicas})
                for name, info in zip(self.stages, infos)
            }
        )

    async def _stage_health(self) -> dict[str, StageHealth]:
        app_name = serve.get_replica_context().app_name
        status = await asyncio.to_thread(serve.status)
        deployments = status.applications[app_name].deployments
        result = {}
        for name in STAGES:
            d = deployments.get(name)
            running = int(d.replica_states.get("RUNNING", 0)) if d else 0
            result[name] = StageHealth(
                deployment=name, status=str(d.status.value) if d else "MISSING", running_replicas=running
            )
        return result
