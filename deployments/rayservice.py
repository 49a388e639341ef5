"""``python -m deployments.rayservice``: copy the Serve configs into the Kubernetes manifests.

One source of truth per graph: ``serve_config.yaml`` is the ``serveConfigV2`` of
``k8s/base/rayservice.yaml``, and ``configs/cpu-cluster.yaml`` the one the CPU overlay puts in its place
(``k8s/overlays/cpu/rayservice-patch.yaml``). Only that literal block of each manifest is
rewritten; the rest of the file, comments included, stays as written. ``--check`` changes nothing
and fails when a manifest differs from its config, or when its resources don't add up
(:func:`resource_problems`; tests/test_k8s.py runs the same checks).
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from pipeline.settings import application_args

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Embedding:
    """``config`` is the literal block ``key: |`` of ``manifest``."""

    config: Path
    manifest: Path
    key: str


EMBEDDINGS = [
    Embedding(Path("serve_config.yaml"), Path("k8s/base/rayservice.yaml"), "serveConfigV2"),
    Embedding(Path("configs/cpu-cluster.yaml"), Path("k8s/overlays/cpu/rayservice-patch.yaml"), "value"),
]


def embed(manifest: str, key: str, config: str) -> str:
    """``manifest`` with the block under its one ``key: |`` line replaced by ``config``."""
    lines = manifest.splitlines(keepends=True)
    pattern = re.compile(rf"^(\s*)(- )?{re.escape(key)}: \|\s*$")
    found = [(i, match) for i, line in enumerate(lines) if (match := pattern.match(line))]
    if len(found) != 1:
        raise ValueError(f"expected one '{key}: |' line in the manifest, found {len(found)}")
    [(start, match)] = found
    indent = " " * (len(match[1]) + len(match[2] or "") + 2)
    end = start + 1
    while end < len(lines) and (not lines[end].strip() or lines[end].startswith(indent)):
        end += 1
    while end > start + 1 and not lines[end - 1].strip():  # blank lines after the block stay
        end -= 1
    block = [
        f"{indent}{line.rstrip()}\n" if line.strip() else "\n" for line in config.rstrip("\n").split("\n")
    ]
    return "".join(lines[: start + 1] + block + lines[end:])


def render(embedding: Embedding, root: Path = ROOT) -> str:
    """The manifest as it should be: the config copied into its block."""
    return embed(
        (root / embedding.manifest).read_text(), embedding.key, (root / embedding.config).read_text()
    )


def _quantity(value) -> float:
    """A Kubernetes CPU or GPU quantity (``8``, ``"500m"``) as a number."""
    text = str(value)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


@dataclass(frozen=True)
class RayGroup:
    """A head or worker group as Ray sees one of its pods."""

    name: str
    cpus: float
    gpus: float
    labels: dict[str, str]
    max_pods: int


def ray_groups(rayservice: dict) -> list[RayGroup]:
    """The head and worker groups of a RayService: Ray's CPUs and GPUs per pod (``rayStartParams``,
    else the container's limits, as KubeRay does), labels and most pods."""
    cluster = rayservice["spec"]["rayClusterConfig"]
    groups = []
    for name, spec, max_pods in [("head", cluster["headGroupSpec"], 1)] + [
        (g["groupName"], g, g["maxReplicas"]) for g in cluster.get("workerGroupSpecs", [])
    ]:
        params = spec.get("rayStartParams", {})
        limits = spec["template"]["spec"]["containers"][0].get("resources", {}).get("limits", {})
        cpus = _quantity(params.get("num-cpus", limits.get("cpu", 0)))
        gpus = _quantity(params.get("num-gpus", limits.get("nvidia.com/gpu", 0)))
        groups.append(RayGroup(name, cpus, gpus, dict(spec.get("labels", {})), max_pods))
    return groups


