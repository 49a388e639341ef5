"""The GPU sharing plan: what each replica gets of a GPU, checked before anything is deployed, and
printed for a node shape.

Ray's ``num_gpus`` fractions are logical. Ray packs replicas onto a GPU until their shares add up
to 1.0, but nothing keeps a process inside its part of the GPU's memory: vLLM takes
``gpu_memory_utilization`` of the *whole* GPU whatever its fraction (Ray issue #62553, vLLM #4242),
and torch's caching allocator grows until the device is full. Two replicas sharing a GPU then
fail with out-of-memory errors at load time, or worse under load. So the app builder refuses,
naming the deployments and numbers:

- a ``num_gpus`` above 1 that is not a whole number (a replica holds a part of one GPU, or whole GPUs);
- stages listed in ``deployments.share_gpu`` whose shares add up to more than 1.0 (one replica of
  each could never sit on one GPU);
- a replica whose memory fraction is above its share: ``asr.gpu_memory_fraction`` or
  ``llm.gpu_memory_fraction`` (the torch cap, or vLLM's ``gpu_memory_utilization``);
- the vLLM backend without a GPU.

With every fraction at most its share, the replicas on one GPU can never ask for more than the
GPU's memory between them, because Ray keeps their shares within 1.0.

``python -m deployments.gpu_plan serve_config.yaml --node 1xH100-80GB --node 8xH100-80GB`` prints
the plan for those node shapes: the memory each replica gets, how many fit on one node, and how
many nodes the minimum and maximum replica counts need.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from pipeline.devices import memory_fraction

if TYPE_CHECKING:
    from deployments.app import AppArgs

STAGES = ("ingress", "preprocess", "asr", "postprocess")


class GpuPlanError(ValueError):
    """The config's GPU sharing cannot work; the message lists every problem found."""


@dataclass(frozen=True)
class StageGpu:
    """One stage's claim on GPUs, per replica."""

    stage: str
    num_gpus: float
    num_cpus: float
    memory_fraction: float | None
    """The most of one GPU's memory a replica may use (``None``: no GPU)."""
    memory_kind: str
    """What enforces it: the torch allocator cap, or vLLM's ``gpu_memory_utilization``."""
    min_replicas: int
    max_replicas: int

    @property
    def share(self) -> Fraction:
        return _fraction(self.num_gpus)


def _fraction(value: float) -> Fraction:
    # Ray keeps resource amounts to 4 decimal places; exact arithmetic keeps 0.1 + 0.2 <= 0.3.
    return Fraction(value).limit_denominator(10_000)


def _replica_range(options) -> tuple[int, int]:
    if options.autoscaling_config is not None:
        config = options.autoscaling_config
        return config.min_replicas, config.max_replicas
    if options.num_replicas == "auto":  # Serve's defaults for "auto"
        return 1, 100
    n = options.num_replicas if options.num_replicas is not None else 1
    return n, n


def gpu_stages(args: AppArgs) -> list[StageGpu]:
    """Every stage's GPU share, CPUs, memory fraction and replica range, in graph order."""
    result = []
    for stage in STAGES:
        options = getattr(args.deployments, stage)
        actor = options.ray_actor_options
        share = actor.num_gpus or 0.0
        fraction, kind = None, "-"
        if stage == "asr":
            fraction, kind = memory_fraction(share, args.asr.gpu_memory_fraction), "torch cap"
        elif stage == "postprocess" and args.llm.backend == "vllm":
            fraction = memory_fraction(share, args.llm.gpu_memory_fraction, args.llm.gpu_memory_margin)
            kind = "vLLM utilization"
        elif stage == "postprocess":
            fraction, kind = memory_fraction(share, args.llm.gpu_memory_fraction), "torch cap"
        if not share:
            fraction, kind = None, "-"
        low, high = _replica_range(options)
        result.append(
            StageGpu(
                stage, share, actor.num_cpus if actor.num_cpus is not None else 1.0, fraction, kind, low, high
            )
        )
    return result


