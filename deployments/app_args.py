"""The Serve application's ``args``: :class:`AppArgs`, validated in one place.

They are the Ray-free pipeline settings plus what only the Serve side reads: the HTTP API
(:class:`ApiSettings`) and, per stage, the Serve deployment options (replicas or autoscaling,
``max_ongoing_requests``, ``ray_actor_options`` with fractional GPUs, ...). Everything about scale
and placement lives in the config file, none in code. Whatever can be known wrong before anything
is deployed fails validation here, naming the key: unknown keys, the ASR batching ``user_config``,
and GPU sharing that cannot work (``deployments.gpu_shares``). So ``serve deploy``, the plan
command, the manifest check and the tests all refuse the same configs with the same messages.

:func:`load_app_args` reads a Serve config file into them, through the same reader the CLI uses
(``pipeline.settings.serve_config_args``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from ray.serve.config import AutoscalingConfig, BackpressureConfig

from deployments.gpu_shares import STAGES, StageGpu, gpu_share_problems
from pipeline.settings import PipelineSettings, memory_fraction, serve_config_args


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class ApiSettings(_Strict):
    """The HTTP API: model names clients may ask for, and the API key."""

    model_config = ConfigDict(frozen=True)

    model_aliases: list[str] = ["whisper-1"]
    """Names accepted in a request's ``model`` besides the ASR model's own name (``asr.model``).
    Any other name is refused with 404 ``model_not_found``: a request never picks a checkpoint."""

    diarize_model_aliases: list[str] = ["gpt-4o-transcribe-diarize"]
    """Model names that transcribe with speakers, as OpenAI's ``gpt-4o-transcribe-diarize``: a
    request naming one runs the configured ASR model and the diarization stage, and may ask for
    ``response_format=diarized_json`` and known speakers. Listed in ``/v1/models`` only when the
    diarization stage is deployed."""

    api_key_env: str = "SPEECHGRAPH_API_KEY"
    """Environment variable holding the API key (several keys: comma-separated, for rotation).
    When it is set and not empty, every ``/v1`` request needs ``Authorization: Bearer KEY``;
    unset (local use) means no authentication. In Kubernetes it comes from a Secret."""

    max_prompt_chars: int = Field(4096, ge=0)
    """Longest ``prompt`` accepted, in characters (Whisper then keeps its last 223 tokens)."""


class RealtimeSettings(_Strict):
    """Live transcription sessions (``/v1/realtime``): their limits and how often they ask ASR.
    A session lives in the ingress replica that took its WebSocket (see ``deployments.realtime``)."""

    model_config = ConfigDict(frozen=True)

    max_sessions_per_replica: int = Field(64, ge=1)
    """Sessions one ingress replica holds at once; one more is refused with an ``error`` event and
    close code 1013 (try again later). Scale the ingress for more."""
    max_session_s: float = Field(3600.0, gt=0)
    """Longest a session may stay open, in wall seconds; then it is closed (1008) with an error."""
    idle_timeout_s: float = Field(60.0, gt=0)
    """A session that sends nothing for this long is closed (1008) with an error."""
    max_buffer_s: float = Field(120.0, gt=0)
    """Most audio a session may hold uncommitted (manual commit, or audio not yet through VAD);
    more closes the session (1008). Server VAD commits every turn by ``max_turn_s``."""
    max_message_bytes: int = Field(15 * 2**20, ge=1024)
    """Largest client event accepted, in bytes (OpenAI's limit for an append is 15 MiB); a larger
    one gets an ``error`` event and the session goes on."""
    partial_interval_s: float = Field(1.0, ge=0)
    """While a turn is spoken, the turn so far is transcribed after each this many seconds of new
    audio, and the text two passes agree on goes out as ``delta`` events. 0: no partial results."""
    vad_interval_s: float = Field(0.256, gt=0, le=2.0)
    """New audio gathered before it goes through VAD: the lag of speech start/stop events, and
    one preprocessing call per session per interval."""
    max_turn_s: float = Field(30.0, ge=5, le=30.0)
    """Longest turn: a turn reaching it is cut at its quietest frame of the last seconds
    (Whisper hears at most 30 s at a time)."""
    max_pending_turns: int = Field(4, ge=1)
    """Committed turns a session may have waiting for their transcript; past that the session
    stops reading audio until one is done (a client sending faster than real time slows down)."""


class AsrBatching(_Strict):
    """The ASR deployment's ``user_config``: batching, changeable at run time."""

    max_batch_size: int = Field(8, ge=1)
    """Most windows in one ``generate`` call."""
    batch_wait_timeout_s: float = Field(0.0, ge=0)
    """How long a batch waits to fill up before it runs anyway. 0: a batch is whatever queued
    while the previous one ran, so a lone window never waits (a 20 ms wait measured +55 ms per
    request on the CPU bench), and under load batches still fill from the queue."""


class StrictAutoscalingConfig(AutoscalingConfig):
    """Serve's autoscaling config, with unknown keys refused instead of ignored."""

    model_config = ConfigDict(extra="forbid")


class RayActorOptions(_Strict):
    num_cpus: float | None = Field(None, ge=0)
    """CPUs reserved per replica."""
    num_gpus: float | None = Field(None, ge=0)
    """GPUs reserved per replica; a fraction lets replicas share one GPU."""
    memory: int | None = Field(None, ge=0)
    """Heap memory reserved per replica, in bytes."""
    resources: dict[str, float] | None = None
    """Custom resources per replica (e.g. to pin a stage to a node group)."""
    accelerator_type: str | None = None
    """Ray accelerator type the replica needs (e.g. ``H100``)."""
    label_selector: dict[str, str] | None = None
    """Ray node labels the replica's node must have (e.g. ``{speechgraph.io/pool: cpu}`` keeps a
    stage on the CPU worker group; KubeRay sets a group's Ray labels from its ``labels``)."""
    fallback_strategy: list[dict[str, Any]] | None = None
    """Where else the replica may go when no node matches ``label_selector``: a list of
    ``{label_selector: {...}}``, tried in order."""
    runtime_env: dict[str, Any] | None = None
    """Ray runtime environment for the replica (env vars, ...)."""


class _StageOptions(_Strict):
    """Serve options of one stage, but for its ``user_config`` (whose shape is the stage's own)."""

    num_replicas: int | Literal["auto"] | None = None
    """Fixed replica count (leave out when ``autoscaling_config`` is given)."""
    autoscaling_config: StrictAutoscalingConfig | None = None
    """Serve autoscaling: min/max/initial replicas, target ongoing requests, delays."""
    max_ongoing_requests: int | None = Field(None, ge=1)
    """Requests a replica works on at once."""
    max_queued_requests: int | None = Field(None, ge=-1)
    """Requests a caller may queue before Serve refuses more (back-pressure); -1 is unlimited.
    Leave the ingress unlimited: its refusals come from Serve's proxy as plain text, while a
    stage's refusals reach the ingress, which answers them in the API's JSON error shape."""
    backpressure_config: BackpressureConfig | None = None
    """The answer to a refused request: ``status_code`` 503 (default) or 429, and
    ``retry_after_s`` for the ``Retry-After`` header (the ingress sends 2 s when unset)."""
    ray_actor_options: RayActorOptions = RayActorOptions()
    """Resources per replica."""
    health_check_period_s: float | None = Field(None, gt=0)
    health_check_timeout_s: float | None = Field(None, gt=0)
    graceful_shutdown_timeout_s: float | None = Field(None, ge=0)
    graceful_shutdown_wait_loop_s: float | None = Field(None, ge=0)

    def serve_options(self) -> dict[str, Any]:
        """Keyword arguments for ``Deployment.options``."""
        options = self.model_dump(exclude_none=True, exclude={"ray_actor_options", "autoscaling_config"})
        if self.autoscaling_config is not None:
            options["autoscaling_config"] = self.autoscaling_config.model_dump(exclude_unset=True)
        actor = self.ray_actor_options.model_dump(exclude_none=True)
        if actor:
            options["ray_actor_options"] = actor
        return options

    def replica_range(self) -> tuple[int, int]:
        """The fewest and most replicas Serve may run."""
        if self.autoscaling_config is not None:
            return self.autoscaling_config.min_replicas, self.autoscaling_config.max_replicas
        if self.num_replicas == "auto":  # Serve's defaults for "auto"
            return 1, 100
        n = self.num_replicas if self.num_replicas is not None else 1
        return n, n


class DeploymentOptions(_StageOptions):
    """Serve options of one stage; passed to ``Deployment.options``."""

    user_config: dict[str, Any] | None = None
    """Run-time settings passed to the replica's ``reconfigure``."""


class AsrDeploymentOptions(_StageOptions):
    """Serve options of the ASR stage, whose ``user_config`` is its batching."""

    user_config: AsrBatching | None = None
    """Batching, passed to the replicas' ``reconfigure``; changeable without a restart."""


class StageDeployments(_Strict):
    ingress: DeploymentOptions = DeploymentOptions()
    preprocess: DeploymentOptions = DeploymentOptions()
    asr: AsrDeploymentOptions = AsrDeploymentOptions()
    postprocess: DeploymentOptions = DeploymentOptions()
    diarization: DeploymentOptions | None = None
    """The diarization stage (``diarize=true``, speakers on the transcript). Left out, it is not
    deployed, and requests that ask for speakers get 400 ``diarization_not_deployed``."""
    share_gpu: list[Literal["ingress", "preprocess", "asr", "postprocess", "diarization"]] = []
    """Stages whose replicas are planned to share GPUs, one replica of each on a GPU (e.g.
    ``[asr, postprocess]``): their ``num_gpus`` must add up to at most 1.0, or the config is
    refused (see ``deployments.gpu_shares``)."""


class AppArgs(PipelineSettings):
    """The application's ``args``: pipeline settings plus the HTTP API and per-stage Serve options."""

    api: ApiSettings = ApiSettings()
    realtime: RealtimeSettings = RealtimeSettings()
    deployments: StageDeployments = StageDeployments()

    def pipeline_settings(self) -> PipelineSettings:
        """The Ray-free part, as the stages and the in-process CLI take it."""
        return PipelineSettings.model_validate(self.model_dump(exclude={"api", "realtime", "deployments"}))

    def gpu_stages(self) -> list[StageGpu]:
        """Every stage's GPU share, CPUs, memory fraction and replica range, in graph order."""
        result = []
        for stage in STAGES:
            options = getattr(self.deployments, stage)
            if options is None:  # a stage left out of the config is not deployed
                continue
            actor = options.ray_actor_options
            share = actor.num_gpus or 0.0
            fraction, kind = None, "-"
            if share and stage == "asr":
                fraction, kind = memory_fraction(share, self.asr.gpu_memory_fraction), "torch cap"
            elif share and stage == "postprocess" and self.llm.backend == "vllm":
                fraction = memory_fraction(share, self.llm.gpu_memory_fraction, self.llm.gpu_memory_margin)
                kind = "vLLM utilization"
            elif share and stage == "postprocess":
                fraction, kind = memory_fraction(share, self.llm.gpu_memory_fraction), "torch cap"
            num_cpus = actor.num_cpus if actor.num_cpus is not None else 1.0
            result.append(StageGpu(stage, share, num_cpus, fraction, kind, *options.replica_range()))
        return result

    @model_validator(mode="after")
    def _gpu_sharing_works(self) -> AppArgs:
        problems = gpu_share_problems(self.gpu_stages(), self.deployments.share_gpu, self.llm.backend)
        if problems:
            raise ValueError("The GPU sharing plan cannot work:\n- " + "\n- ".join(problems))
        return self


def load_app_args(path: str | Path) -> AppArgs:
    """The validated ``args`` of the Serve config file at ``path`` (its first application)."""
    return AppArgs.model_validate(serve_config_args(path))
