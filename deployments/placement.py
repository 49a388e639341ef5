"""Where a replica runs, as Ray sees it: replica id, node and assigned GPU ids."""

from __future__ import annotations

from dataclasses import dataclass

import ray
from ray import serve


@dataclass(frozen=True)
class ReplicaPlacement:
    """The fields of :class:`pipeline.schemas.ModelInfo` that say where a replica runs."""

    replica_id: str | None
    """Serve's id of the replica; None outside one (tests, scripts)."""
    node_id: str
    gpu_ids: list[str]
    """GPU ids Ray assigned to this actor (logical; empty when none)."""


def replica_placement() -> ReplicaPlacement:
    ctx = ray.get_runtime_context()
    try:
        replica_id = serve.get_replica_context().replica_id.unique_id
    except Exception:  # called outside a replica (tests, scripts)
        replica_id = None
    return ReplicaPlacement(
        replica_id=replica_id,
        node_id=ctx.get_node_id(),
        gpu_ids=[str(g) for g in ctx.get_accelerator_ids().get("GPU", [])],
    )


def assigned_gpu_share() -> float:
    """The fraction of a GPU Ray reserved for this actor (0 when none)."""
    return float(ray.get_runtime_context().get_assigned_resources().get("GPU", 0.0))