def gpu_plan_problems(args: AppArgs) -> list[str]:
    """What is wrong with the config's GPU sharing, one sentence each (empty when nothing is)."""
    stages = {s.stage: s for s in gpu_stages(args)}
    problems = []
    for s in stages.values():
        if s.num_gpus > 1 and s.share.denominator != 1:
            problems.append(
                f"deployments.{s.stage}: num_gpus {s.num_gpus} is above 1 and not whole; a replica "
                "holds a part of one GPU (below 1) or whole GPUs (1, 2, ...)."
            )
        if s.memory_fraction is not None and _fraction(s.memory_fraction) > min(s.share, 1):
            setting = "asr" if s.stage == "asr" else "llm"
            what = (
                "vLLM's gpu_memory_utilization"
                if s.memory_kind.startswith("vLLM")
                else "its torch memory cap"
            )
            problems.append(
                f"deployments.{s.stage}: {what} {s.memory_fraction} ({setting}.gpu_memory_fraction) is "
                f"more than its num_gpus share {s.num_gpus}: it could take memory Ray gave to the replica "
                f"sharing its GPU. Set {setting}.gpu_memory_fraction to at most {min(s.num_gpus, 1.0)}, "
                "or leave it out to follow the share."
            )
    if args.llm.backend == "vllm" and not stages["postprocess"].num_gpus:
        problems.append(
            "deployments.postprocess: llm.backend is 'vllm', which needs a GPU, but its "
            "ray_actor_options.num_gpus is 0; give it a GPU share or use backend 'transformers'."
        )
    shared = [stages[name] for name in args.deployments.share_gpu]
    for s in shared:
        if not 0 < s.num_gpus < 1:
            problems.append(
                f"deployments.share_gpu lists {s.stage}, whose num_gpus is {s.num_gpus}: "
                "only replicas with a fraction of a GPU (between 0 and 1) can share one."
            )
    total = sum((s.share for s in shared), Fraction(0))
    if len(shared) > 1 and total > 1:
        parts = " + ".join(f"{s.stage} {s.num_gpus}" for s in shared)
        problems.append(
            f"deployments.share_gpu: one replica each of {', '.join(s.stage for s in shared)} must fit "
            f"on one GPU, but their num_gpus add up to {float(total):g} ({parts}), more than 1.0. "
            "Lower their ray_actor_options.num_gpus."
        )
    return problems


def check_gpu_plan(args: AppArgs) -> None:
    """Raise :class:`GpuPlanError` naming every problem of the config's GPU sharing."""
    problems = gpu_plan_problems(args)
    if problems:
        raise GpuPlanError("The GPU sharing plan cannot work:\n- " + "\n- ".join(problems))


# --- the plan for a node shape --------------------------------------------------------------------

_SHAPE = re.compile(r"^(\d+)x([A-Za-z0-9_.]+)-(\d+(?:\.\d+)?)GB(?::(\d+(?:\.\d+)?))?$")


@dataclass(frozen=True)
class NodeShape:
    """A GPU node: ``8xH100-80GB``, optionally with its CPUs for Ray (``8xH100-80GB:192``)."""

    gpus: int
    gpu_name: str
    gpu_memory_gb: float
    cpus: float | None = None

    @classmethod
    def parse(cls, text: str) -> NodeShape:
        match = _SHAPE.match(text.strip())
        if not match or int(match[1]) < 1:
            raise ValueError(
                f"Node shape {text!r} is not COUNTxGPU-MEMORYGB[:CPUS], e.g. 8xH100-80GB or 1xH100-80GB:26."
            )
        return cls(int(match[1]), match[2], float(match[3]), float(match[4]) if match[4] else None)

    def __str__(self) -> str:
        cpus = f", {self.cpus:g} CPUs" if self.cpus is not None else ", CPUs not limited"
        gpus = f"{self.gpus} GPU{'s' * (self.gpus != 1)}"
        return f"{self.gpus}x{self.gpu_name}-{self.gpu_memory_gb:g}GB ({gpus} of {self.gpu_memory_gb:g} GB{cpus})"


