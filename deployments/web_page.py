"""The web page for people: plain HTML, CSS and JavaScript served by the ingress itself.

`serve run` then gives a working page with nothing else to install: no build step, no CDN, and
no request that leaves the service (the page's Content-Security-Policy allows its own origin
only). The page uses the public API as any client does (``/v1/...``, the realtime WebSocket), with
the API key typed in when the service asks for one, so it needs no route of its own.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

WEB_DIR = Path(__file__).with_name("web")

#: Only the service itself: scripts, styles, the API, its WebSocket, and the browser's own blobs
#: (the audio player plays the file picked, a download is a blob).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; connect-src 'self' ws: wss:; media-src 'self' blob:; img-src 'self' data: blob:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


class _PageFiles(StaticFiles):
    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        response.headers["Cache-Control"] = "no-cache"  # a new release's page, not a stale one
        return response


def add_web_page(app: FastAPI) -> None:
    """The page at ``/ui/``, and ``/`` sending browsers there (under the app's route prefix)."""
    app.mount("/ui", _PageFiles(directory=WEB_DIR, html=True), name="ui")

    @app.get("/", include_in_schema=False)
    async def page(request: Request) -> RedirectResponse:
        return RedirectResponse(f"{request.scope.get('root_path', '')}/ui/")
