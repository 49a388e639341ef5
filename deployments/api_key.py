"""Bearer API-key check for ``/v1`` routes, before the request body is read.

A pure ASGI middleware (as :mod:`deployments.upload_limit`), so an unauthenticated client cannot
make the service buffer an upload before it is refused. Keys come from an environment variable
(a Kubernetes Secret in production); unset means authentication is off, for local use. Health
probes and the OpenAPI schema stay open.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from deployments.protocol import error_body


def _refusal(message: str) -> bytes:
    return json.dumps(error_body(message, code="invalid_api_key")).encode()


class ApiKeyAuth:
    def __init__(self, app: ASGIApp, keys: Callable[[], tuple[str, ...]], prefix: str = "/v1/"):
        self.app = app
        self.keys = keys
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        keys = self.keys() if scope["type"] == "http" else ()
        path = scope.get("path", "")
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        if not keys or not path.startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        header = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
        scheme, _, given = header.partition(" ")
        if not header:
            await self._refuse(
                send, "The request has no API key. Send it in the header 'Authorization: Bearer YOUR_KEY'."
            )
            return
        if scheme.lower() != "bearer" or not any(
            hmac.compare_digest(given.strip().encode(), key.encode()) for key in keys
        ):
            await self._refuse(
                send,
                "Incorrect API key. Send a key this service was configured "
                "with, as 'Authorization: Bearer YOUR_KEY'.",
            )
            return
        await self.app(scope, receive, send)

    @staticmethod
    async def _refuse(send: Send, message: str) -> None:
        body = _refusal(message)
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b'Bearer realm="speechgraph"'),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def api_keys_from(value: str | None) -> tuple[str, ...]:
    """The keys in an environment variable's value: comma-separated, blanks ignored."""
    return tuple(k.strip() for k in (value or "").split(",") if k.strip())
