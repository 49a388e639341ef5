"""Bearer API-key check for ``/v1`` routes, before the request body is read.

A WebSocket (``/v1/realtime``) may carry the key as the header too, or, since a browser cannot
set headers on a WebSocket, as OpenAI's subprotocol ``openai-insecure-api-key.KEY``. A refused
socket is accepted, told why in a Realtime ``error`` event, and closed with 1008: a refusal
during the handshake would reach a browser as a bare failed connection.

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
from deployments.realtime_events import error_event
from deployments.realtime_protocol import RealtimeProtocolError

#: The subprotocol a browser's Realtime client sends its key in.
KEY_SUBPROTOCOL = "openai-insecure-api-key."


def _refusal(message: str) -> bytes:
    return json.dumps(error_body(message, code="invalid_api_key")).encode()


class ApiKeyAuth:
    def __init__(self, app: ASGIApp, keys: Callable[[], tuple[str, ...]], prefix: str = "/v1/"):
        self.app = app
        self.keys = keys
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        keys = self.keys() if scope["type"] in ("http", "websocket") else ()
        path = scope.get("path", "")
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        if not keys or not path.startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        header = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send, header, keys)
            return
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

    async def _websocket(self, scope: Scope, receive: Receive, send: Send, header: str, keys: tuple) -> None:
        offered = list(scope.get("subprotocols") or [])
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer":
            given = next((p[len(KEY_SUBPROTOCOL) :] for p in offered if p.startswith(KEY_SUBPROTOCOL)), "")
        if given and any(hmac.compare_digest(given.strip().encode(), key.encode()) for key in keys):
            await self.app(scope, receive, send)
            return
        message = (
            "Incorrect API key. Send a key this service was configured with, as 'Authorization: Bearer "
            f"YOUR_KEY' or (from a browser) the subprotocol '{KEY_SUBPROTOCOL}YOUR_KEY'."
            if given
            else "The session has no API key. Send it as 'Authorization: Bearer YOUR_KEY' or (from a "
            f"browser) the subprotocol '{KEY_SUBPROTOCOL}YOUR_KEY'."
        )
        await receive()  # websocket.connect
        await send({"type": "websocket.accept", "subprotocol": "realtime" if "realtime" in offered else None})
        event = error_event(RealtimeProtocolError(message, "invalid_api_key"))
        await send({"type": "websocket.send", "text": json.dumps(event)})
        await send({"type": "websocket.close", "code": 1008, "reason": "invalid_api_key"})

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
