"""The shipped Serve configs are valid for Serve and for the app builder; bad args fail at deploy
time naming the key."""

from __future__ import annotations

import pytest
import yaml
from conftest import ROOT, tiny_app_args
from pydantic import ValidationError
from ray.serve._private.api import call_user_app_builder_with_args_if_necessary
from ray.serve.schema import ServeDeploySchema

from deployments.app import build_app
from deployments.app_args import AppArgs, load_app_args
from pipeline.settings import load_pipeline_settings, serve_config_args

CONFIGS = [
    "serve_config.yaml",
    "configs/cpu.yaml",
    "configs/tiny.yaml",
    "configs/cpu-cluster.yaml",
    "configs/autoscaling-demo.yaml",
]


@pytest.mark.parametrize("name", CONFIGS)
def test_config_is_a_valid_serve_config_and_valid_app_args(name):
    raw = yaml.safe_load((ROOT / name).read_text())
    schema = ServeDeploySchema.model_validate(raw)
    app = schema.applications[0]
    assert app.import_path == "deployments.app:build_app"
    assert serve_config_args(ROOT / name) == app.args, "the reader takes what Serve takes"
    args = load_app_args(ROOT / name)
    for stage in ("ingress", "preprocess", "asr", "postprocess"):
        options = getattr(args.deployments, stage)
        assert options.autoscaling_config is not None or options.num_replicas is not None, stage
    # The CLI reads the same file.
    assert load_pipeline_settings(ROOT / name) == args.pipeline_settings()


def test_production_graph_shares_gpus_by_fraction_and_autoscales():
    d = load_app_args(ROOT / "serve_config.yaml").deployments
    assert not d.preprocess.ray_actor_options.num_gpus
    asr, llm = d.asr.ray_actor_options.num_gpus, d.postprocess.ray_actor_options.num_gpus
    assert 0 < asr < 1 and 0 < llm < 1 and asr + llm <= 1.0
    for stage in (d.ingress, d.preprocess, d.asr, d.postprocess):
        assert stage.autoscaling_config is not None
        assert stage.autoscaling_config.max_replicas > stage.autoscaling_config.min_replicas


def test_tiny_preset_needs_no_downloads():
    args = AppArgs.model_validate(tiny_app_args())
    assert args.asr.model.startswith("tiny-random") and args.llm.model == "tiny-random"


@pytest.mark.parametrize(
    "path,bad",
    [
        (("asr",), {"modle": "x"}),
        (("deployments", "asr"), {"num_replica": 2}),
        (("deployments", "asr", "autoscaling_config"), {"max_replica": 3}),
        (("deployments", "postprocess", "ray_actor_options"), {"num_gpu": 0.5}),
        (("deployments", "asr", "user_config"), {"max_batch": 4}),
        (("api",), {"model_alias": ["x"]}),
        (("llm",), {"backend": "onnx"}),
        (("audio",), {"window_s": 45}),
    ],
)
def test_bad_args_fail_at_deploy_time_naming_the_key(path, bad):
    args = tiny_app_args()
    node = args
    for key in path:
        node = node.setdefault(key, {})
    node.update(bad)
    with pytest.raises(ValidationError) as info:
        call_user_app_builder_with_args_if_necessary(build_app, args)  # what `serve deploy` runs
    assert ".".join((*path, next(iter(bad)))) in str(info.value)


def test_bad_batching_user_config_fails_at_deploy_time():
    args = tiny_app_args()
    args["deployments"]["asr"]["user_config"] = {"max_batch": 4}
    with pytest.raises(ValidationError, match="max_batch"):
        call_user_app_builder_with_args_if_necessary(build_app, args)


def test_stage_options_reach_serve():
    app = build_app(tiny_app_args())
    ingress = app._bound_deployment
    asr = ingress.init_args[1]._bound_deployment  # (preprocess, asr, postprocess, settings, api)
    config = asr._deployment_config
    assert config.autoscaling_config.max_replicas == 2
    assert config.max_ongoing_requests == 32
    assert config.user_config == {"max_batch_size": 8, "batch_wait_timeout_s": 0}
    assert asr.ray_actor_options["num_cpus"] == 0.5


def test_api_settings_reach_the_ingress_and_not_the_pipeline(tmp_path):
    args = tiny_app_args()
    args["api"] = {"model_aliases": ["whisper-1", "speech"], "max_prompt_chars": 100}
    args["realtime"] = {"idle_timeout_s": 5}
    *_stages, settings, api, realtime, diarization = build_app(args)._bound_deployment.init_args
    assert diarization is not None, "tiny.yaml deploys the diarization stage"
    assert api.model_aliases == ["whisper-1", "speech"] and api.max_prompt_chars == 100
    assert realtime.idle_timeout_s == 5
    assert not any(hasattr(settings, key) for key in ("api", "realtime", "deployments"))
    path = tmp_path / "config.yaml"
    path.write_text(
        yaml.safe_dump({"applications": [{"import_path": "deployments.app:build_app", "args": args}]})
    )
    assert load_pipeline_settings(path) == settings, "the CLI leaves out what only Serve reads"


def test_the_diarization_stage_is_deployed_only_when_configured():
    args = tiny_app_args()
    del args["deployments"]["diarization"]
    *_, diarization = build_app(args)._bound_deployment.init_args
    assert diarization is None
    assert "diarization" not in [s.stage for s in AppArgs.model_validate(args).gpu_stages()]
    assert "diarization" in [s.stage for s in AppArgs.model_validate(tiny_app_args()).gpu_stages()]


@pytest.mark.parametrize("config", [{}, {"applications": []}, {"applications": [{"args": [1]}]}])
def test_a_file_without_app_args_is_explained(tmp_path, config):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ValueError, match=r"config\.yaml: .*(needs 'applications:'|not a mapping)"):
        serve_config_args(path)
