"""What each replica gets of a GPU, and why a config's GPU sharing cannot work.

Ray's ``num_gpus`` fractions are logical. Ray packs replicas onto a GPU until their shares add up
to 1.0, but nothing keeps a process inside its part of the GPU's memory: vLLM takes
``gpu_memory_utilization`` of the *whole* GPU whatever its fraction (Ray issue #62553, vLLM #4242),
and torch's caching allocator grows until the device is full. Two replicas sharing a GPU then
fail with out-of-memory errors at load time, or worse under load. So the app args
(``deployments.app_args.AppArgs``) refuse, naming the deployments and numbers:

- a ``num_gpus`` above 1 that is not a whole number (a replica holds a part of one GPU, or whole GPUs);
- stages listed in ``deployments.share_gpu`` whose shares add up to more than 1.0 (one replica of
  each could never sit on one GPU);
- a replica whose memory fraction is above its share: ``asr.gpu_memory_fraction`` or
  ``llm.gpu_memory_fraction`` (the torch cap, or vLLM's ``gpu_memory_utilization``);
- the vLLM backend without a GPU.

With every fraction at most its share, the replicas on one GPU can never ask for more than the
GPU's memory between them, because Ray keeps their shares within 1.0.

This module is plain arithmetic over :class:`StageGpu` claims, apart from the config models, so
that the models can run these checks as validators and the plan command (``deployments.gpu_plan``)
can pack the same claims onto node shapes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

STAGES = ("ingress", "preprocess", "asr", "postprocess", "diarization")


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
        return gpu_fraction(self.num_gpus)


def gpu_fraction(value: float) -> Fraction:
    """``value`` as Ray counts it: Ray keeps resource amounts to 4 decimal places, and exact
    arithmetic keeps 0.1 + 0.2 <= 0.3."""
    return Fraction(value).limit_denominator(10_000)


def gpu_share_problems(stages: Sequence[StageGpu], share_gpu: Sequence[str], llm_backend: str) -> list[str]:
    """What is wrong with these GPU claims, one sentence each (empty when nothing is).
    ``share_gpu``: the stages planned one replica of each per GPU; ``llm_backend``: the
    postprocess stage's (vLLM needs a GPU)."""
    by_stage = {s.stage: s for s in stages}
    problems = []
    for s in stages:
        if s.num_gpus > 1 and s.share.denominator != 1:
            problems.append(
                f"deployments.{s.stage}: num_gpus {s.num_gpus} is above 1 and not whole; a replica "
                "holds a part of one GPU (below 1) or whole GPUs (1, 2, ...)."
            )
        if s.memory_fraction is not None and gpu_fraction(s.memory_fraction) > min(s.share, Fraction(1)):
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
    if llm_backend == "vllm" and not by_stage["postprocess"].num_gpus:
        problems.append(
            "deployments.postprocess: llm.backend is 'vllm', which needs a GPU, but its "
            "ray_actor_options.num_gpus is 0; give it a GPU share or use backend 'transformers'."
        )
    shared = [by_stage[name] for name in share_gpu]
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
