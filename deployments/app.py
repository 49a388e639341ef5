"""The Serve application builder: ``deployments.app:build_app``.

Its ``args`` are :class:`AppArgs`: the Ray-free pipeline settings plus, per stage, the Serve
deployment options (replicas or autoscaling, ``max_ongoing_requests``, ``ray_actor_options`` with
fractional GPUs, ...). Everything about scale and placement lives in the config file, none in
code, and an unknown or invalid key fails the deploy with a message naming it.
"""

# No `from __future__ import annotations` here: Serve validates the builder's args against the
# parameter's annotation only when it is a class, not a string.

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from ray.serve import Application
from ray.serve.config import AutoscalingConfig, BackpressureConfig

from deployments.asr import AsrBatching, AsrDeployment
from deployments.gpu_plan import check_gpu_plan
from deployments.ingress import IngressDeployment
from deployments.postprocess import PostprocessDeployment
from deployments.preprocess import PreprocessDeployment
from pipeline.settings import PipelineSettings


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


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


class DeploymentOptions(_Strict):
    """Serve options of one stage; passed to ``Deployment.options``."""

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
    user_config: dict[str, Any] | None = None
    """Run-time settings passed to the replica's ``reconfigure`` (ASR: batching)."""
    health_check_period_s: float | None = Field(None, gt=0)
    health_check_timeout_s: float | None = Field(None, gt=0)
    graceful_shutdown_timeout_s: float | None = Field(None, ge=0)
    graceful_shutdown_wait_loop_s: float | None = Field(None, ge=0)

    def serve_options(self) -> dict[str, Any]:
        options = self.model_dump(exclude_none=True, exclude={"ray_actor_options", "autoscaling_config"})
        if self.autoscaling_config is not None:
            options["autoscaling_config"] = self.autoscaling_config.model_dump(exclude_unset=True)
        actor = self.ray_actor_options.model_dump(exclude_none=True)
        if actor:
            options["ray_actor_options"] = actor
        return options


class StageDeployments(_Strict):
    ingress: DeploymentOptions = DeploymentOptions()
    preprocess: DeploymentOptions = DeploymentOptions()
    asr: DeploymentOptions = DeploymentOptions()
    postprocess: DeploymentOptions = DeploymentOptions()
    share_gpu: list[Literal["ingress", "preprocess", "asr", "postprocess"]] = []
    """Stages whose replicas are planned to share GPUs, one replica of each on a GPU (e.g.
    ``[asr, postprocess]``): their ``num_gpus`` must add up to at most 1.0, or the deploy is
    refused (see ``deployments.gpu_plan``)."""


class AppArgs(PipelineSettings):
    """The application's ``args``: pipeline settings plus per-stage Serve options."""

    deployments: StageDeployments = StageDeployments()

    def pipeline_settings(self) -> PipelineSettings:
        return PipelineSettings.model_validate(self.model_dump(exclude={"deployments"}))


def build_app(args: AppArgs) -> Application:
    if isinstance(args, dict):  # called directly rather than by Serve
        args = AppArgs.model_validate(args)
    settings = args.pipeline_settings()
    stages = args.deployments
    AsrBatching.model_validate(stages.asr.user_config or {})  # fail at deploy time, naming the key
    check_gpu_plan(args)  # GPU shares and memory fractions that cannot work fail here, not at load
    preprocess = PreprocessDeployment.options(**stages.preprocess.serve_options()).bind(settings.audio)
    asr = AsrDeployment.options(**stages.asr.serve_options()).bind(settings.asr)
    postprocess = PostprocessDeployment.options(**stages.postprocess.serve_options()).bind(settings.llm)
    return IngressDeployment.options(**stages.ingress.serve_options()).bind(
        preprocess, asr, postprocess, settings
    )
