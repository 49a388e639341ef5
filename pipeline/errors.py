"""Typed errors that carry what the caller did wrong and what to do about it.

Every error a request can cause is a :class:`SpeechgraphError` with a stable ``code`` and the
HTTP ``status`` it maps to, so the HTTP layer turns it into a 4xx JSON body without guessing.
Errors keep ``args == (message,)`` so they pickle across Ray processes unchanged.
"""

from __future__ import annotations


class SpeechgraphError(Exception):
    """Base class: a request that cannot be served as asked."""

    code: str = "invalid_request"
    status: int = 400
    type: str = "invalid_request_error"
    param: str | None = None
    headers: dict[str, str] | None = None
    """Extra HTTP headers for the answer (e.g. ``Retry-After``)."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidParameter(SpeechgraphError):
    """A request parameter is missing or has a bad value; ``param`` names it."""

    code = "invalid_parameter"

    def __init__(self, message: str, param: str | None = None, code: str = "invalid_parameter"):
        super().__init__(message)
        self.args = (message, param, code)
        self.param = param
        self.code = code


class ModelNotFound(SpeechgraphError):
    """The request names a model the service does not serve (it never loads one on demand)."""

    code = "model_not_found"
    status = 404
    param = "model"
