"""The Realtime transcription protocol, held to the official ``openai`` SDK without a server.

Client events are what the SDK itself writes to the socket: its connection objects are driven
over a stand-in socket that records each frame, with sessions built as the SDK's own param
TypedDicts (so mypy checks them against the SDK too). Server events must validate as the SDK's
models, with no key those models do not know, and parse as the SDK's client parses them.
"""

from __future__ import annotations

import base64
import json
import pickle
from typing import Any, cast

import pytest
from openai.resources.beta.realtime.realtime import RealtimeConnection as BetaConnection
from openai.resources.realtime.realtime import RealtimeConnection
from openai.types import realtime as ga
from openai.types.beta import realtime as beta
from openai.types.beta.realtime.transcription_session import ClientSecret
from openai.types.beta.realtime.transcription_session_update_param import Session as BetaSessionParam
from openai.types.realtime.realtime_transcription_session_create_request import (
    RealtimeTranscriptionSessionCreateRequest,
)
from pydantic import BaseModel, TypeAdapter, ValidationError

from deployments import realtime_events as ev
from deployments import realtime_protocol as rp
from deployments.realtime_protocol import RealtimeProtocolError
from deployments.realtime_session import SessionConfig
from pipeline.live_turns import TurnDetection


class _Socket:
    """Stands in for the WebSocket: keeps each frame the SDK sends."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def send(self, data: str) -> None:
        self.sent.append(data)


@pytest.fixture
def socket() -> _Socket:
    return _Socket()


@pytest.fixture
def conn(socket: _Socket) -> RealtimeConnection:
    return RealtimeConnection(cast(Any, socket))


@pytest.fixture
def beta_conn(socket: _Socket) -> BetaConnection:
    return BetaConnection(cast(Any, socket))


def _last(socket: _Socket) -> rp.ClientEvent:
    return rp.parse_client_event(socket.sent[-1])


# --- server events --------------------------------------------------------------------------------


def _no_unknown_keys(model: Any) -> None:
    """The SDK's models keep unknown keys: fail on any, so a misspelt key cannot pass."""
    if isinstance(model, list):
        for item in model:
            _no_unknown_keys(item)
    elif isinstance(model, BaseModel):
        assert not model.model_extra, f"{type(model).__name__} does not know {model.model_extra}"
        for value in model.__dict__.values():
            _no_unknown_keys(value)


def _sdk_event(event: dict[str, Any], sdk_type: type[BaseModel]) -> Any:
    assert event["event_id"].startswith("event_")
    parsed = sdk_type.model_validate(json.loads(json.dumps(event)))
    _no_unknown_keys(parsed)
    assert isinstance(TypeAdapter(ga.RealtimeServerEvent).validate_python(event), sdk_type)
    assert isinstance(RealtimeConnection(cast(Any, _Socket())).parse_event(json.dumps(event)), sdk_type)
    return parsed


class _SocketTranscriptionSession(beta.TranscriptionSession):
    """The beta type requires ``client_secret``, which its own docstring says a session updated over
    the WebSocket does not carry (the SDK's client never validates, so it reads fine)."""

    client_secret: ClientSecret | None = None  # type: ignore[assignment]


class _SocketTranscriptionSessionUpdated(beta.TranscriptionSessionUpdatedEvent):
    session: _SocketTranscriptionSession


CONFIGS = [
    SessionConfig(),
    SessionConfig(
        format="audio/pcmu", model="whisper-1", language="de", prompt="Ray Serve", turn_detection=None
    ),
    SessionConfig(format="audio/pcma", turn_detection=TurnDetection(0.7, 100, 800)),
]


@pytest.mark.parametrize("config", CONFIGS)
def test_ga_session_events_are_the_sdks(config: SessionConfig) -> None:
    for build, sdk_type in (
        (ev.session_created, ga.SessionCreatedEvent),
        (ev.session_updated, ga.SessionUpdatedEvent),
    ):
        parsed = _sdk_event(build(config), sdk_type)
        assert isinstance(parsed.session, RealtimeTranscriptionSessionCreateRequest)
        audio_input = parsed.session.model_dump()["audio"]["input"]
        assert audio_input["format"]["type"] == config.format
        assert audio_input["transcription"]["language"] == config.language
        assert (audio_input["turn_detection"] is None) == (config.turn_detection is None)
    assert config.ga_session()["audio"]["input"]["format"] == (
        {"type": "audio/pcm", "rate": 24000} if config.format == "audio/pcm" else {"type": config.format}
    )