def resource_problems(rayservice: dict) -> list[str]:
    """Where the RayService's groups and its Serve config disagree, one sentence each: a group's
    Ray ``num-gpus`` that is not its ``nvidia.com/gpu`` limit, Ray CPUs above the container's, a
    head with GPUs, app args that are not valid (GPU sharing that cannot work included), a
    deployment no group can hold, or maximum replicas that the groups' ``maxReplicas`` pods cannot
    hold."""
    from deployments.app_args import AppArgs
    from deployments.gpu_plan import NodeShape, pack

    problems = []
    cluster = rayservice["spec"]["rayClusterConfig"]
    specs = [("head", cluster["headGroupSpec"])] + [
        (g["groupName"], g) for g in cluster.get("workerGroupSpecs", [])
    ]
    for name, spec in specs:
        params = spec.get("rayStartParams", {})
        limits = spec["template"]["spec"]["containers"][0].get("resources", {}).get("limits", {})
        gpu_limit = _quantity(limits.get("nvidia.com/gpu", 0))
        if _quantity(params.get("num-gpus", gpu_limit)) != gpu_limit:
            problems.append(
                f"{name}: rayStartParams num-gpus {params.get('num-gpus')} is not its "
                f"nvidia.com/gpu limit {gpu_limit:g}"
            )
        if "cpu" in limits and _quantity(params.get("num-cpus", 0)) > _quantity(limits["cpu"]):
            problems.append(
                f"{name}: rayStartParams num-cpus {params['num-cpus']} is more than its "
                f"cpu limit {limits['cpu']}"
            )
    groups = ray_groups(rayservice)
    if groups[0].gpus:
        problems.append('head: Ray sees GPUs on the head (set rayStartParams num-gpus to "0")')
    serve_config = yaml.safe_load(rayservice["spec"]["serveConfigV2"])
    try:
        args = AppArgs.model_validate(application_args(serve_config, "spec.serveConfigV2"))
    except ValueError as error:  # pydantic's ValidationError included: it names every problem
        return [*problems, f"spec.serveConfigV2: {error}"]
    demand: dict[str, list] = {}
    for stage in args.gpu_stages():
        selector = getattr(args.deployments, stage.stage).ray_actor_options.label_selector or {}
        fits = [
            g
            for g in groups[1:]
            if all(g.labels.get(k) == v for k, v in selector.items())
            and g.cpus >= stage.num_cpus
            and g.gpus >= math.ceil(stage.num_gpus)
        ]
        if not fits:
            problems.append(
                f"deployments.{stage.stage}: no worker group holds a replica "
                f"({stage.num_cpus:g} CPUs, {stage.num_gpus:g} GPUs, labels {selector or 'any'})"
            )
            continue
        demand.setdefault(fits[0].name, []).append(stage)
    for group in groups[1:]:
        stages = demand.get(group.name, [])
        if not stages:
            continue
        nodes = pack(
            stages,
            {s.stage: s.max_replicas for s in stages},
            NodeShape(max(int(group.gpus), 1), "GPU", 0, group.cpus),
            list(args.deployments.share_gpu),
        )
        if nodes is None or len(nodes) > group.max_pods:
            needed = "more than any number of" if nodes is None else str(len(nodes))
            problems.append(
                f"{group.name}: the maximum replicas of {', '.join(s.stage for s in stages)} "
                f"need {needed} pods, but maxReplicas is {group.max_pods}"
            )
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deployments.rayservice", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 when a manifest differs from its config"
    )
    options = parser.parse_args(argv)
    stale = []
    for embedding in EMBEDDINGS:
        text = render(embedding)
        path = ROOT / embedding.manifest
        if path.read_text() == text:
            continue
        stale.append(embedding)
        if not options.check:
            path.write_text(text)
            print(f"{embedding.manifest}: {embedding.key} written from {embedding.config}")
    failed = False
    if options.check and stale:
        for embedding in stale:
            print(
                f"{embedding.manifest} differs from {embedding.config}: run python -m deployments.rayservice",
                file=sys.stderr,
            )
        failed = True
    problems = resource_problems(yaml.safe_load((ROOT / EMBEDDINGS[0].manifest).read_text()))
    for problem in problems:
        print(f"{EMBEDDINGS[0].manifest}: {problem}", file=sys.stderr)
    return 1 if failed or problems else 0


if __name__ == "__main__":
    sys.exit(main())
