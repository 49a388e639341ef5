"""The ingress (driver): the HTTP routes, each a few lines over the graph.

What each route takes is a form model (``deployments.api_requests``); how it runs is the graph
(``deployments.graph``); how it answers is ``deployments.responses``; errors take one shape
everywhere (``deployments.http_errors``, handlers in ``deployments.http_app``). The ingress
process holds no model: it imports neither torch nor transformers (``tests/test_layering.py``).
"""

# No `from __future__ import annotations`: FastAPI reads the route signatures at runtime.

import asyncio
import logging
import os
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from pathlib import Path
from typing import Annotated, Any

import ray
from fastapi import Query, WebSocket
from fastapi.responses import JSONResponse, Response
from ray import serve
from ray.serve.schema import ReplicaState

from deployments.api_key import api_keys_from
from deployments.api_requests import (
    MULTIPART,
    DiarizationForm,
    TranscribeForm,
    TranscriptionForm,
    TranslationForm,
)
from deployments.app_args import ApiSettings, RealtimeSettings
from deployments.graph import PlannedAudio, TranscriptionGraph
from deployments.graph_request import GraphEvent, TranscriptionRequest
from deployments.http_app import ERROR_RESPONSES, api, openapi_with_api_key, request_id
from deployments.known_speakers import diarizes
from deployments.metrics import IngressMetrics, count_fallbacks
from deployments.openai_protocol import ModelCard, ModelList, TranscriptionJson, TranscriptionVerboseJson
from deployments.protocol import HealthResponse, LivenessResponse, ModelsResponse, StageHealth
from deployments.realtime import RealtimeSessions
from deployments.request_log import note_request
from deployments.responses import (
    DOCUMENT_FORMAT,
    DocumentFormat,
    document_answer,
    document_events,
    event_stream,
    openai_answer,
    openai_events,
)
from deployments.served_models import ServedModels
from deployments.speaker_branch import diarize_audio, voice_prints
from deployments.stage_calls import stage_errors
from pipeline.decoding import DecodeOptions
from pipeline.diarization import SpeakerCount
from pipeline.errors import InvalidParameter
from pipeline.rttm import write_rttm
from pipeline.schemas import DiarizationResult, TranscriptionResult
from pipeline.settings import PipelineSettings

log = logging.getLogger("ray.serve")

_STREAM = {"text/event-stream": {"schema": {"type": "string"}}}
_DOCUMENT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": _STREAM, "description": "The document, or (stream=true) a stream of events."},
    **ERROR_RESPONSES,
}
_OPENAI_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "model": TranscriptionJson | TranscriptionVerboseJson,
        "content": {"text/plain": {"schema": {"type": "string"}}, **_STREAM},
        "description": "The transcript in the asked response_format, or a stream of events.",
    },
    **ERROR_RESPONSES,
}


def _openapi_schema() -> dict[str, Any]:
    """The schema of :data:`api` as this module declares its routes. Serve answers requests with a
    pickled copy of the app, on which FastAPI's markers of unset fields no longer compare as
    unset (every form would show an empty example); this function is pickled by reference, so
    the replica builds the schema from this module's own app."""
    return openapi_with_api_key(api)


api.openapi = _openapi_schema  # type: ignore[method-assign]


