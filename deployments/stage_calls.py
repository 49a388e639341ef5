"""Calling a stage as the graph must: Serve's refusals as API errors, lost replicas and windows
retried once.

Serve re-routes only the calls no replica had taken yet; a call whose replica died is lost, and
so is a window whose object-store owner (the preprocessing replica that cut it) died. Every stage
call is safe to make twice (its inputs are the ingress's own objects, and decoding and VAD are
deterministic), so each is sent once more, and lost windows are cut again from the upload.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ray.exceptions import ObjectLostError, RayActorError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

from deployments.audio_plan import AudioPart
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


class RecutWindows:
    """A part's windows as stage calls, cut again once if they are lost. A window's ``ObjectRef``
    is owned by the preprocessing replica that cut it and dies with it; the upload is the
    ingress's own, and cutting it again gives the same windows."""

    def __init__(self, part: AudioPart, cut: Callable[[], Awaitable[AudioPart]]):
        self.part = part
        self._cut = cut
        self._again: asyncio.Future | None = None

    async def call(self, index: int, send: Callable[[Any], Any], what: str, responses: list) -> Any:
        """``send(window_ref)`` for the part's ``index``-th window, sent once more if its replica
        died, and with a freshly cut window if the window was lost."""
        try:
            return await once_more_if_replica_died(lambda: send(self.part.refs[index]), what, responses)
        except ObjectLostError:
            log.warning(
                "%s was lost with the preprocessing replica that cut it; cutting the audio again", what
            )
        refs = await self._refs_again()
        return await once_more_if_replica_died(lambda: send(refs[index]), what, responses)

    async def _refs_again(self) -> list:
        if self._again is None:  # once per part, however many of its windows were lost
            self._again = asyncio.ensure_future(self._cut())
        part = await self._again
        if part.windows != self.part.windows:
            raise StageUnavailable(
                "The audio's windows were lost and cut differently the second time. Send the request again."
            )
        return part.refs