@dataclass
class _Node:
    gpus: list[Fraction]
    cpus_left: float
    replicas: dict[str, int] = field(default_factory=dict)


def _place(nodes: list[_Node], items: list[StageGpu], shape: NodeShape) -> bool:
    """Put ``items`` (replicas that go on one GPU together, or one whole-GPU replica) on the first
    node with room, opening a node when none has; False when they don't fit even an empty node."""
    share = sum((s.share for s in items), Fraction(0))
    cpus = sum(s.num_cpus for s in items)
    whole = share >= 1
    for node in [*nodes, None]:
        if node is None:
            node = _Node([Fraction(0)] * shape.gpus, shape.cpus if shape.cpus is not None else math.inf)
            fresh = True
        else:
            fresh = False
        if cpus > node.cpus_left:
            if fresh:
                return False
            continue
        if whole:
            free = [i for i, used in enumerate(node.gpus) if used == 0]
            if len(free) < math.ceil(share):
                if fresh:
                    return False
                continue
            for i in free[: math.ceil(share)]:
                node.gpus[i] = Fraction(1)
        else:
            gpu = next((i for i, used in enumerate(node.gpus) if used + share <= 1), None)
            if gpu is None:
                if fresh:
                    return False
                continue
            node.gpus[gpu] += share
        node.cpus_left -= cpus
        for s in items:
            node.replicas[s.stage] = node.replicas.get(s.stage, 0) + 1
        if fresh:
            nodes.append(node)
        return True
    return False


def pack(
    stages: list[StageGpu], counts: dict[str, int], shape: NodeShape, share_gpu: list[str]
) -> list[_Node] | None:
    """Nodes of ``shape`` holding ``counts`` replicas per stage, first fit: one replica of each
    ``share_gpu`` stage together on a GPU as long as all of them have replicas left, then the
    rest, largest share first. ``None`` when some replica fits no node of this shape."""
    by_name = {s.stage: s for s in stages}
    left = dict(counts)
    nodes: list[_Node] = []
    group = [by_name[name] for name in share_gpu if name in by_name and left.get(name)]
    if sum((s.share for s in group), Fraction(0)) > 1:
        group = []  # not a set that fits one GPU (check_gpu_plan refuses such a config)
    while len(group) > 1 and all(left[s.stage] for s in group):
        if not _place(nodes, group, shape):
            return None
        for s in group:
            left[s.stage] -= 1
    for s in sorted(stages, key=lambda s: s.share, reverse=True):
        for _ in range(left.get(s.stage, 0)):
            if not _place(nodes, [s], shape):
                return None
    return nodes


def _per_node(stages: list[StageGpu], shape: NodeShape) -> int:
    """How many replicas (or sets of one each) of ``stages`` one node of ``shape`` holds."""
    share = sum((s.share for s in stages), Fraction(0))
    cpus = sum(s.num_cpus for s in stages)
    by_gpu = shape.gpus * math.floor(1 / share) if share < 1 else shape.gpus // math.ceil(share)
    by_cpu = math.floor(shape.cpus / cpus) if shape.cpus is not None and cpus else by_gpu
    return min(by_gpu, by_cpu)