@serve.deployment(name="ingress")
@serve.ingress(api)
class IngressDeployment:
    def __init__(
        self,
        preprocess,
        asr,
        postprocess,
        settings: PipelineSettings,
        api_settings: ApiSettings,
        realtime: RealtimeSettings,
        diarization=None,
    ):
        self.stages = {"preprocess": preprocess, "asr": asr, "postprocess": postprocess}
        if diarization is not None:
            self.stages["diarization"] = diarization
        self.settings = settings
        self.api_settings = api_settings
        self.api_keys = api_keys_from(os.environ.get(api_settings.api_key_env))
        self.models = ServedModels(settings.asr, api_settings, diarizing=diarization is not None)
        self.started_at = int(time.time())
        self.metrics = IngressMetrics()
        self.graph = TranscriptionGraph(
            preprocess,
            asr,
            postprocess,
            settings,
            put=ray.put,
            diarization=diarization,
            node_id=ray.get_runtime_context().get_node_id(),
            on_llm_fallback=lambda result: count_fallbacks(self.metrics.fallbacks, result),
        )
        self.live = RealtimeSessions(preprocess, asr, realtime, settings.asr.default_language)
        keys = "required" if self.api_keys else "not required"
        log.info("ingress ready; models %s; API key %s", self.models.names, keys)

    # --- the document route -------------------------------------------------------------------

    @api.post(
        "/v1/transcribe",
        response_model=TranscriptionResult,
        responses=_DOCUMENT_RESPONSES,
        summary="Transcribe an audio file (segments, punctuated text, summary)",
    )
    async def transcribe(
        self,
        form: Annotated[TranscribeForm, MULTIPART],
        format: Annotated[DocumentFormat, Query(description=DOCUMENT_FORMAT)] = "json",
    ) -> Any:
        form.check_format(format)
        request = TranscriptionRequest(
            form.language,
            form.decode_options(self.models.adapter(form.model)),
            form.punctuate,
            form.summarize,
            request_id(),
            speakers=self._speakers(form.speaker_count()),
            speakers_by_channel=form.multichannel,
            translate_to=form.translate_to,
        )
        events = self._run(await self._audio(form, request), request)
        if form.stream:
            return event_stream(document_events(events), openai=False, request_id=request.request_id)
        return await document_answer(events, format)

    # --- OpenAI's audio API -------------------------------------------------------------------

    @api.post(
        "/v1/audio/transcriptions",
        responses=_OPENAI_RESPONSES,
        response_model=None,
        summary="Transcribe audio (OpenAI-compatible)",
    )
    async def openai_transcriptions(self, form: Annotated[TranscriptionForm, MULTIPART]) -> Response:
        options = form.decode_options(self._prompt(form.prompt), self.models.adapter(form.model))
        return await self._openai(form, form.language, options, form.granularities, form.stream)

    @api.post(
        "/v1/audio/translations",
        responses=_OPENAI_RESPONSES,
        response_model=None,
        summary="Translate audio into English text (OpenAI-compatible)",
    )
    async def openai_translations(self, form: Annotated[TranslationForm, MULTIPART]) -> Response:
        options = form.decode_options(self._prompt(form.prompt), self.models.adapter(form.model))
        return await self._openai(form, None, options, frozenset(), stream=False)

    async def _openai(
        self,
        form: TranscriptionForm | TranslationForm,
        language: str | None,
        options: DecodeOptions,
        granularities: frozenset[str],
        stream: bool,
    ) -> Response:
        model = self.models.resolve(form.model)
        known = form.known_speakers() if isinstance(form, TranscriptionForm) else {}
        diarize = diarizes(model, self.api_settings.diarize_model_aliases, form.response_format, known)
        request = TranscriptionRequest(
            language,
            options,
            form.punctuate,
            form.summarize,
            request_id(),
            vad=form.vad_options(self.settings.audio.vad_options()),
            speakers=self._speakers(SpeakerCount() if diarize else None),
            known_voices=await voice_prints(self.stages["diarization"], known) if known else None,
            translate_to=form.translate_to,
        )
        events = self._run(await self._audio(form, request), request)
        if stream:
            named = openai_events(
                events,
                punctuate=form.punctuate,
                summarize=form.summarize,
                diarized=form.response_format == "diarized_json",
                translated_to=form.translate_to,
            )
            return event_stream(named, openai=True, request_id=request.request_id)
        return await openai_answer(
            events,
            form.response_format,
            granularities=granularities,
            punctuate=form.punctuate,
            summarize=form.summarize,
            logprobs=options.logprobs,
        )

    # --- speakers alone ----------------------------------------------------------------------

    @api.post(
        "/v1/audio/diarization",
        response_model=DiarizationResult,
        responses={
            200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Speaker turns."},
            **ERROR_RESPONSES,
        },
        summary="Who spoke when: speaker turns without a transcript (json or RTTM)",
    )
    async def diarization(self, form: Annotated[DiarizationForm, MULTIPART]) -> Any:
        count = form.speaker_count()
        self._speakers(count)
        request = TranscriptionRequest(
            None,
            DecodeOptions(),
            False,
            False,
            request_id(),
            speakers=count,
            speakers_by_channel=form.multichannel,
        )
        audio = await self._audio(form, request)
        result = await diarize_audio(
            self.stages["diarization"], audio, count, request.request_id, by_channel=form.multichannel
        )
        note_request(audio_s=result.duration_s, speakers=len(result.speakers))
        if form.response_format == "rttm":
            file_id = Path(form.audio_file().filename or "audio").stem or "audio"
            return Response(write_rttm(result.turns, file_id), media_type="text/plain")
        return result

    @api.get(
        "/v1/models",
        response_model=ModelList,
        responses=ERROR_RESPONSES,
        summary="The model names requests may use (OpenAI's list shape)",
    )
    async def list_models(self) -> ModelList:
        return ModelList(data=[self._card(name) for name in self.models.names])

    @api.get(
        "/v1/models/{model_id:path}",
        response_model=ModelCard,
        responses=ERROR_RESPONSES,
        summary="One model name (404 model_not_found when the service does not serve it)",
    )
    async def get_model(self, model_id: str) -> ModelCard:
        return self._card(self.models.resolve(model_id))

    # --- the graph, for every route -----------------------------------------------------------

    async def _audio(
        self,
        form: TranscribeForm | TranscriptionForm | TranslationForm | DiarizationForm,
        request: TranscriptionRequest,
    ) -> PlannedAudio:
        upload = await self.graph.upload(form.audio_file())
        self.metrics.received_bytes.inc(upload.size)
        return await self.graph.plan(upload, request.vad, by_channel=request.speakers_by_channel)

    async def _run(self, audio: PlannedAudio, request: TranscriptionRequest) -> AsyncGenerator[GraphEvent]:
        """The graph's events; the document is counted in the metrics and the request's log line."""
        async with aclosing(self.graph.run(audio, request)) as events:
            async for event in events:
                if isinstance(event, TranscriptionResult):
                    self.metrics.record_document(event.timings, event.duration_s, event.speakers is not None)
                    stage_seconds = {
                        f"{stage}_s": round(getattr(event.timings, f"{stage}_s"), 4)
                        for stage in ("preprocess", "asr", "postprocess")
                    }
                    note_request(
                        audio_s=round(event.duration_s, 3),
                        windows=event.timings.windows,
                        **stage_seconds,
                    )
                yield event

    def _speakers(self, count: SpeakerCount | None) -> SpeakerCount | None:
        if count is not None and "diarization" not in self.stages:
            raise InvalidParameter(
                "Diarization is not deployed in this service. Send the request without diarize, or "
                "ask its operator to add deployments.diarization to the Serve config.",
                "diarize",
                "diarization_not_deployed",
            )
        return count

    def _card(self, name: str) -> ModelCard:
        return ModelCard(id=name, created=self.started_at)

    def _prompt(self, prompt: str | None) -> str | None:
        limit = self.api_settings.max_prompt_chars
        if prompt is not None and len(prompt) > limit:
            raise InvalidParameter(
                f"The prompt is {len(prompt)} characters long; the limit is {limit}. Send the end "
                "of the previous text only.",
                "prompt",
            )
        return prompt or None

    # --- live audio: OpenAI's Realtime API, transcription sessions ----------------------------

    @api.websocket("/v1/realtime")
    async def realtime(self, websocket: WebSocket, intent: str | None = None) -> None:
        await self.live.serve(websocket, intent)

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
        responses=ERROR_RESPONSES,
        summary="Each stage's model, device, dtype, load time and replica count",
    )
    async def stages_info(self) -> ModelsResponse:
        with stage_errors():
            health, infos = await asyncio.gather(
                self._stage_health(),
                asyncio.gather(*(handle.model_info.remote() for handle in self.stages.values())),
            )
        return ModelsResponse(
            stages={
                name: info.model_copy(update={"replicas": health[name].running_replicas})
                for name, info in zip(self.stages, infos, strict=True)
            }
        )

    async def _stage_health(self) -> dict[str, StageHealth]:
        app_name = serve.get_replica_context().app_name
        status = await asyncio.to_thread(serve.status)
        deployments = status.applications[app_name].deployments
        result = {}
        for name in self.stages:
            d = deployments.get(name)
            running = int(d.replica_states.get(ReplicaState.RUNNING, 0)) if d else 0
            state = str(d.status.value) if d else "MISSING"
            result[name] = StageHealth(deployment=name, status=state, running_replicas=running)
        return result
