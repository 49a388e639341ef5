"""Refuse oversized uploads before their body is buffered.

A pure ASGI middleware: a declared ``Content-Length`` over the limit is answered 413 at once,
without reading the body; a body without one (chunked) is counted as it streams in, and the
request is answered 413 as soon as the count passes the limit, whatever the app was doing.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from deployments.protocol import error_body


class UploadTooLarge(Exception):
    pass


def _too_large(limit: int) -> bytes:
    return json.dumps(
        error_body(
            f"The upload is larger than the limit of {limit / 1048576:.1f} MiB. Send a smaller or "
            "more compressed file (e.g. flac, opus), or raise audio.max_upload_mb in the config.",
            code="file_too_large",
            param="file",
        )
    ).encode()


class UploadSizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: Callable[[], int]):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT"):
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes()
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._refuse(send, limit)
            return

        received = 0
        exceeded = False
        started = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise UploadTooLarge()
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded:
                return  # the 413 below replaces whatever the app answers
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        with contextlib.suppress(UploadTooLarge):
            await self.app(scope, counting_receive, guarded_send)
        if exceeded and not started:
            await self._refuse(send, limit)

    @staticmethod
    async def _refuse(send: Send, limit: int) -> None:
        body = _too_large(limit)
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
