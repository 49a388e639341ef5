"""Calling a stage as the graph must: Serve's refusals as API errors, calls lost with their replica
sent once more.

Serve re-routes only the calls no replica had taken yet; a call whose replica died is lost. Every
stage call is safe to make twice (its inputs are the ingress's own objects, and decoding and VAD
are deterministic), so each is sent once more.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ray.exceptions import RayActorError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

from deployments.http_errors import RETRY_AFTER_S, Overloaded, StageUnavailable

log = logging.getLogger("ray.serve")

#: A stage call as Serve's ``DeploymentResponse`` answers it: awaitable and cancellable.
StageCall = Callable[[], Any]


@contextmanager
def stage_errors() -> Iterator[None]:
    """Turn Serve's refusals, raised when a stage is called or awaited, into the API's errors.

    Serve registers its own plain-text handlers for ``BackPressureError`` and
    ``DeploymentUnavailableError`` on the ingress app, replacing any of ours, so they are
    converted here, around the calls to the stages.
    """
    try:
        yield
    except BackPressureError as exc:
        log.warning("stage refused work: %s", exc)
        retry_after = exc.retry_after_s if exc.retry_after_s is not None else RETRY_AFTER_S
        raise Overloaded(
            "The service is at capacity. Retry after a short wait.", exc.status_code, retry_after
        ) from None
    except (DeploymentUnavailableError, RayActorError) as exc:
        log.warning("stage unavailable: %s", exc.__class__.__name__)
        raise StageUnavailable(
            "A pipeline stage is restarting or unavailable. Retry after a short wait."
        ) from None


async def once_more_if_replica_died(call: StageCall, what: str, responses: list | None = None) -> Any:
    """``call()`` (a stage call), sent once more if the replica working on it died. Each call goes
    into ``responses`` when given, so the request can cancel them."""
    for attempt in range(2):
        response = call()
        if responses is not None:
            responses.append(response)
        try:
            return await response
        except RayActorError:
            if attempt:
                raise
            log.warning("the replica working on %s died; sending it again", what)
    raise AssertionError("unreachable: the second attempt returns or raises")
