"""The ingress (driver): the HTTP API, composing the stages through DeploymentHandles.

The driver never holds audio samples: the preprocessor returns an :class:`AudioPlan` of
``ObjectRef``s, and each ref is passed on, unresolved, to an ASR call (Ray resolves a top-level
ref argument in the ASR replica, straight from the object store).
"""

# No `from __future__ import annotations`: FastAPI reads the route signatures at runtime.

import asyncio
import logging
import time
from typing import Annotated

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from ray import serve
from ray.exceptions import RayActorError, RayTaskError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError
from ray.serve.handle import DeploymentHandle
from starlette.exceptions import HTTPException

from deployments.preprocess import AudioPlan, Rejected
from deployments.protocol import ErrorResponse, HealthResponse, ModelsResponse, StageHealth, error_body
from deployments.upload_limit import UploadSizeLimit
from pipeline.document import build_document, stitch_segments, transcript_text
from pipeline.errors import InvalidParameter, SpeechgraphError
from pipeline.postprocess import not_requested
from pipeline.schemas import StageTimings, Task, TranscriptionResult
from pipeline.settings import PipelineSettings
from pipeline.whisper import normalize_language

log = logging.getLogger("ray.serve")

STAGES = ("preprocess", "asr", "postprocess")
RETRY_AFTER_S = 2

api = FastAPI(
    title="speechgraph",
    description="Speech-to-text as an autoscaling Ray Serve graph: preprocess -> Whisper -> LLM.",
    version="0.1.0",
)


def _max_upload_bytes() -> int:
    # Serve runs a frozen copy of `api` in the replica, so the limit is read from the replica's
    # deployment object rather than stored on the app.
    return serve.get_replica_context().servable_object.settings.audio.max_upload_bytes


api.add_middleware(UploadSizeLimit, max_bytes=_max_upload_bytes)

_ERRORS = {status: {"model": ErrorResponse} for status in (400, 404, 413, 415, 422, 503)}


def _cause(exc: BaseException) -> BaseException:
    """The exception a stage raised, without Ray's wrapper around it."""
    return exc.cause if isinstance(exc, RayTaskError) and exc.cause is not None else exc


@api.exception_handler(SpeechgraphError)
async def _speechgraph_error(request: Request, exc: SpeechgraphError) -> JSONResponse:
    err = _cause(exc)
    return JSONResponse(error_body(str(err.args[0]), code=err.code, type=err.type, param=err.param),
                        status_code=err.status)


@api.exception_handler(RequestValidationError)
async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0]
    param = str(first["loc"][-1]) if first.get("loc") else None
    return JSONResponse(error_body(f"Invalid parameter {param!r}: {first['msg']}.",
                                   code="invalid_parameter", param=param), status_code=400)


@api.exception_handler(HTTPException)
async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return JSONResponse(error_body(str(exc.detail), code=code), status_code=exc.status_code,
                        headers=getattr(exc, "headers", None))


@api.exception_handler(BackPressureError)
async def _overloaded(request: Request, exc: BackPressureError) -> JSONResponse:
    return JSONResponse(error_body("The service is at capacity. Retry after a short wait.",
                                   code="overloaded", type="overloaded_error"),
                        status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)})


@api.exception_handler(RayActorError)
@api.exception_handler(DeploymentUnavailableError)
async def _stage_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.warning("stage unavailable: %s", exc.__class__.__name__)
    return JSONResponse(error_body("A pipeline stage is restarting or unavailable. Retry after a "
                                   "short wait.", code="stage_unavailable", type="server_error"),
                        status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)})


@api.exception_handler(Exception)
async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    # A bug, not the client's fault: still answer in the API's error shape, with the request id.
    return JSONResponse(error_body(f"Internal error ({exc.__class__.__name__}) in request "
                                   f"{_request_id()}; the replica logs carry that id.",
                                   code="internal_error", type="server_error"), status_code=500)


def _request_id() -> str | None:
    # Serve assigns every HTTP request an id (also returned as the X-Request-Id header).
    return serve.context._get_serve_request_context().request_id or None