@pytest.mark.parametrize("config", [c.model_copy(update={"beta": True}) for c in CONFIGS])
def test_beta_session_events_are_the_betas(config: SessionConfig) -> None:
    updated = ev.session_updated(config)
    assert updated["type"] == "transcription_session.updated"
    parsed = _SocketTranscriptionSessionUpdated.model_validate(updated)
    _no_unknown_keys(parsed)
    assert parsed.session.input_audio_format == {"audio/pcm": "pcm16", "audio/pcmu": "g711_ulaw"}.get(
        config.format, "g711_alaw"
    )
    assert (parsed.session.turn_detection is None) == (config.turn_detection is None)
    sdk_parsed = BetaConnection(cast(Any, _Socket())).parse_event(json.dumps(updated))
    assert isinstance(sdk_parsed, beta.TranscriptionSessionUpdatedEvent)
    with pytest.raises(ValidationError) as missing:  # only the REST-only key is missing
        beta.TranscriptionSessionUpdatedEvent.model_validate(updated)
    assert [e["loc"] for e in missing.value.errors()] == [("session", "client_secret")]
    created = ev.session_created(config)
    assert created["type"] == "transcription_session.created"
    _no_unknown_keys(_SocketTranscriptionSession.model_validate(created["session"]))


def test_buffer_and_transcription_events_are_the_sdks() -> None:
    item, previous = ev.new_item_id(), ev.new_item_id()
    assert item.startswith("item_") and item != previous
    events: list[tuple[dict[str, Any], type[BaseModel]]] = [
        (ev.speech_started(item, 1200), ga.InputAudioBufferSpeechStartedEvent),
        (ev.speech_stopped(item, 2500), ga.InputAudioBufferSpeechStoppedEvent),
        (ev.committed(item, previous), ga.InputAudioBufferCommittedEvent),
        (ev.committed(item, None), ga.InputAudioBufferCommittedEvent),
        (ev.cleared(), ga.InputAudioBufferClearedEvent),
        (ev.transcription_delta(item, "Hello"), ga.ConversationItemInputAudioTranscriptionDeltaEvent),
        (
            ev.transcription_completed(item, "Hello.", 1.3),
            ga.ConversationItemInputAudioTranscriptionCompletedEvent,
        ),
        (
            ev.transcription_failed(item, "asr_failed", "It failed."),
            ga.ConversationItemInputAudioTranscriptionFailedEvent,
        ),
    ]
    for event, sdk_type in events:
        parsed = _sdk_event(event, sdk_type)
        if "item_id" in event:
            assert parsed.item_id == item
    completed = _sdk_event(
        ev.transcription_completed(item, "Hi", 2.5), ga.ConversationItemInputAudioTranscriptionCompletedEvent
    )
    assert (completed.transcript, completed.content_index, completed.usage.seconds) == ("Hi", 0, 2.5)
    # A beta client reads the same events with the beta types.
    beta_types = [getattr(beta, sdk_type.__name__) for _, sdk_type in events]
    for (event, _), beta_type in zip(events, beta_types, strict=True):
        beta_type.model_validate(event)
    assert len({event["event_id"] for event, _ in events}) == len(events)


def test_error_event_is_the_sdks() -> None:
    error = RealtimeProtocolError("Bad rate.", "invalid_value", "session.audio.input.format.rate", "evt_7")
    parsed = _sdk_event(ev.error_event(error), ga.RealtimeErrorEvent)
    assert parsed.error.model_dump() == {
        "message": "Bad rate.",
        "type": "invalid_request_error",
        "code": "invalid_value",
        "event_id": "evt_7",
        "param": "session.audio.input.format.rate",
    }
    server = _sdk_event(
        ev.error_event(RealtimeProtocolError("Down.", "overloaded", type="server_error")),
        ga.RealtimeErrorEvent,
    )
    assert (server.error.type, server.error.param, server.error.event_id) == ("server_error", None, None)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.message, copy.code, copy.param, copy.event_id, copy.type) == (
        error.message,
        error.code,
        error.param,
        error.event_id,
        error.type,
    )


# --- client events, as the SDK sends them ---------------------------------------------------------


