"""The API's one error contract: every error as OpenAI's JSON shape, with its HTTP status.

``{"error": {"message", "type", "code", "param"}}`` on every route and in every stream. The core
(``pipeline``) raises :class:`SpeechgraphError`s that know nothing of HTTP; the status of each is
chosen here from its ``code``. Errors only the service can raise (a model name it does not serve,
a stage at capacity or restarting) are :class:`ApiError`s that carry their status and headers.

On OpenAI's routes a file that is not usable audio is 400 ``invalid_request_error`` with
``param: "file"``, as OpenAI answers it, so the official SDKs raise ``BadRequestError``; the
document route keeps the precise statuses (415 not audio, 422 undecodable).
"""

from __future__ import annotations

import math

from ray.exceptions import RayTaskError

from deployments.protocol import error_body
from pipeline.errors import SpeechgraphError

RETRY_AFTER_S = 2

#: The status of each core error code; any other core error is the client's, 400.
STATUS_BY_CODE: dict[str, int] = {
    "unsupported_media": 415,
    "no_audio_stream": 415,
    "undecodable_audio": 422,
    "audio_too_long": 413,
}

#: Codes that mean "this file is not usable audio": 400 on OpenAI's routes.
NOT_AUDIO_CODES = frozenset({"unsupported_media", "no_audio_stream", "undecodable_audio"})


class ApiError(SpeechgraphError):
    """An error of the service itself, with its HTTP status, OpenAI error type and headers."""

    status: int = 400
    type: str = "invalid_request_error"
    headers: dict[str, str] | None = None


class ModelNotFound(ApiError):
    """The request names a model the service does not serve (it never loads one on demand)."""

    code = "model_not_found"
    status = 404
    param = "model"


class Overloaded(ApiError):
    """A stage's queue is full (its ``max_queued_requests``)."""

    code = "overloaded"

    def __init__(self, message: str, status: int = 503, retry_after_s: float = RETRY_AFTER_S):
        super().__init__(message)
        self.args = (message, status, retry_after_s)
        self.status = status
        self.type = "rate_limit_error" if status == 429 else "overloaded_error"
        self.headers = {"Retry-After": str(max(1, math.ceil(retry_after_s)))}


class StageUnavailable(ApiError):
    """A stage has no live replica (starting, restarting, or failed)."""

    code = "stage_unavailable"
    status = 503
    type = "server_error"
    headers = {"Retry-After": str(RETRY_AFTER_S)}  # noqa: RUF012 (read-only, shared by design)


def unwrapped(exc: BaseException) -> BaseException:
    """The exception a stage raised, without Ray's wrapper around it."""
    return exc.cause if isinstance(exc, RayTaskError) and exc.cause is not None else exc


def http_status(err: SpeechgraphError, *, openai_route: bool = False) -> int:
    """The HTTP status ``err`` is answered with."""
    if isinstance(err, ApiError):
        return err.status
    if openai_route and err.code in NOT_AUDIO_CODES:
        return 400
    return STATUS_BY_CODE.get(err.code, 400)


def error_type(status: int) -> str:
    """OpenAI's error type for a client error's status."""
    return "invalid_request_error" if status < 500 else "server_error"


def speechgraph_error_body(err: SpeechgraphError, status: int) -> dict:
    kind = err.type if isinstance(err, ApiError) else error_type(status)
    return error_body(str(err.args[0]), code=err.code, type=kind, param=err.param)
