"""One structured log line and one metrics count per request, at the ingress.

An ASGI middleware, outermost, so requests answered by the middlewares inside it (401 from the
API key check, 413 from the upload limit) are logged and counted like the rest. The handlers add
what only they know (audio seconds, per-stage seconds) to :data:`REQUEST_FACTS`, a dict the
middleware created for this request. With Serve's JSON log encoding the line's fields are JSON
keys beside Serve's own ``request_id``, ``deployment`` and ``replica``; Serve gives the stages'
log lines the same ``request_id`` and answers it in the ``X-Request-Id`` header.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from deployments.metrics import IngressMetrics

log = logging.getLogger("ray.serve")

#: Facts about the current request that the handlers add for its log line.
REQUEST_FACTS: ContextVar[dict[str, Any] | None] = ContextVar("speechgraph_request_facts", default=None)


def note_request(**facts: Any) -> None:
    """Add ``facts`` to the current request's log line (no-op outside a request)."""
    current = REQUEST_FACTS.get()
    if current is not None:
        current.update(facts)


class RequestRecorder:
    """Counts every answered request by route template and HTTP status, and logs one line for it.
    Paths that match no route count as ``other``, so a scan of random URLs cannot grow the
    metric's label set."""

    def __init__(self, app: ASGIApp, metrics: Callable[[], IngressMetrics], routes: Sequence[BaseRoute]):
        self.app = app
        self.metrics = metrics
        self.routes = routes

    def route(self, scope: Scope) -> str:
        """The template of the route that answered (FastAPI leaves it in the scope) or, for a
        request answered before routing (401, 413), of the route it was meant for."""
        if "route" in scope:
            return getattr(scope["route"], "path", "other")
        for route in self.routes:
            match, _ = route.matches(scope)
            if match == Match.FULL:
                return getattr(route, "path", "other")
        return "other"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # unless the app answers: an exception that escapes it is a 500
        facts: dict[str, Any] = {}
        token = REQUEST_FACTS.set(facts)
        started = time.perf_counter()

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            REQUEST_FACTS.reset(token)
            route = self.route(scope)
            self.metrics().requests.inc(tags={"route": route, "status": str(status)})
            fields = {
                "api_route": route,
                "method": scope["method"],
                "status_code": status,
                "duration_s": round(time.perf_counter() - started, 4),
                **facts,
            }
            log.info("%s %s -> %d", scope["method"], route, status, extra=fields)
