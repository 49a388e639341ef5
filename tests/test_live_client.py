"""``python -m pipeline client --live``'s logic without a server: what :class:`LiveTranscript`
prints for each server event (built with the service's own event builders, so client and server
agree on the shapes), the live URL, the ``session.update`` the service parses, and the audio pieces.
The end-to-end run against the served graph is in ``tests/test_realtime.py``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from deployments import realtime_events as ev
from deployments.realtime_protocol import RealtimeProtocolError, parse_client_event
from deployments.realtime_session import SessionConfig
from pipeline.live_client import (
    CLEAR_LINE,
    RATE,
    LiveTranscript,
    Output,
    _chunks,
    realtime_url,
    session_update,
)


def printed(transcript: LiveTranscript, *events: dict) -> tuple[str, str]:
    """(stdout, stderr) of feeding ``events`` in order."""
    outputs = [out for event in events for out in transcript.feed(event)]
    return "".join(o.text for o in outputs if not o.stderr), "".join(o.text for o in outputs if o.stderr)


def test_partials_print_each_time_they_grow_then_the_final_line():
    transcript = LiveTranscript()
    out, err = printed(
        transcript,
        ev.session_created(SessionConfig()),
        ev.speech_started("a", 3240),
        ev.transcription_delta("a", "And so"),
        ev.transcription_delta("a", " "),  # no new words: nothing printed
        ev.transcription_delta("a", " my fellow"),
        ev.speech_stopped("a", 9000),
        ev.committed("a", None),
        ev.transcription_delta("a", " Americans"),
    )
    assert out == "~ And so\n~ And so my fellow\n~ And so my fellow Americans\n" and err == ""
    assert not transcript.finished
    out, _ = printed(transcript, ev.transcription_completed("a", "And so my fellow Americans", 5.8))
    assert out == "[00:03.2] And so my fellow Americans\n"
    assert transcript.finished and transcript.failed == transcript.errors == 0


def test_two_turns_each_get_their_final_line_in_order():
    transcript = LiveTranscript()
    out, _ = printed(
        transcript,
        ev.speech_started("a", 0),
        ev.committed("a", None),
        ev.speech_started("b", 65_000),
        ev.transcription_delta("b", "ask not"),
        ev.transcription_completed("a", "first", 2.0),
    )
    assert out == "~ ask not\n[00:00.0] first\n"
    assert not transcript.finished, "b is still open"
    out, _ = printed(transcript, ev.committed("b", "a"), ev.transcription_completed("b", " ask not ", 1.0))
    assert out == "[01:05.0] ask not\n"
    assert transcript.finished


def test_a_failed_turn_goes_to_stderr_and_counts():
    transcript = LiveTranscript()
    out, err = printed(
        transcript,
        ev.speech_started("a", 1500),
        ev.committed("a", None),
        ev.transcription_failed("a", "stage_unavailable", "The turn could not be transcribed: gone"),
    )
    assert out == ""
    assert (
        err
        == "error: [00:01.5] not transcribed: stage_unavailable: The turn could not be transcribed: gone\n"
    )
    assert transcript.finished and transcript.failed == 1


def test_error_events_go_to_stderr_with_their_code():
    transcript = LiveTranscript()
    out, err = printed(transcript, ev.error_event(RealtimeProtocolError("Bad key.", "invalid_api_key")))
    assert (out, err) == ("", "error: invalid_api_key: Bad key.\n")
    assert transcript.errors == 1 and transcript.finished
    assert transcript.note("the service closed the session") == [
        Output("error: the service closed the session\n", stderr=True)
    ]


def test_on_a_terminal_the_partial_line_is_rewritten_then_replaced_by_the_final():
    transcript = LiveTranscript(tty=True, width=20)
    assert transcript.feed(ev.speech_started("a", 0)) == []
    assert transcript.feed(ev.transcription_delta("a", "And so")) == [Output(CLEAR_LINE + "And so")]
    assert transcript.feed(ev.transcription_delta("a", " ")) == []
    # longer than the terminal: the newest words stay, so the line never wraps
    assert transcript.feed(ev.transcription_delta("a", " my fellow Americans")) == [
        Output(CLEAR_LINE + "…y fellow Americans")
    ]
    assert transcript.feed(ev.error_event(RealtimeProtocolError("Slow down.", "server_error"))) == [
        Output(CLEAR_LINE),
        Output("error: server_error: Slow down.\n", stderr=True),
        Output(CLEAR_LINE + "…y fellow Americans"),
    ]
    assert transcript.feed(ev.transcription_completed("a", "And so my fellow Americans", 3.0)) == [
        Output(CLEAR_LINE),
        Output("[00:00.0] And so my fellow Americans\n"),
    ]
    assert transcript.close() == [], "no status line left to end"
    transcript.feed(ev.speech_started("b", 4000))
    transcript.feed(ev.transcription_delta("b", "ask"))
    assert transcript.close() == [Output("\n")]


def test_the_live_url_of_a_service():
    live = "/v1/realtime?intent=transcription"
    assert realtime_url("http://127.0.0.1:8000") == f"ws://127.0.0.1:8000{live}"
    assert realtime_url("https://asr.example.com/speech/") == f"wss://asr.example.com/speech{live}"
    assert realtime_url(f"ws://h:1{live}") == f"ws://h:1{live}"


@pytest.mark.parametrize("language", ["en", None])
def test_the_service_parses_the_session_update(language):
    config = parse_client_event(json.dumps(session_update(language))).apply(SessionConfig())
    assert config.format == "audio/pcm" and config.turn_detection is not None
    assert config.language == language


def test_the_audio_goes_in_100_ms_pieces_of_pcm16_then_silence():
    samples = np.full(RATE // 4, 2.0, np.float32)  # 250 ms, clipping
    pieces = list(_chunks(samples))
    assert [len(p) for p in pieces[:3]] == [4800, 4800, 2400]
    assert set(np.frombuffer(b"".join(pieces[:3]), "<i2")) == {32767}
    assert len(pieces) == 3 + 15 and set(b"".join(pieces[3:])) == {0}, "1.5 s of silence"
