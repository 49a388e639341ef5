"""Shared fixtures: the shared audio clips, settings from the shipped configs, and a real local Ray
cluster serving the graph over real HTTP on 127.0.0.1:8000."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from pipeline.settings import load_pipeline_settings, serve_config_args

ROOT = Path(__file__).resolve().parent.parent
SHARED_AUDIO = ROOT.parent / "shared" / "fixtures" / "audio"
BASE_URL = "http://127.0.0.1:8000"

sys.path.insert(0, str(Path(__file__).parent))  # tests/audio_files.py


def clips() -> list[dict]:
    return json.loads((SHARED_AUDIO / "manifest.json").read_text())["clips"]


def tiny_app_args() -> dict:
    """The ``args`` of configs/tiny.yaml, as shipped (a fresh dict, free to edit before serving)."""
    return serve_config_args(ROOT / "configs" / "tiny.yaml")


def tiny_settings():
    """The pipeline settings of configs/tiny.yaml, as the CLI reads them."""
    return load_pipeline_settings(ROOT / "configs" / "tiny.yaml")


# Limits small enough to test cheaply; ASR and LLM take half of one (logical) GPU each.
TEST_MAX_DURATION_S = 120
TEST_MAX_UPLOAD_MB = 2


def graph_args(asr_replicas: int | None = None, diarization: bool = False) -> dict:
    """The tiny config with the test limits; with ``asr_replicas``, that many ASR replicas (no
    autoscaling) sharing ASR's half of the GPU. The diarization stage only with ``diarization``:
    the modules that do not diarize start one process fewer."""
    args = tiny_app_args()
    args["audio"].update(max_duration_s=TEST_MAX_DURATION_S, max_upload_mb=TEST_MAX_UPLOAD_MB)
    d = args["deployments"]
    if not diarization:
        d.pop("diarization", None)
    d["asr"]["ray_actor_options"]["num_gpus"] = 0.5
    d["postprocess"]["ray_actor_options"]["num_gpus"] = 0.5
    if asr_replicas is not None:
        d["asr"].pop("autoscaling_config", None)
        d["asr"]["num_replicas"] = asr_replicas
        d["asr"]["ray_actor_options"]["num_gpus"] = 0.5 / asr_replicas
    return args


def second_app_args(api_keys: dict[str, str] | None = None) -> dict:
    """:func:`graph_args` for a second application beside the module's graph: one replica per
    stage, a tenth of a CPU each and no GPU share (the first application holds the one logical
    GPU). ``api_keys``: ``{ENV_NAME: "key1,key2"}``, the API keys the ingress reads from its
    environment."""
    args = graph_args()
    d = args["deployments"]
    for stage in ("ingress", "preprocess", "asr", "postprocess"):
        d[stage].pop("autoscaling_config", None)
        d[stage]["num_replicas"] = 1
        d[stage]["ray_actor_options"].update(num_cpus=0.1, num_gpus=0)
    for env, keys in (api_keys or {}).items():
        args["api"] = {"api_key_env": env}
        d["ingress"]["ray_actor_options"]["runtime_env"] = {"env_vars": {env: keys}}
    return args


@contextlib.contextmanager
def second_app(base_url: str, name: str, args: dict):
    """``args`` served beside the module's graph as application ``name`` at ``/name``; its URL."""
    from ray import serve

    from deployments.app import build_app
    from deployments.app_args import AppArgs

    serve.run(build_app(AppArgs.model_validate(args)), name=name, route_prefix=f"/{name}", blocking=False)
    try:
        wait_healthy(f"{base_url}/{name}")
        yield f"{base_url}/{name}"
    finally:
        serve.delete(name)


def wait_healthy(url: str, timeout_s: float = 240) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/readyz", timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url}/readyz did not answer 200 within {timeout_s} s")


@contextlib.contextmanager
def serving(args: dict, metrics_export_port: int | None = None, address: str | None = None):
    """``args`` served as the application "speechgraph" on a real local Ray cluster with one
    *logical* GPU (none physically here), over HTTP on 127.0.0.1:8000; with Ray's Prometheus
    endpoint on ``metrics_export_port`` when given. With ``address``, on that running cluster
    instead (several nodes on this machine: one proxy, on the head)."""
    import socket

    import ray
    from ray import serve

    from deployments.app import build_app
    from deployments.app_args import AppArgs

    validated = AppArgs.model_validate(args)  # a bad config fails before a cluster starts
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", 8000)) == 0:
            pytest.fail("127.0.0.1:8000 is already in use (a `serve run` left running?); stop it first")
    metrics: dict[str, Any] = {"_metrics_export_port": metrics_export_port} if metrics_export_port else {}
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(num_cpus=4, num_gpus=1, include_dashboard=False, log_to_driver=False, **metrics)
    try:
        serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": 8000})
        logging_config = yaml.safe_load((ROOT / "configs" / "tiny.yaml").read_text())["logging_config"]
        serve.run(build_app(validated), name="speechgraph", route_prefix="/", logging_config=logging_config)
        wait_healthy(BASE_URL)
        yield BASE_URL
    finally:
        serve.shutdown()
        ray.shutdown()


@pytest.fixture(scope="module")
def graph():
    """The graph with the test limits."""
    with serving(graph_args()) as url:
        yield url


# External tools some tests run, checked in one place so that a missing one always names its
# package and the command that installs it; and fails under CI, which must never pass by leaving
# tests out.
def needs_tool(tool: str, package: str, install: str | None = None) -> pytest.MarkDecorator:
    """Mark a test (or, as ``pytestmark``, a module) as running ``tool``, from Debian's ``package``
    unless ``install`` says how else to get it; see ``pytest_runtest_setup``."""
    how = install or f"bash scripts/system-deps.sh, or sudo apt-get install {package}"
    return pytest.mark.needs_tool(
        tool, reason=f"{tool} is not on PATH: it comes with the {package} package ({how})"
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "needs_tool(tool, reason): the test runs that external tool")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before the test's fixtures start anything (a Ray cluster): skip it when a tool it needs is not
    on PATH, or fail it when ``CI`` is set."""
    import os
    import shutil

    for mark in item.iter_markers("needs_tool"):
        if shutil.which(mark.args[0]) is None:
            if os.environ.get("CI", "").lower() not in ("", "0", "false"):
                pytest.fail(f"{mark.kwargs['reason']}; CI runs every test, so it fails", pytrace=False)
            pytest.skip(mark.kwargs["reason"])
