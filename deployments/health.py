"""Health checks that ask the model, not only the process.

Serve calls a replica's ``check_health`` every ``health_check_period_s``; when it raises or takes
longer than ``health_check_timeout_s``, Serve marks the replica unhealthy and starts another.
A replica's process and event loop can be fine while its model is wedged (a CUDA call or a
``generate`` that never returns, a lock never released), so each stage's check runs a tiny
inference, with a timeout of its own. The probe is rate-limited: real work that finished
recently proves the model answers, and the probe's result is reused for ``interval_s``, so
checks cost the model almost nothing. While real work is running the probe would only queue
behind it, so the check passes unless that work has run longer than ``max_call_s``: a slow
batch on a CPU is not a wedged model, and must not get its replica killed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

log = logging.getLogger("ray.serve")


class ModelNotAnswering(RuntimeError):
    """The model did not answer a probe in time, or the probe failed."""


class ModelProbe:
    """``await probe.check()`` raises :class:`ModelNotAnswering` unless the model answered within
    the last ``interval_s`` (real work or a probe), is busy with real work started less than
    ``max_call_s`` ago, or answers ``run`` within ``timeout_s`` now."""

    def __init__(
        self,
        stage: str,
        run: Callable[[], object],
        *,
        interval_s: float = 30.0,
        timeout_s: float = 20.0,
        max_call_s: float = 600.0,
    ):
        self.stage = stage
        self.run = run
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.max_call_s = max_call_s
        self.last_answer = float("-inf")
        self._calls: dict[int, float] = {}  # real calls in progress: id -> start
        self._running: asyncio.Future | None = None

    def answered(self) -> None:
        """Real work just finished: the model answers."""
        self.last_answer = time.monotonic()

    @contextmanager
    def working(self) -> Iterator[None]:
        """Around a real call into the model: it counts as an answer when it returns."""
        token = object()
        self._calls[id(token)] = time.monotonic()
        try:
            yield
        finally:
            del self._calls[id(token)]
        self.answered()

    async def check(self) -> None:
        now = time.monotonic()
        if now - self.last_answer < self.interval_s:
            return
        oldest = min(self._calls.values(), default=None)
        if oldest is not None:
            if now - oldest < self.max_call_s:
                return
            raise ModelNotAnswering(
                f"a {self.stage} model call has run for {now - oldest:.0f} s, over "
                f"{self.max_call_s:.0f} s; Serve will replace this replica"
            )
        # A probe stuck in the model cannot be stopped (it is a thread); later checks wait on the
        # same one rather than piling up more threads behind it.
        if self._running is None or self._running.done():
            self._running = asyncio.ensure_future(asyncio.to_thread(self.run))
        try:
            await asyncio.wait_for(asyncio.shield(self._running), self.timeout_s)
        except TimeoutError:
            log.error("%s health probe: the model did not answer within %.0f s", self.stage, self.timeout_s)
            raise ModelNotAnswering(
                f"the {self.stage} model did not answer a probe within "
                f"{self.timeout_s:.0f} s; Serve will replace this replica"
            ) from None
        except Exception as exc:
            log.error("%s health probe failed: %r", self.stage, exc)
            raise ModelNotAnswering(
                f"the {self.stage} model failed a probe ({exc.__class__.__name__}: "
                f"{exc}); Serve will replace this replica"
            ) from exc
        self.answered()