@serve.deployment(name="ingress")
@serve.ingress(api)
class IngressDeployment:
    def __init__(self, preprocess: DeploymentHandle, asr: DeploymentHandle,
                 postprocess: DeploymentHandle, settings: PipelineSettings):
        self.stages = {"preprocess": preprocess, "asr": asr, "postprocess": postprocess}
        self.settings = settings

    @api.post("/v1/transcribe", response_model=TranscriptionResult, responses=_ERRORS,
              summary="Transcribe an audio file (segments, punctuated text, summary)")
    async def transcribe(
        self,
        file: Annotated[UploadFile | None, File(description="Audio file (wav, flac, mp3, ogg/opus, m4a, webm).")] = None,
        language: Annotated[str | None, Form(description="Language code; detected when left out.")] = None,
        task: Annotated[Task, Form(description="transcribe, or translate into English.")] = "transcribe",
        punctuate: Annotated[bool, Form(description="Restore punctuation and casing with the LLM.")] = True,
        summarize: Annotated[bool, Form(description="Write a summary with the LLM.")] = True,
    ) -> TranscriptionResult:
        language = normalize_language(language)
        if file is None:
            raise InvalidParameter("The request has no 'file' part. Send the audio as "
                                   "multipart/form-data in a field named 'file'.", "file", "missing_file")
        data = await file.read()
        if not data:
            raise InvalidParameter(f"The uploaded file {file.filename!r} is empty (0 bytes). "
                                   "Send an audio file.", "file", "empty_file")
        return await self._run(data, language=language, task=task,
                               punctuate=punctuate, summarize=summarize)

    async def _run(self, data: bytes, *, language: str | None, task: Task, punctuate: bool,
                   summarize: bool) -> TranscriptionResult:
        started = time.perf_counter()
        plan: AudioPlan | Rejected = await self.stages["preprocess"].remote(data)
        if isinstance(plan, Rejected):
            raise plan.error
        preprocessed = time.perf_counter()

        asr = self.stages["asr"]
        language = language or self.settings.asr.default_language
        if language is None:
            language = await asr.detect_language.remote(plan.refs[0])
        windows = await asyncio.gather(*(asr.transcribe.remote(ref, window, language, task)
                                         for ref, window in zip(plan.refs, plan.windows)))
        segments = stitch_segments(windows)
        transcribed = time.perf_counter()

        if punctuate or summarize:
            post = await self.stages["postprocess"].remote(transcript_text(segments), punctuate, summarize)
        else:
            post = not_requested()
        finished = time.perf_counter()
        timings = StageTimings(preprocess_s=preprocessed - started, asr_s=transcribed - preprocessed,
                               postprocess_s=finished - transcribed, total_s=finished - started)
        return build_document(language=language, task=task, duration_s=plan.duration_s,
                              segments=segments, post=post, timings=timings,
                              models={"asr": self.settings.asr.model, "llm": self.settings.llm.model},
                              request_id=_request_id())

    @api.get("/healthz", response_model=HealthResponse, responses={503: {"model": HealthResponse}},
             summary="200 when every stage has a running replica")
    async def healthz(self) -> JSONResponse:
        stages = await self._stage_health()
        ok = all(s.running_replicas > 0 for s in stages.values())
        body = HealthResponse(status="ok" if ok else "unavailable", stages=stages)
        return JSONResponse(body.model_dump(), status_code=200 if ok else 503)

    @api.get("/v1/models", response_model=ModelsResponse,
             summary="Each stage's model, device, dtype, load time and replica count")
    async def models(self) -> ModelsResponse:
        health, infos = await asyncio.gather(
            self._stage_health(),
            asyncio.gather(*(handle.model_info.remote() for handle in self.stages.values())))
        return ModelsResponse(stages={
            name: info.model_copy(update={"replicas": health[name].running_replicas})
            for name, info in zip(self.stages, infos)})

    async def _stage_health(self) -> dict[str, StageHealth]:
        app_name = serve.get_replica_context().app_name
        status = await asyncio.to_thread(serve.status)
        deployments = status.applications[app_name].deployments
        result = {}
        for name in STAGES:
            d = deployments.get(name)
            running = int(d.replica_states.get("RUNNING", 0)) if d else 0
            result[name] = StageHealth(deployment=name, status=str(d.status.value) if d else "MISSING",
                                       running_replicas=running)
        return result

