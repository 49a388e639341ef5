"""The Serve application builder: ``deployments.app:build_app``.

Its ``args`` are :class:`~deployments.app_args.AppArgs` (the pipeline settings, the HTTP API, and
per stage the Serve deployment options), validated before the builder runs; this module only binds
the deployments into the graph with them (diarization only when the config has it).
"""

# No `from __future__ import annotations` here: Serve validates the builder's args against the
# parameter's annotation only when it is a class, not a string.

from ray.serve import Application, Deployment

from deployments.app_args import AppArgs
from deployments.asr import AsrDeployment
from deployments.diarization import DiarizationDeployment
from deployments.ingress import IngressDeployment
from deployments.postprocess import PostprocessDeployment
from deployments.preprocess import PreprocessDeployment


def build_app(args: AppArgs) -> Application:
    if isinstance(args, dict):  # called directly with a config's dict rather than by Serve
        args = AppArgs.model_validate(args)
    settings = args.pipeline_settings()
    stages = args.deployments
    preprocess = _deployment(PreprocessDeployment).options(**stages.preprocess.serve_options())
    asr = _deployment(AsrDeployment).options(**stages.asr.serve_options())
    postprocess = _deployment(PostprocessDeployment).options(**stages.postprocess.serve_options())
    ingress = _deployment(IngressDeployment).options(**stages.ingress.serve_options())
    diarization = None
    if stages.diarization is not None:
        diarization = (
            _deployment(DiarizationDeployment)
            .options(**stages.diarization.serve_options())
            .bind(settings.diarization, settings.audio)
        )
    return ingress.bind(
        preprocess.bind(settings.audio),
        asr.bind(settings.asr),
        postprocess.bind(settings.llm),
        settings,
        args.api,
        args.realtime,
        diarization,
    )


def _deployment(stage: object) -> Deployment:
    """``stage`` as ``@serve.deployment`` left it: a Deployment (type checkers keep a decorated
    class's own type, so they are told here)."""
    if not isinstance(stage, Deployment):
        raise TypeError(f"{stage!r} is not a Serve deployment; decorate it with @serve.deployment")
    return stage
