"""HTTP API types (pydantic), kept apart from the handlers that serve them."""

from __future__ import annotations

from pydantic import BaseModel, Field

from pipeline.schemas import ModelInfo


class ErrorDetail(BaseModel):
    message: str
    """What went wrong and what to do about it."""
    type: str
    """Error class: ``invalid_request_error``, ``server_error``, ``overloaded_error`` (503) or
    ``rate_limit_error`` (429)."""
    code: str
    """Stable machine-readable code, e.g. ``empty_file``, ``audio_too_long``."""
    param: str | None = None
    """The request parameter at fault, when there is one."""


class ErrorResponse(BaseModel):
    error: ErrorDetail


class StageHealth(BaseModel):
    deployment: str
    status: str
    """Serve's deployment status (``HEALTHY``, ``UPDATING``, ``UNHEALTHY``, ...)."""
    running_replicas: int


class LivenessResponse(BaseModel):
    status: str
    """``ok``: the ingress answers."""


class HealthResponse(BaseModel):
    status: str
    """``ok`` when every stage has a running replica, else ``unavailable``."""
    stages: dict[str, StageHealth]


class ModelsResponse(BaseModel):
    stages: dict[str, ModelInfo] = Field(
        description="Per stage: the model, device, dtype, load time and running replica count."
    )


def error_body(
    message: str, code: str, type: str = "invalid_request_error", param: str | None = None
) -> dict:
    return ErrorResponse(error=ErrorDetail(message=message, type=type, code=code, param=param)).model_dump()


class WindowProgress(BaseModel):
    """Stream event ``progress``: sent each time a window is transcribed (in any order), and each
    time more of a long file has been cut into windows."""

    windows_done: int
    windows_total: int
    """Windows planned so far (final once ``planning_done``)."""
    audio_seconds_done: float
    """Seconds of (speech) windows transcribed so far."""
    audio_seconds_total: float
    """Seconds of the windows planned so far; silence cut out by VAD is in none."""
    audio_planned_s: float = 0.0
    """How far into the audio the windows are planned (a long file is planned chunk by chunk)."""
    duration_s: float | None = None
    """The audio's length: as the container declares it until planning is done, then as decoded."""
    planning_done: bool = True
    """Every window is planned: the totals are final."""
