"""The client side of ``bench/realtime.py``: N live transcription sessions in one asyncio loop, raw
Realtime events over ``websockets``, each streaming the same speech at real-time pace, and what each
session saw. The append events are built once, before the clock starts, so that the client's own
work while timing is a send per 100 ms and a ``json.loads`` per server event."""

from __future__ import annotations

import asyncio
import base64
import json
import math
from dataclasses import dataclass, field
from itertools import pairwise

import av
import numpy as np
import websockets

RATE = 24000  # audio/pcm: 24 kHz PCM16, what a Realtime client sends
CHUNK_S = 0.1
MAX_SEND_LAG_S = 0.5  # a session keeps up if no append went out later than this behind its schedule,
DRAIN_S = 5.0  # its last turns were all done within this after its last append,
LATENCY_BOUND_S = 3.0  # and its final latency p95 stays under this (twice the 1.5 s target)
TRANSCRIPTION = "conversation.item.input_audio_transcription"
SESSION_UPDATE = {
    "type": "session.update",
    "session": {
        "type": "transcription",
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": RATE},
                "transcription": {"model": "whisper-1", "language": "en"},
                "turn_detection": {"type": "server_vad", "silence_duration_ms": 500},
            }
        },
    },
}


def append_events(audio16k: np.ndarray) -> list[str]:
    """16 kHz float audio as 24 kHz PCM16 (FFmpeg's resampler), in 100 ms ``append`` events."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
    pcm16 = (np.clip(audio16k, -1, 1) * 32767).astype(np.int16)
    frame = av.AudioFrame.from_ndarray(pcm16[None], format="s16", layout="mono")
    frame.sample_rate = 16000
    out = [f.to_ndarray().reshape(-1) for f in [*resampler.resample(frame), *resampler.resample(None)]]
    pcm = np.concatenate(out).astype("<i2").tobytes()
    step = int(2 * RATE * CHUNK_S)
    return [
        json.dumps(
            {"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm[i : i + step]).decode()}
        )
        for i in range(0, len(pcm), step)
    ]


@dataclass
class Turn:
    stopped_ms: int | None = None  # speech_stopped.audio_end_ms
    stopped_at: float | None = None  # when speech_stopped arrived
    committed: bool = False
    deltas: list[float] = field(default_factory=list)  # when each delta arrived
    done_at: float | None = None  # when completed (or failed) arrived
    failed: bool = False


@dataclass
class Session:
    t0: float = 0.0  # audio second s is spoken at t0 + s
    turns: dict[str, Turn] = field(default_factory=dict)
    closing: str | None = None  # the item of the commit sent after the last append
    send_lag: float = 0.0
    last_send: float | None = None
    drain: float | None = None  # last append to the closing commit's turn done
    errors: list[str] = field(default_factory=list)
    ws: websockets.ClientConnection | None = None
    finished: asyncio.Event = field(default_factory=asyncio.Event)

    async def open(self, url: str) -> None:
        try:
            self.ws = await websockets.connect(url, open_timeout=30)
            await self._expect("session.created")
            await self.ws.send(json.dumps(SESSION_UPDATE))
            await self._expect("session.updated")
        except (OSError, TimeoutError, websockets.WebSocketException, ValueError) as exc:
            self.errors.append(f"open: {exc!r}")
            self.ws = None

    async def _expect(self, kind: str) -> None:
        assert self.ws is not None
        event = json.loads(await asyncio.wait_for(self.ws.recv(), 30))
        if event["type"] != kind:
            raise ValueError(f"expected {kind}, got {event}")

    async def stream(self, events: list[str], start: float) -> None:
        """Append ``events`` on the wall clock: piece k (audio [k, k + 1) x 100 ms) goes at
        start + (k + 1) x 100 ms, once it is all spoken, late pieces as soon as they can; then a
        commit whose turn can only be done once the server has read and transcribed everything."""
        if self.ws is None:
            return
        loop = asyncio.get_running_loop()
        self.t0 = start
        reader = asyncio.create_task(self._read(self.ws))
        try:
            for k, event in enumerate(events):
                due = start + (k + 1) * CHUNK_S
                await asyncio.sleep(due - loop.time())
                await self.ws.send(event)
                self.send_lag = max(self.send_lag, loop.time() - due)
            self.last_send = loop.time()
            await self.ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
            await asyncio.wait_for(self.finished.wait(), DRAIN_S)
            self.drain = loop.time() - self.last_send
        except TimeoutError:
            self.errors.append(f"turns not done {DRAIN_S:g} s after the last append")
        except websockets.WebSocketException as exc:
            self.errors.append(f"stream: {exc!r}")
        finally:
            reader.cancel()
            await self.ws.close()

    async def _read(self, ws: websockets.ClientConnection) -> None:
        try:
            async for message in ws:
                self._on_event(json.loads(message), asyncio.get_running_loop().time())
        except Exception as exc:  # recorded: the session then shows as not keeping up
            self.errors.append(f"read: {exc!r}")
            self.finished.set()

    def _on_event(self, event: dict, now: float) -> None:
        kind, item = event["type"], event.get("item_id")
        turn = self.turns.setdefault(item, Turn()) if item else None
        if kind == "error":
            self.errors.append(event["error"].get("code") or event["error"].get("message"))
            if self.closing is None and self.last_send is not None:
                self.finished.set()  # the closing commit was refused: nothing to wait for
        elif turn is None:
            return
        elif kind == "input_audio_buffer.speech_stopped":
            turn.stopped_ms, turn.stopped_at = event["audio_end_ms"], now
        elif kind == "input_audio_buffer.committed":
            turn.committed = True
            if turn.stopped_ms is None:  # a commit without speech_stopped: the closing commit's
                self.closing = item
        elif kind == f"{TRANSCRIPTION}.delta":
            turn.deltas.append(now)
        elif kind in (f"{TRANSCRIPTION}.completed", f"{TRANSCRIPTION}.failed"):
            turn.done_at, turn.failed = now, kind.endswith("failed")
            if turn.failed:
                self.errors.append(f"failed: {event['error'].get('code')}")
            if self.closing is not None and all(
                t.done_at is not None for t in self.turns.values() if t.committed
            ):
                self.finished.set()

    def latencies(self) -> tuple[list[float], list[float]]:
        """Each spoken turn's final latency: from when the audio at speech_stopped's audio_end_ms was
        spoken, and from when speech_stopped arrived (the server's view)."""
        spoken, server = [], []
        for t in self.turns.values():
            if (
                t.stopped_ms is not None
                and t.stopped_at is not None
                and t.done_at is not None
                and not t.failed
            ):
                spoken.append(t.done_at - (self.t0 + t.stopped_ms / 1000))
                server.append(t.done_at - t.stopped_at)
        return spoken, server

    def keeps_up(self) -> bool:
        spoken, _ = self.latencies()
        return (
            self.ws is not None
            and not self.errors
            and bool(spoken)
            and self.send_lag <= MAX_SEND_LAG_S
            and self.drain is not None
            and pct(spoken, 95) < LATENCY_BOUND_S
        )


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else math.nan


async def run_step(url: str, events: list[str], n: int) -> list[Session]:
    """``n`` sessions, opened first, then streaming with their starts spread evenly over a second."""
    sessions = [Session() for _ in range(n)]
    await asyncio.gather(*(s.open(url) for s in sessions))
    start = asyncio.get_running_loop().time() + 0.5
    await asyncio.gather(*(s.stream(events, start + i / n) for i, s in enumerate(sessions)))
    return sessions


def summary(sessions: list[Session]) -> dict[str, float]:
    """One row of the table: all turns of all sessions pooled."""
    spoken = [x for s in sessions for x in s.latencies()[0]]
    server = [x for s in sessions for x in s.latencies()[1]]
    gaps = [b - a for s in sessions for t in s.turns.values() for a, b in pairwise(t.deltas)]
    drains = [s.drain for s in sessions if s.drain is not None]
    return {
        "sessions": len(sessions),
        "kept_up": sum(s.keeps_up() for s in sessions),
        "turns": len(spoken),
        "final_p50": pct(spoken, 50),
        "final_p95": pct(spoken, 95),
        "server_p50": pct(server, 50),
        "server_p95": pct(server, 95),
        "delta_p50": pct(gaps, 50),
        "send_lag": max(s.send_lag for s in sessions),
        "drain": max(drains) if len(drains) == len(sessions) else math.nan,
        "errors": sum(len(s.errors) for s in sessions),
    }