def describe_plan(args: AppArgs, shapes: list[NodeShape]) -> str:
    """The plan as text: per stage what a replica gets, per node shape what fits and how many
    nodes the replica ranges need."""
    every_stage = gpu_stages(args)
    stages = [s for s in every_stage if s.num_gpus]
    cpu_only = [s.stage for s in every_stage if not s.num_gpus]
    share_gpu = list(args.deployments.share_gpu)
    lines = []
    if not stages:
        return "No stage asks for a GPU: there is no GPU plan to make."
    if share_gpu:
        total = sum((s.share for s in stages if s.stage in share_gpu), Fraction(0))
        lines.append(
            f"GPU sharing: one replica each of {' + '.join(share_gpu)} per GPU ({float(total):.2f} of a GPU)."
        )
    if cpu_only:
        lines.append(f"Stages without a GPU ({', '.join(cpu_only)}) run on CPU nodes and are left out.")
    for shape in shapes:
        lines += ["", f"Node {shape}"]
        header = (
            f"  {'stage':<12} {'num_gpus':>8} {'num_cpus':>8}  {'GPU memory per replica':<41} {'alone':>5}"
        )
        if len(share_gpu) > 1:
            header += f" {'shared':>6}"
        lines.append(header + f"  {'replicas':>9}")
        sets = _per_node([s for s in stages if s.stage in share_gpu], shape) if len(share_gpu) > 1 else None
        for s in stages:
            gb = s.memory_fraction * shape.gpu_memory_gb if s.memory_fraction is not None else None
            memory = (
                f"{s.memory_fraction:.2f} of {'each ' if s.num_gpus > 1 else ''}GPU = {gb:.1f} GB ({s.memory_kind})"
                if gb is not None
                else "-"
            )
            row = (
                f"  {s.stage:<12} {s.num_gpus:>8g} {s.num_cpus:>8g}  {memory:<41} {_per_node([s], shape):>5}"
            )
            if sets is not None:
                row += f" {(sets if s.stage in share_gpu else '-'):>6}"
            lines.append(row + f"  {f'{s.min_replicas}..{s.max_replicas}':>9}")
        for label, attr in (("min", "min_replicas"), ("max", "max_replicas")):
            counts = {s.stage: getattr(s, attr) for s in stages}
            nodes = pack(stages, counts, shape, share_gpu)
            wanted = " + ".join(f"{n} {stage}" for stage, n in counts.items())
            if nodes is None:
                lines.append(f"  {label} replicas ({wanted}): a replica does not fit on this node shape")
                continue
            used = sum(float(sum(n.gpus)) for n in nodes)
            lines.append(
                f"  {label} replicas ({wanted}): {len(nodes)} node{'s' * (len(nodes) != 1)}, "
                f"GPU shares reserved: {used:g} of {len(nodes) * shape.gpus}"
            )
    legend = "alone: replicas of that stage one node holds by itself"
    if len(share_gpu) > 1:
        legend += "; shared: sets of one replica of each share_gpu stage one node holds"
    return "\n".join([*lines, "", legend + "."])


def main(argv: list[str] | None = None) -> int:
    from deployments.app import AppArgs

    parser = argparse.ArgumentParser(
        prog="python -m deployments.gpu_plan",
        description="Check a Serve config's GPU sharing and print how its replicas fit on GPU nodes.",
    )
    parser.add_argument(
        "config",
        type=Path,
        nargs="?",
        default=Path("serve_config.yaml"),
        help="Serve config file (default: %(default)s)",
    )
    parser.add_argument(
        "--node",
        dest="nodes",
        action="append",
        type=NodeShape.parse,
        metavar="SHAPE",
        help="node shape COUNTxGPU-MEMORYGB[:CPUS]; repeatable (default: 1xH100-80GB and 8xH100-80GB)",
    )
    options = parser.parse_args(argv)
    raw = yaml.safe_load(options.config.read_text())
    args = AppArgs.model_validate(raw["applications"][0]["args"])
    problems = gpu_plan_problems(args)
    if problems:
        print(f"{options.config}: the GPU sharing plan cannot work:", file=sys.stderr)
        for problem in problems:
            print(f"- {problem}", file=sys.stderr)
        return 1
    shapes = options.nodes or [NodeShape.parse("1xH100-80GB"), NodeShape.parse("8xH100-80GB")]
    print(f"GPU plan of {options.config}")
    print(describe_plan(args, shapes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