def test_ga_update_as_the_sdk_sends_it(conn: RealtimeConnection, socket: _Socket) -> None:
    session: ga.RealtimeTranscriptionSessionCreateRequestParam = {
        "type": "transcription",
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "transcription": {
                    "model": "whisper-1",
                    "language": "German",
                    "prompt": "Ray",
                    "keywords": ["x"],
                },
                "turn_detection": {
                    "type": "server_vad",
                    "threshold": 0.6,
                    "prefix_padding_ms": 200,
                    "silence_duration_ms": 700,
                    "create_response": False,
                    "idle_timeout_ms": 5000,
                },
            }
        },
        "include": ["item.input_audio_transcription.logprobs"],
    }
    conn.session.update(session=session, event_id="evt_1")
    event = _last(socket)
    assert isinstance(event, rp.SessionUpdateEvent) and event.event_id == "evt_1"
    assert event.apply(SessionConfig(beta=True)) == SessionConfig(
        model="whisper-1", language="de", prompt="Ray", turn_detection=TurnDetection(0.6, 200, 700)
    )


@pytest.mark.parametrize("fmt", ["audio/pcm", "audio/pcmu", "audio/pcma"])
def test_ga_formats(conn: RealtimeConnection, socket: _Socket, fmt: Any) -> None:
    conn.session.update(session={"type": "transcription", "audio": {"input": {"format": {"type": fmt}}}})
    assert cast(rp.SessionUpdateEvent, _last(socket)).apply(SessionConfig()).format == fmt


@pytest.mark.parametrize(
    ("beta_format", "fmt"), [("pcm16", "audio/pcm"), ("g711_ulaw", "audio/pcmu"), ("g711_alaw", "audio/pcma")]
)
def test_beta_update_as_the_sdk_sends_it(
    beta_conn: BetaConnection, socket: _Socket, beta_format: Any, fmt: str
) -> None:
    session: BetaSessionParam = {
        "input_audio_format": beta_format,
        "input_audio_transcription": {"model": "whisper-1", "language": "en", "prompt": "Hi"},
        "turn_detection": {
            "type": "server_vad",
            "threshold": 0.4,
            "prefix_padding_ms": 100,
            "silence_duration_ms": 300,
        },
        "include": ["item.input_audio_transcription.logprobs"],
        "modalities": ["text"],
        "client_secret": {"expires_at": {"anchor": "created_at", "seconds": 600}},
    }
    beta_conn.transcription_session.update(session=session, event_id="evt_b")
    event = _last(socket)
    assert isinstance(event, rp.TranscriptionSessionUpdateEvent) and event.event_id == "evt_b"
    config = event.apply(SessionConfig())
    assert config == SessionConfig(
        format=fmt,
        model="whisper-1",
        language="en",
        prompt="Hi",
        turn_detection=TurnDetection(0.4, 100, 300),
        beta=True,
    )
    assert ev.session_updated(config)["type"] == "transcription_session.updated"


def test_ga_update_sent_as_the_sdks_model(conn: RealtimeConnection, socket: _Socket) -> None:
    """``send`` of a model writes only the keys that were set, and an explicit null stays."""
    session = ga.RealtimeTranscriptionSessionCreateRequest(
        type="transcription", audio={"input": {"turn_detection": None, "noise_reduction": None}}
    )
    conn.send(ga.SessionUpdateEvent(type="session.update", session=session))
    current = SessionConfig(format="audio/pcmu", language="fr")
    assert cast(rp.SessionUpdateEvent, _last(socket)).apply(current) == current.model_copy(
        update={"turn_detection": None}
    )


def test_turn_detection_null_means_manual_commit(
    conn: RealtimeConnection, beta_conn: BetaConnection, socket: _Socket
) -> None:
    conn.session.update(session={"type": "transcription", "audio": {"input": {"turn_detection": None}}})
    assert cast(rp.SessionUpdateEvent, _last(socket)).apply(SessionConfig()).turn_detection is None
    # The beta param type has no null for turn_detection, though the beta API takes it.
    beta_conn.transcription_session.update(session=cast(BetaSessionParam, {"turn_detection": None}))
    assert (
        cast(rp.TranscriptionSessionUpdateEvent, _last(socket)).apply(SessionConfig()).turn_detection is None
    )


