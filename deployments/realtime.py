"""Live transcription sessions: OpenAI's Realtime API (transcription sessions) served by the graph.

Where a session lives, and why: in the ingress replica that accepted its WebSocket. The socket
cannot move between processes, and what a session holds is small and bounded: the uncommitted
audio (at most ``max_buffer_s``, a turn at most ``max_turn_s``), the resampler's filter state and
Silero's recurrent state (:class:`pipeline.vad.VadStream`, a few hundred bytes). A session
deployment of its own would add a hop for every audio chunk and still pin each session to one
replica. What costs CPU stays off the ingress's event loop (resampling in a worker thread, VAD
and Whisper in their stages: ``deployments.live_transcriber``), so the ingress stays model-free.

This module is the socket's side: events in and out, the limits (session length, idle time,
event size, sessions per replica) and what ends a session: an ``error`` event, then a close code
(1008 for a limit, 1013 when the replica is full).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

from fastapi import WebSocket

from deployments.app_args import RealtimeSettings
from deployments.http_errors import ApiError
from deployments.live_transcriber import LiveTranscriber
from deployments.metrics import RealtimeMetrics
from deployments.realtime_events import cleared, error_event, session_created, session_updated
from deployments.realtime_protocol import RealtimeProtocolError, parse_client_event
from pipeline.errors import SpeechgraphError


class SessionEnded(Exception):
    """Close the session: an ``error`` event with ``code`` and ``message``, then ``close_code``."""

    def __init__(self, code: str, message: str, close_code: int = 1008):
        super().__init__(message)
        self.code, self.message, self.close_code = code, message, close_code


class RealtimeSession:
    """One client's live session, from ``session.created`` to the socket's close."""

    def __init__(self, websocket: WebSocket, sessions: RealtimeSessions):
        self.ws, self.settings = websocket, sessions.settings
        self.outbox: asyncio.Queue[dict] = asyncio.Queue(maxsize=256)
        self.inbox: asyncio.Queue[tuple[Any, float]] = asyncio.Queue()  # events, audio seconds: see _queue
        self.waiting_s = 0.0  # audio in the inbox
        self.live = LiveTranscriber(
            sessions.preprocess,
            sessions.asr,
            sessions.settings,
            sessions.metrics,
            sessions.default_language,
            send=self.send,
        )

    async def run(self) -> str:
        """Serve the session until the client leaves or a limit ends it; the reason it ended."""
        sender = asyncio.create_task(self._send_events())
        reason = "client"
        try:
            await self.send(session_created(self.live.config))
            await self._receive_events()
        except SessionEnded as ended:
            reason = ended.code
            self.live.cancel()  # nothing more goes out after the error
            await self.send(error_event(RealtimeProtocolError(ended.message, ended.code)))
            await self._drain(sender)
            await self.ws.close(ended.close_code, ended.message[:120])
        finally:
            self.live.cancel()
            sender.cancel()
        return reason

    async def _receive_events(self) -> None:
        """Read the socket without waiting on the work: Serve hands a replica every message the
        client sends, read or not, so a session that read only as fast as it transcribed would
        leave a fast client's backlog in the replica's memory, unbounded (measured: 780 MB in
        40 s). Here the backlog is this session's own, counted, and ended past ``max_buffer_s``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.max_session_s
        worker = asyncio.create_task(self._work())
        try:
            while True:
                left = deadline - loop.time()
                receiving = asyncio.ensure_future(self.ws.receive())
                done, _ = await asyncio.wait(
                    {receiving, worker},
                    timeout=min(self.settings.idle_timeout_s, left),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if worker in done:  # it ends only by raising (SessionEnded)
                    receiving.cancel()
                    worker.result()
                if receiving not in done:
                    receiving.cancel()
                    raise self._timed_out(loop.time() >= deadline)
                message = receiving.result()
                if message["type"] == "websocket.disconnect":
                    return
                event = self._parse(message)
                if event is not None:
                    self._queue(event)
        finally:
            worker.cancel()

    def _timed_out(self, expired: bool) -> SessionEnded:
        if expired:
            return SessionEnded(
                "session_expired",
                f"The session reached its maximum length of {self.settings.max_session_s:g} s. "
                "Open a new session to go on.",
            )
        return SessionEnded(
            "idle_timeout",
            f"Nothing was received for {self.settings.idle_timeout_s:g} s, so the session was "
            "closed. Send audio (silence is fine) to keep a session open.",
        )

    def _parse(self, message: Mapping[str, Any]) -> Any:
        """The client event in ``message``, or None after answering a bad one with an error."""
        text = message.get("text")
        try:
            if text is None:
                raise RealtimeProtocolError(
                    "Binary frames are not events: send each event as a JSON text frame.", "invalid_event"
                )
            if len(text) > self.settings.max_message_bytes:
                raise RealtimeProtocolError(
                    f"The event is {len(text)} bytes; the limit is {self.settings.max_message_bytes}. "
                    "Send audio in smaller appends (e.g. 100 ms each).",
                    "message_too_large",
                )
            return parse_client_event(text)
        except RealtimeProtocolError as exc:
            self._send_now(error_event(exc))
            return None

    def _queue(self, event: Any) -> None:
        """``event`` to the worker, counting the audio waiting; past ``max_buffer_s`` of it (with
        what the session holds) the client is sending faster than it can be served."""
        seconds = 0.0
        if event.type == "input_audio_buffer.append":
            seconds = len(event.audio_bytes()) / self.live.decoder.bytes_per_second
            self.waiting_s += seconds
            held_s = self.waiting_s + self.live.held_s()
            if held_s > self.settings.max_buffer_s:
                raise SessionEnded(
                    "input_audio_buffer_full",
                    f"The session holds {held_s:.0f} s of audio not yet transcribed or committed, more "
                    f"than its limit of {self.settings.max_buffer_s:g} s: audio is arriving faster than "
                    "it is served. Send audio at real time, and commit turns as you go when server VAD "
                    "is off.",
                )
        self.inbox.put_nowait((event, seconds))

    async def _work(self) -> None:
        while True:
            event, seconds = await self.inbox.get()
            try:
                await self._on_event(event)
            except RealtimeProtocolError as exc:
                await self.send(error_event(exc))
            except SpeechgraphError as exc:  # bad audio, or a setting out of range
                error = RealtimeProtocolError(str(exc), exc.code, exc.param, event.event_id)
                await self.send(error_event(error))
            except (
                ApiError
            ) as exc:  # a stage refused or is restarting: the audio is kept, the next append retries
                error = RealtimeProtocolError(str(exc), exc.code, None, event.event_id, type="server_error")
                await self.send(error_event(error))
            finally:
                self.waiting_s -= seconds

    async def _on_event(self, event: Any) -> None:
        kind = event.type
        if kind in ("session.update", "transcription_session.update"):
            self.live.configure(event.apply(self.live.config))
            await self.send(session_updated(self.live.config))
        elif kind == "input_audio_buffer.append":
            await self.live.append(event.audio_bytes())
        elif kind == "input_audio_buffer.commit":
            await self.live.commit(event.event_id)
        elif kind == "input_audio_buffer.clear":
            self.live.clear()
            await self.send(cleared())

    async def send(self, event: dict) -> None:
        await self.outbox.put(event)  # a client that does not read stalls the work; the backlog is counted

    def _send_now(self, event: dict) -> None:
        """From the reader, which must not wait: a client that left this many events unread is gone."""
        try:
            self.outbox.put_nowait(event)
        except asyncio.QueueFull:
            raise SessionEnded(
                "events_not_read",
                f"The client left {self.outbox.maxsize} events unread; read them as they come.",
            ) from None

    async def _send_events(self) -> None:
        while True:
            event = await self.outbox.get()
            await self.ws.send_text(json.dumps(event))
            self.outbox.task_done()

    async def _drain(self, sender: asyncio.Task) -> None:
        drained = asyncio.ensure_future(self.outbox.join())
        await asyncio.wait([drained, sender], timeout=5, return_when=asyncio.FIRST_COMPLETED)
        drained.cancel()


class RealtimeSessions:
    """The ingress replica's live sessions: accepts a socket, enforces the per-replica limit,
    runs the session and counts it."""

    def __init__(self, preprocess: Any, asr: Any, settings: RealtimeSettings, default_language: str | None):
        self.preprocess, self.asr, self.settings = preprocess, asr, settings
        self.default_language = default_language
        self.metrics = RealtimeMetrics()
        self.open = 0

    async def serve(self, websocket: WebSocket, intent: str | None) -> None:
        offered = websocket.scope.get("subprotocols") or []
        await websocket.accept(subprotocol="realtime" if "realtime" in offered else None)
        if intent not in (None, "transcription"):
            await _refuse(
                websocket,
                "invalid_intent",
                f"This service serves transcription sessions only; intent={intent[:40]!r} is not one. "
                "Connect to /v1/realtime?intent=transcription.",
                1008,
            )
            return
        if self.open >= self.settings.max_sessions_per_replica:
            self.metrics.closed.inc(tags={"reason": "too_many_sessions"})
            await _refuse(
                websocket,
                "too_many_sessions",
                f"This replica already serves {self.open} live sessions, its limit. Retry shortly.",
                1013,
            )
            return
        self.open += 1
        self.metrics.sessions.set(self.open)
        session = RealtimeSession(websocket, self)
        if _speaks_beta(websocket):
            session.live.config = session.live.config.model_copy(update={"beta": True})
        reason = "error"
        try:
            reason = await session.run()
        finally:
            self.open -= 1
            self.metrics.sessions.set(self.open)
            self.metrics.closed.inc(tags={"reason": reason})


def _speaks_beta(websocket: WebSocket) -> bool:
    """Whether the client said it speaks the beta dialect before its first event: the beta SDK's
    ``OpenAI-Beta: realtime=v1`` header, or its browser form, the subprotocol ``openai-beta.realtime-v1``."""
    offered = websocket.scope.get("subprotocols") or []
    return websocket.headers.get("openai-beta") == "realtime=v1" or "openai-beta.realtime-v1" in offered


async def _refuse(websocket: WebSocket, code: str, message: str, close_code: int) -> None:
    await websocket.send_text(json.dumps(error_event(RealtimeProtocolError(message, code))))
    await websocket.close(close_code, message[:120])
