"""What every model stage's replica does alike: answer health checks by asking its model, warm the
model up at start, know where it runs, and report its model with that placement.

Why a plain base class: Serve looks ``check_health``, ``reconfigure`` and the methods a handle
calls up on the replica's instance, so inherited ones are found as if written in the deployment,
and ``@serve.deployment`` goes on the subclass as usual. Each stage keeps its Serve shape (load in
``__init__``, serve in methods) and adds two hooks: ``probe_model``, the smallest inference that
proves its model answers, and ``loaded_model_info``, what it loaded.

The probe doubles as the warm-up, so the first request does not pay the model's first-call cost,
and the warm-up runs the very path the health check will. Placement is read once, in
``__init__``: a replica does not move, and ``serve.get_replica_context()`` answers only inside one.
"""

from __future__ import annotations

import time
from dataclasses import asdict

from deployments.health import ModelProbe
from deployments.placement import replica_placement
from pipeline.schemas import ModelInfo


class StageReplica:
    """Base of the stage deployments. A subclass calls ``super().__init__(stage)`` first, loads its
    model, then calls :meth:`warm_up` if its first call costs more than the others."""

    def __init__(self, stage: str):
        self.stage = stage
        self.placement = replica_placement()
        self.probe = ModelProbe(stage, self.probe_model)
        self.warmup_s: float | None = None

    def probe_model(self) -> object:
        """The smallest inference that proves the loaded model answers (runs in a thread)."""
        raise NotImplementedError(f"{type(self).__name__} must define probe_model()")

    def loaded_model_info(self) -> ModelInfo:
        """The stage's model as loaded; placement and warm-up are added by :meth:`model_info`."""
        raise NotImplementedError(f"{type(self).__name__} must define loaded_model_info()")

    def warm_up(self) -> None:
        """Run the probe once, timed, before Serve sends the replica any request."""
        started = time.perf_counter()
        self.probe_model()
        self.warmup_s = time.perf_counter() - started

    async def check_health(self) -> None:
        await self.probe.check()

    def model_info(self) -> ModelInfo:
        return self.loaded_model_info().model_copy(
            update={**asdict(self.placement), "warmup_s": self.warmup_s}
        )