def test_partial_updates_keep_what_was_left_out() -> None:
    current = SessionConfig(
        format="audio/pcma",
        model="whisper-1",
        language="de",
        prompt="P",
        turn_detection=TurnDetection(0.7, 100, 900),
    )

    def ga_update(audio_input: dict[str, Any]) -> SessionConfig:
        text = json.dumps(
            {"type": "session.update", "session": {"type": "transcription", "audio": {"input": audio_input}}}
        )
        return cast(rp.SessionUpdateEvent, rp.parse_client_event(text)).apply(current)

    assert ga_update({}) == current
    assert ga_update({"format": None, "noise_reduction": None}) == current
    assert ga_update({"transcription": {"language": "fr"}}) == current.model_copy(update={"language": "fr"})
    assert ga_update({"transcription": {"prompt": None}}) == current.model_copy(update={"prompt": None})
    assert ga_update({"transcription": None}) == current.model_copy(
        update={"model": None, "language": None, "prompt": None}
    )
    vad = ga_update({"turn_detection": {"type": "server_vad", "threshold": 0.3}}).turn_detection
    assert vad == TurnDetection(0.3, 100, 900)
    manual = current.model_copy(update={"turn_detection": None})
    reenabled = cast(
        rp.SessionUpdateEvent,
        rp.parse_client_event(
            json.dumps(
                {
                    "type": "session.update",
                    "session": {
                        "type": "transcription",
                        "audio": {"input": {"turn_detection": {"type": "server_vad"}}},
                    },
                }
            )
        ),
    ).apply(manual)
    assert reenabled.turn_detection == TurnDetection()
    beta_event = rp.parse_client_event(
        '{"type": "transcription_session.update", "session": {"input_audio_transcription": {"prompt": "Q"}}}'
    )
    assert cast(rp.TranscriptionSessionUpdateEvent, beta_event).apply(current) == current.model_copy(
        update={"prompt": "Q", "beta": True}
    )

    def beta_update(session: dict[str, Any]) -> SessionConfig:
        text = json.dumps({"type": "transcription_session.update", "session": session})
        return cast(rp.TranscriptionSessionUpdateEvent, rp.parse_client_event(text)).apply(current)

    assert beta_update({}) == current.model_copy(update={"beta": True})
    assert beta_update({"input_audio_format": "pcm16"}).format == "audio/pcm"
    # The beta type leaves turn_detection.type optional: left out, it is server_vad.
    assert beta_update({"turn_detection": {"silence_duration_ms": 200}}).turn_detection == TurnDetection(
        0.7, 100, 200
    )
    assert beta_update({"input_audio_transcription": None}).model is None


def test_buffer_events_as_the_sdk_sends_them(
    conn: RealtimeConnection, beta_conn: BetaConnection, socket: _Socket
) -> None:
    samples = bytes(range(256)) * 10
    conn.input_audio_buffer.append(audio=base64.b64encode(samples).decode(), event_id="evt_a")
    append = _last(socket)
    assert isinstance(append, rp.InputAudioBufferAppendEvent)
    assert append.audio_bytes() == samples and append.event_id == "evt_a"
    conn.input_audio_buffer.commit()
    assert isinstance(_last(socket), rp.InputAudioBufferCommitEvent)
    conn.input_audio_buffer.clear(event_id="evt_c")
    clear = _last(socket)
    assert isinstance(clear, rp.InputAudioBufferClearEvent) and clear.event_id == "evt_c"
    beta_conn.input_audio_buffer.append(audio=base64.b64encode(b"\x00\x01").decode())
    assert cast(rp.InputAudioBufferAppendEvent, _last(socket)).audio_bytes() == b"\x00\x01"


# --- bad input ------------------------------------------------------------------------------------

GA = "session.update"
BETA = "transcription_session.update"


def _ga(audio_input: dict[str, Any], **session: Any) -> str:
    return json.dumps(
        {
            "type": GA,
            "event_id": "evt_x",
            "session": {"type": "transcription", "audio": {"input": audio_input}, **session},
        }
    )


def _beta(**session: Any) -> str:
    return json.dumps({"type": BETA, "event_id": "evt_x", "session": session})


