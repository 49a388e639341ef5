"""The server events of OpenAI's Realtime API, transcription sessions, as JSON-ready dicts in the
shapes of the ``openai`` SDK's ``openai.types.realtime`` (``tests/test_realtime_protocol.py``
validates each against them)."""

from __future__ import annotations

import uuid
from typing import Any

from deployments.protocol import error_body
from deployments.realtime_protocol import RealtimeProtocolError
from deployments.realtime_session import SessionConfig


def _event(type: str, **fields: Any) -> dict[str, Any]:
    return {"event_id": f"event_{uuid.uuid4().hex}", "type": type, **fields}


def new_item_id() -> str:
    return f"item_{uuid.uuid4().hex}"


def session_created(config: SessionConfig) -> dict[str, Any]:
    """First server event. A beta client gets ``transcription_session.created``, as OpenAI's beta
    API sent for ``intent=transcription`` (the SDK has no type for it)."""
    if config.beta:
        return _event("transcription_session.created", session=config.beta_session())
    return _event("session.created", session=config.ga_session())


def session_updated(config: SessionConfig) -> dict[str, Any]:
    if config.beta:
        return _event("transcription_session.updated", session=config.beta_session())
    return _event("session.updated", session=config.ga_session())


def speech_started(item_id: str, audio_start_ms: int) -> dict[str, Any]:
    return _event("input_audio_buffer.speech_started", item_id=item_id, audio_start_ms=audio_start_ms)


def speech_stopped(item_id: str, audio_end_ms: int) -> dict[str, Any]:
    return _event("input_audio_buffer.speech_stopped", item_id=item_id, audio_end_ms=audio_end_ms)


def committed(item_id: str, previous_item_id: str | None) -> dict[str, Any]:
    return _event("input_audio_buffer.committed", item_id=item_id, previous_item_id=previous_item_id)


def cleared() -> dict[str, Any]:
    return _event("input_audio_buffer.cleared")


_TRANSCRIPTION = "conversation.item.input_audio_transcription"


def transcription_delta(item_id: str, delta: str) -> dict[str, Any]:
    return _event(f"{_TRANSCRIPTION}.delta", item_id=item_id, content_index=0, delta=delta)


def transcription_completed(item_id: str, transcript: str, audio_seconds: float) -> dict[str, Any]:
    usage = {"type": "duration", "seconds": audio_seconds}
    return _event(
        f"{_TRANSCRIPTION}.completed", item_id=item_id, content_index=0, transcript=transcript, usage=usage
    )


def transcription_failed(item_id: str, code: str, message: str) -> dict[str, Any]:
    error = {"type": "transcription_error", "code": code, "message": message, "param": None}
    return _event(f"{_TRANSCRIPTION}.failed", item_id=item_id, content_index=0, error=error)


def error_event(error: RealtimeProtocolError) -> dict[str, Any]:
    """``error``: the HTTP API's error body plus the client event's id."""
    body = error_body(error.message, error.code, error.type, error.param)["error"]
    return _event("error", error={**body, "event_id": error.event_id})
