"""The ingress's FastAPI app: its middlewares, its error handlers and its OpenAPI schema.

The routes are declared on :data:`api` by ``deployments.ingress``. Serve runs a frozen copy of
the app in the replica, so the middlewares read their settings from the replica's deployment
object (:func:`ingress_replica`) rather than from state stored on the app.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from ray import serve
from starlette.exceptions import HTTPException

from deployments.api_key import ApiKeyAuth
from deployments.http_errors import http_status, speechgraph_error_body, unwrapped
from deployments.protocol import ErrorResponse, error_body
from deployments.request_log import RequestRecorder
from deployments.upload_limit import UploadSizeLimit
from deployments.web_page import add_web_page
from pipeline.errors import SpeechgraphError

api = FastAPI(
    title="speechgraph",
    description="Speech-to-text as an autoscaling Ray Serve graph: preprocess -> Whisper -> LLM.",
    version="0.1.0",
)

#: Every status the API answers with an error body, for the routes' OpenAPI ``responses``.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse} for status in (400, 401, 404, 413, 415, 422, 429, 503)
}

OPENAI_ROUTES = "/v1/audio/"


def ingress_replica() -> Any:
    """The ingress deployment object serving this replica."""
    return serve.get_replica_context().servable_object


def request_id() -> str | None:
    """Serve's id for the current HTTP request (also sent back as the X-Request-Id header)."""
    return serve.context._get_serve_request_context().request_id or None


api.add_middleware(UploadSizeLimit, max_bytes=lambda: ingress_replica().settings.audio.max_upload_bytes)
api.add_middleware(ApiKeyAuth, keys=lambda: ingress_replica().api_keys)
api.add_middleware(RequestRecorder, metrics=lambda: ingress_replica().metrics, routes=api.routes)  # outermost
add_web_page(api)


def openapi_with_api_key(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema of ``app`` plus the API key: a bearer scheme that every ``/v1`` route
    accepts and, when the service has keys configured, needs (``[{}, bearer]``: optional in the
    schema, since the same code runs with and without keys)."""
    if app.openapi_schema is None:
        schema = FastAPI.openapi(app)
        schema.setdefault("components", {})["securitySchemes"] = {
            "apiKey": {
                "type": "http",
                "scheme": "bearer",
                "description": "Needed when the service has an API key (api.api_key_env is set).",
            }
        }
        for path, operations in schema["paths"].items():
            if path.startswith("/v1/"):
                for operation in operations.values():
                    operation["security"] = [{}, {"apiKey": []}]
    return app.openapi_schema or {}


@api.exception_handler(SpeechgraphError)
async def _speechgraph_error(request: Request, exc: Exception) -> JSONResponse:
    err = unwrapped(exc)
    assert isinstance(err, SpeechgraphError)
    status = http_status(err, openai_route=request.url.path.startswith(OPENAI_ROUTES))
    headers = getattr(err, "headers", None)
    return JSONResponse(speechgraph_error_body(err, status), status_code=status, headers=headers)


@api.exception_handler(RequestValidationError)
async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0]
    # loc is ("body", field[, list index ...]): the field is the parameter to name.
    names = [part for part in first.get("loc", ())[1:] if isinstance(part, str)]
    param = names[0] if names else None
    return JSONResponse(
        error_body(f"Invalid parameter {param!r}: {first['msg']}.", code="invalid_parameter", param=param),
        status_code=400,
    )


@api.exception_handler(HTTPException)
async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return JSONResponse(
        error_body(str(exc.detail), code=code),
        status_code=exc.status_code,
        headers=getattr(exc, "headers", None),
    )


@api.exception_handler(Exception)
async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    # A bug, not the client's fault: still answer in the API's error shape, with the request id.
    message = (
        f"Internal error ({exc.__class__.__name__}) in request {request_id()}; "
        "the replica logs carry that id."
    )
    return JSONResponse(error_body(message, code="internal_error", type="server_error"), status_code=500)