BAD = [
    ("not json", "invalid_json", None, None),
    ("[1, 2]", "missing_required_parameter", "type", None),
    ('{"event_id": "evt_x"}', "missing_required_parameter", "type", "evt_x"),
    ('{"type": 3}', "missing_required_parameter", "type", None),
    ('{"type": "response.create", "event_id": "evt_x"}', "unknown_event_type", "type", "evt_x"),
    (
        json.dumps({"type": GA, "event_id": "evt_x", "session": {"type": "realtime"}}),
        "invalid_value",
        "session.type",
        "evt_x",
    ),
    (json.dumps({"type": GA, "session": {"audio": {}}}), "missing_required_parameter", "session.type", None),
    (json.dumps({"type": GA}), "missing_required_parameter", "session", None),
    (json.dumps({"type": GA, "session": "x"}), "invalid_value", "session", None),
    (
        _ga({"turn_detection": {"type": "semantic_vad", "eagerness": "low"}}),
        "invalid_value",
        "session.audio.input.turn_detection.type",
        "evt_x",
    ),
    (
        _ga({"noise_reduction": {"type": "near_field"}}),
        "invalid_value",
        "session.audio.input.noise_reduction",
        "evt_x",
    ),
    (
        _ga({"format": {"type": "audio/pcm", "rate": 16000}}),
        "invalid_value",
        "session.audio.input.format.rate",
        "evt_x",
    ),
    (_ga({"format": {"type": "audio/opus"}}), "invalid_value", "session.audio.input.format.type", "evt_x"),
    (
        _ga({"turn_detection": {"type": "server_vad", "threshold": 1.5}}),
        "invalid_value",
        "session.audio.input.turn_detection.threshold",
        "evt_x",
    ),
    (
        _ga({"turn_detection": {"type": "server_vad", "silence_duration_ms": True}}),
        "invalid_value",
        "session.audio.input.turn_detection.silence_duration_ms",
        "evt_x",
    ),
    (
        _ga({"transcription": {"language": "klingon"}}),
        "invalid_value",
        "session.audio.input.transcription.language",
        "evt_x",
    ),
    (_beta(turn_detection={"type": "semantic_vad"}), "invalid_value", "session.turn_detection.type", "evt_x"),
    (
        _beta(input_audio_noise_reduction={"type": "far_field"}),
        "invalid_value",
        "session.input_audio_noise_reduction",
        "evt_x",
    ),
    (_beta(input_audio_format="pcm24"), "invalid_value", "session.input_audio_format", "evt_x"),
    (
        '{"type": "input_audio_buffer.append", "event_id": "evt_x"}',
        "missing_required_parameter",
        "audio",
        "evt_x",
    ),
    ('{"type": "input_audio_buffer.append", "audio": 5}', "invalid_value", "audio", None),
    (
        '{"type": "input_audio_buffer.append", "audio": "not base64!", "event_id": "evt_x"}',
        "invalid_base64",
        "audio",
        "evt_x",
    ),
    ('{"type": "input_audio_buffer.append", "audio": "AAE"}', "invalid_base64", "audio", None),
]


@pytest.mark.parametrize(("text", "code", "param", "event_id"), BAD)
def test_bad_input_is_a_protocol_error(text: str, code: str, param: str | None, event_id: str | None) -> None:
    with pytest.raises(RealtimeProtocolError) as caught:
        rp.parse_client_event(text)
    error = caught.value
    assert (error.code, error.param, error.event_id, error.type) == (
        code,
        param,
        event_id,
        "invalid_request_error",
    )
    assert error.message.endswith(".") and (
        param is None or code == "invalid_base64" or param in error.message
    )
    _sdk_event(ev.error_event(error), ga.RealtimeErrorEvent)


def test_error_messages_say_what_to_do() -> None:
    def message(text: str) -> str:
        with pytest.raises(RealtimeProtocolError) as caught:
            rp.parse_client_event(text)
        return caught.value.message

    assert "input_audio_buffer.commit" in message('{"type": "response.create"}')
    assert "intent=transcription" in message(json.dumps({"type": GA, "session": {"type": "realtime"}}))
    assert "server_vad" in message(_ga({"turn_detection": {"type": "semantic_vad"}}))
    assert "null" in message(_ga({"noise_reduction": {"type": "near_field"}}))
    assert "24000" in message(_ga({"format": {"type": "audio/pcm", "rate": 16000}}))
    assert "'audio/pcmu'" in message(_ga({"format": {"type": "audio/opus"}}))
