"""The GPU plan for node shapes: how a config's replicas fit on GPU nodes, and the command that
prints it.

The checks of the sharing itself (shares within one GPU, memory fractions within the shares) are
``deployments.gpu_shares``, run whenever app args are validated; here the same per-replica claims
are packed onto nodes, first fit, to tell how many replicas a node holds and how many nodes the
minimum and maximum replica counts need. ``deployments.rayservice`` packs them onto the
RayService's worker groups the same way.

``python -m deployments.gpu_plan serve_config.yaml --node 1xH100-80GB --node 8xH100-80GB`` checks
a config and prints the plan for those node shapes: the memory each replica gets, how many fit on
one node, and how many nodes the minimum and maximum replica counts need.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from pydantic import ValidationError

from deployments.app_args import AppArgs, load_app_args
from deployments.gpu_shares import StageGpu

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
        memory = f"{self.gpu_memory_gb:g}GB"
        return f"{self.gpus}x{self.gpu_name}-{memory} ({gpus} of {self.gpu_memory_gb:g} GB{cpus})"


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
    stages: list[StageGpu], counts: dict[str, int], shape: NodeShape, share_gpu: Sequence[str]
) -> list[_Node] | None:
    """Nodes of ``shape`` holding ``counts`` replicas per stage, first fit: one replica of each
    ``share_gpu`` stage together on a GPU as long as all of them have replicas left, then the
    rest, largest share first. ``None`` when some replica fits no node of this shape."""
    by_name = {s.stage: s for s in stages}
    left = dict(counts)
    nodes: list[_Node] = []
    group = [by_name[name] for name in share_gpu if name in by_name and left.get(name)]
    if sum((s.share for s in group), Fraction(0)) > 1:
        group = []  # not a set that fits one GPU (AppArgs refuses such a config)
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
    every_stage = args.gpu_stages()
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
            each = "each " if s.num_gpus > 1 else ""
            memory = (
                f"{s.memory_fraction:.2f} of {each}GPU = {gb:.1f} GB ({s.memory_kind})"
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
    try:
        args = load_app_args(options.config)
    except ValidationError as error:
        print(f"{options.config}: the app args are not valid:", file=sys.stderr)
        for problem in error.errors():
            where = ".".join(map(str, problem["loc"]))
            print(f"{where or 'args'}: {problem['msg'].removeprefix('Value error, ')}", file=sys.stderr)
        return 1
    except ValueError as error:  # not a Serve config; the message names the file
        print(error, file=sys.stderr)
        return 1
    shapes = options.nodes or [NodeShape.parse("1xH100-80GB"), NodeShape.parse("8xH100-80GB")]
    print(f"GPU plan of {options.config}")
    print(describe_plan(args, shapes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
