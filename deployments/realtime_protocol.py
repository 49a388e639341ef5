"""OpenAI's Realtime API, transcription sessions only: the client events and the session they
configure (the server events are built in ``deployments.realtime_events``).

Kept apart from the WebSocket handler (as vLLM keeps its protocol.py apart from serving) and free
of Ray, so every shape is tested against the official ``openai`` SDK's own types without a server.
A session is spoken in one of two dialects: GA (``session.update`` with ``session.type
"transcription"``, formats ``audio/pcm``, ``audio/pcmu``, ``audio/pcma``) or the older beta
(``transcription_session.update``, formats ``pcm16``, ``g711_ulaw``, ``g711_alaw``), which SDKs
and tools written before GA still send; each answer goes out in the dialect the client spoke.

What a session may set, and what is refused: ``deployments.realtime_session``.
"""

from __future__ import annotations

import base64
import json
from typing import Annotated, Any, Literal, cast

from pydantic import Field, PrivateAttr, ValidationError

from deployments.realtime_session import (
    AudioInput,
    BetaSession,
    FrozenModel,
    Session,
    SessionConfig,
    apply_audio_input,
)


class RealtimeProtocolError(Exception):
    """A client event that cannot be served as sent; answered with an ``error`` event, after which
    the session stays open (as OpenAI's does)."""

    def __init__(
        self,
        message: str,
        code: str,
        param: str | None = None,
        event_id: str | None = None,
        type: str = "invalid_request_error",
    ):
        super().__init__(message, code, param, event_id, type)
        self.message = message
        self.code = code
        self.param = param
        """The field at fault as a dotted path (``session.audio.input.format.rate``), if one is."""
        self.event_id = event_id
        """The ``event_id`` of the client event at fault, when it had one."""
        self.type = type


class _ClientEvent(FrozenModel):
    event_id: str | None = None
    """The client's id for the event, returned in any error it causes."""


class SessionUpdateEvent(_ClientEvent):
    type: Literal["session.update"]
    session: Session

    def apply(self, current: SessionConfig) -> SessionConfig:
        audio = self.session.audio
        return apply_audio_input(current, (audio and audio.input) or AudioInput(), beta=False)


class TranscriptionSessionUpdateEvent(_ClientEvent):
    type: Literal["transcription_session.update"]
    session: BetaSession

    def apply(self, current: SessionConfig) -> SessionConfig:
        return apply_audio_input(current, self.session.audio_input(), beta=True)


class InputAudioBufferAppendEvent(_ClientEvent):
    type: Literal["input_audio_buffer.append"]
    audio: str
    """Base64 of audio in the session's format."""
    _audio: bytes = PrivateAttr(b"")

    def model_post_init(self, context: Any, /) -> None:
        try:
            self._audio = base64.b64decode(self.audio, validate=True)
        except ValueError:
            raise RealtimeProtocolError(
                "'audio' is not valid base64. Send the audio bytes base64-encoded (standard alphabet, "
                "with padding) in the session's format.",
                "invalid_base64",
                "audio",
                self.event_id,
            ) from None

    def audio_bytes(self) -> bytes:
        """The decoded audio; bad base64 is refused when the event is built."""
        return self._audio


class InputAudioBufferCommitEvent(_ClientEvent):
    type: Literal["input_audio_buffer.commit"]


class InputAudioBufferClearEvent(_ClientEvent):
    type: Literal["input_audio_buffer.clear"]


ClientEvent = Annotated[
    SessionUpdateEvent
    | TranscriptionSessionUpdateEvent
    | InputAudioBufferAppendEvent
    | InputAudioBufferCommitEvent
    | InputAudioBufferClearEvent,
    Field(discriminator="type"),
]
_CLIENT_EVENTS: dict[str, type[_ClientEvent]] = {
    "session.update": SessionUpdateEvent,
    "transcription_session.update": TranscriptionSessionUpdateEvent,
    "input_audio_buffer.append": InputAudioBufferAppendEvent,
    "input_audio_buffer.commit": InputAudioBufferCommitEvent,
    "input_audio_buffer.clear": InputAudioBufferClearEvent,
}


def parse_client_event(text: str) -> ClientEvent:
    """The event a text frame carries; every problem becomes a :class:`RealtimeProtocolError`."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise RealtimeProtocolError(
            "The message is not valid JSON. Send each client event as one JSON object in a text frame.",
            "invalid_json",
        ) from None
    fields = data if isinstance(data, dict) else {}
    event_id = fields.get("event_id") if isinstance(fields.get("event_id"), str) else None
    kind = fields.get("type")
    if not isinstance(kind, str):
        message = (
            'An event is a JSON object with a string "type", e.g. {"type": "input_audio_buffer.commit"}.'
        )
        raise RealtimeProtocolError(message, "missing_required_parameter", "type", event_id)
    model = _CLIENT_EVENTS.get(kind)
    if model is None:
        message = f"Unknown event type {kind!r}. Transcription sessions take {', '.join(_CLIENT_EVENTS)}."
        raise RealtimeProtocolError(message, "unknown_event_type", "type", event_id)
    try:
        return cast(ClientEvent, model.model_validate(data))
    except ValidationError as exc:
        error = exc.errors()[0]
        param = ".".join(str(part) for part in error["loc"])
        if error["type"] == "missing":
            message, code = f"Missing required parameter '{param}'.", "missing_required_parameter"
        else:
            what = "Input should be a JSON object" if error["type"] == "model_type" else error["msg"]
            shown = "" if error["type"] == "refused" else f" (got {json.dumps(error['input'])[:80]})"
            message, code = (
                f"Invalid value for '{param}': {what[0].lower()}{what[1:]}{shown}.",
                "invalid_value",
            )
        raise RealtimeProtocolError(message, code, param, event_id) from None
