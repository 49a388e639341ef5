"""``python -m pipeline client --live FILE``: stream a file to a running service's live route
(``/v1/realtime?intent=transcription``, OpenAI's Realtime API) as if it were being spoken, and
print each turn's partial text as it grows and its transcript when the turn is done.

Why the ``websockets`` library: it is what the official ``openai`` package's realtime client runs
on, and what uvicorn serves WebSockets with, while ``openai`` is only a test dependency and its
``realtime`` extra pins an older ``websockets``. The protocol is a handful of JSON events, so the
SDK's typed wrapper would add little. Ray-free, like
the rest of ``pipeline``.

Why a pure :class:`LiveTranscript`: what to print for each server event (partials redrawn in place
on a terminal, ``~`` lines in a pipe, finals, errors) is the whole of the client's logic, and is
tested event by event without a server.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import numpy as np
import websockets
from websockets.asyncio.client import ClientConnection, connect

from pipeline.audio import decode_audio
from pipeline.errors import SpeechgraphError

RATE = 24_000  # the one rate of the Realtime API's audio/pcm
CHUNK_S = 0.1  # each append: 100 ms, as a microphone client sends
TAIL_SILENCE_S = 1.5  # after the file, so that server VAD ends the last turn
MAX_FILE_S = 4 * 3600.0  # a session lasts an hour of wall time by default (realtime.max_session_s)
CLEAR_LINE = "\r\x1b[K"
_TRANSCRIPTION = "conversation.item.input_audio_transcription"


class Output(NamedTuple):
    """A piece of text to write as it stands (newlines included), to stdout or to stderr."""

    text: str
    stderr: bool = False


@dataclass
class _Turn:
    start_ms: int | None = None
    text: str = ""
    done: bool = False

    @property
    def partial(self) -> str:
        return " ".join(self.text.split())

    def stamp(self) -> str:
        if self.start_ms is None:
            return "[--:--.-]"
        minutes, tenths = divmod(round(self.start_ms / 100), 600)
        return f"[{minutes:02d}:{tenths / 10:04.1f}]"


class LiveTranscript:
    """A session's server events, one at a time, turned into what to print.

    On a terminal (``tty``) the open turns' partial text is one status line, rewritten in place
    and cut to ``width`` from the left, and replaced by a turn's final line ``[mm:ss.s] text``.
    Otherwise each growth of a turn's partial text prints ``~ text so far``, then the final line.
    """

    def __init__(self, tty: bool = False, width: int = 80):
        self.tty, self.width = tty, width
        self.turns: dict[str, _Turn] = {}
        self.errors = 0  # error events
        self.failed = 0  # turns whose transcription failed
        self._status = ""  # the status line on screen (tty)

    @property
    def finished(self) -> bool:
        """Whether every turn the server started or committed is completed or failed."""
        return all(turn.done for turn in self.turns.values())

    def feed(self, event: dict[str, Any]) -> list[Output]:
        kind, item_id = event.get("type", ""), event.get("item_id")
        turn = self.turns.setdefault(item_id, _Turn()) if item_id else None
        if kind == "input_audio_buffer.speech_started" and turn:
            turn.start_ms = event.get("audio_start_ms")
        elif kind == f"{_TRANSCRIPTION}.delta" and turn:
            grown = bool(event.get("delta", "").strip())
            turn.text += event.get("delta", "")
            if grown:
                return self._redraw() if self.tty else [Output(f"~ {turn.partial}\n")]
        elif kind == f"{_TRANSCRIPTION}.completed" and turn:
            turn.done = True
            final = f"{turn.stamp()} {event.get('transcript', '').strip()}".rstrip()
            return self._above_status(Output(final + "\n"))
        elif kind == f"{_TRANSCRIPTION}.failed" and turn:
            turn.done = True
            self.failed += 1
            return self._above_status(
                Output(f"error: {turn.stamp()} not transcribed: {_what(event)}\n", True)
            )
        elif kind == "error":
            self.errors += 1
            return self._above_status(Output(f"error: {_what(event)}\n", True))
        return []

    def note(self, message: str) -> list[Output]:
        """An error of the client's own (the socket closed, a timeout), printed as events' are."""
        return self._above_status(Output(f"error: {message}\n", True))

    def close(self) -> list[Output]:
        """What ends the output: the line break after a status line still on screen."""
        shown, self._status = self._status, ""
        return [Output("\n")] if shown else []

    def _above_status(self, line: Output) -> list[Output]:
        """``line``, printed above the status line (which is redrawn after it) on a terminal."""
        if not self.tty:
            return [line]
        cleared = [Output(CLEAR_LINE)] if self._status or not line.stderr else []
        self._status = ""
        return [*cleared, line, *self._redraw()]

    def _redraw(self) -> list[Output]:
        status = " | ".join(t.partial for t in self.turns.values() if not t.done and t.partial)
        if len(status) >= self.width:
            status = "…" + status[len(status) - self.width + 2 :]
        if status == self._status:
            return []
        self._status = status
        return [Output(CLEAR_LINE + status)]


def _what(event: dict[str, Any]) -> str:
    error = event.get("error") or {}
    return f"{error.get('code') or error.get('type') or 'error'}: {error.get('message', '')}"


def realtime_url(url: str) -> str:
    """The live route of the service at ``url`` (``http://host:8000`` or a ``ws://`` URL)."""
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    path = parts.path.rstrip("/")
    path = path if path.endswith("/v1/realtime") else f"{path}/v1/realtime"
    query = dict(parse_qsl(parts.query))
    query.setdefault("intent", "transcription")
    return urlunsplit((scheme, parts.netloc, path, urlencode(query), ""))


def session_update(language: str | None) -> dict[str, Any]:
    """The GA ``session.update``: 24 kHz PCM, server VAD, and the language when one is given."""
    audio_input: dict[str, Any] = {
        "format": {"type": "audio/pcm", "rate": RATE},
        "turn_detection": {"type": "server_vad"},
    }
    if language:
        audio_input["transcription"] = {"language": language}
    session = {"type": "transcription", "audio": {"input": audio_input}}
    return {"type": "session.update", "event_id": "cli_session_update", "session": session}


def _chunks(samples: np.ndarray) -> Iterator[bytes]:
    """``samples`` then :data:`TAIL_SILENCE_S` of silence, as 100 ms pieces of PCM16."""
    step = int(RATE * CHUNK_S)
    for i in range(0, samples.size, step):
        yield (np.clip(samples[i : i + step], -1.0, 1.0) * 32767).astype("<i2").tobytes()
    yield from [bytes(2 * step)] * round(TAIL_SILENCE_S / CHUNK_S)


def stream_file(
    path: Path,
    url: str,
    *,
    language: str | None = None,
    api_key: str | None = None,
    speed: float = 1.0,
    timeout_s: float = 45.0,
) -> int:
    """Stream ``path`` to the service at ``url`` at ``speed`` times real time, printing as it goes;
    the exit code: 0, 1 (a bad file, an error that ended the session, a failed turn, or turns still
    not transcribed ``timeout_s`` after the audio ended) or 2 (no service at ``url``)."""
    try:
        samples = decode_audio(path, max_duration_s=MAX_FILE_S, sample_rate=RATE)
    except (SpeechgraphError, FileNotFoundError) as exc:
        print(f"error: {path}: {exc}", file=sys.stderr)
        return 1
    transcript = LiveTranscript(tty=sys.stdout.isatty(), width=shutil.get_terminal_size().columns)
    session = LiveSession(transcript, samples, speed=speed, timeout_s=timeout_s)
    try:
        return asyncio.run(session.run(realtime_url(url), language, api_key))
    except KeyboardInterrupt:
        emit(transcript.close())
        return 130


def emit(outputs: list[Output]) -> None:
    for text, stderr in outputs:
        stream = sys.stderr if stderr else sys.stdout
        stream.write(text)
        stream.flush()


class LiveSession:
    """One session over the socket: settings, paced audio, then the wait for the last turns."""

    def __init__(self, transcript: LiveTranscript, samples: np.ndarray, *, speed: float, timeout_s: float):
        self.transcript, self.samples = transcript, samples
        self.speed, self.timeout_s = speed, timeout_s
        self.sent = asyncio.Event()

    async def run(self, url: str, language: str | None, api_key: str | None) -> int:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        try:
            ws = await connect(url, additional_headers=headers, open_timeout=30)
        except (OSError, TimeoutError, websockets.InvalidURI, websockets.InvalidHandshake) as exc:
            print(
                f"error: {url}: cannot reach the service ({str(exc) or type(exc).__name__})", file=sys.stderr
            )
            return 2
        async with ws:
            try:
                ok = await self._configure(ws, language) and await self._stream(ws)
            except websockets.ConnectionClosed as exc:
                if not self.transcript.errors:  # else the error event said why
                    emit(self.transcript.note(f"the service closed the session ({exc})"))
                ok = False
            except TimeoutError:
                emit(self.transcript.note("the service did not answer session.update in 30 s"))
                ok = False
            emit(self.transcript.close())
        return 0 if ok and not self.transcript.failed else 1

    async def _configure(self, ws: ClientConnection, language: str | None) -> bool:
        """Send the settings; True once ``session.updated`` comes, False for an ``error``."""
        await ws.send(json.dumps(session_update(language)))
        async with asyncio.timeout(30):
            while True:
                event = json.loads(await ws.recv())
                emit(self.transcript.feed(event))
                if event.get("type") in ("session.updated", "error"):
                    return event["type"] == "session.updated"

    async def _stream(self, ws: ClientConnection) -> bool:
        """Send the audio while printing what comes back, then wait for the last turns' transcripts."""
        receiving = asyncio.create_task(self._receive(ws))
        try:
            with contextlib.suppress(websockets.ConnectionClosed):  # the receiver says why
                await self._send_audio(ws)
            if not (self.sent.is_set() and self.transcript.finished):
                await asyncio.wait_for(receiving, self.timeout_s)
            return True
        except TimeoutError:
            left = sum(not turn.done for turn in self.transcript.turns.values())
            emit(self.transcript.note(f"{left} turn(s) not transcribed {self.timeout_s:g} s after the audio"))
            return False
        finally:
            receiving.cancel()

    async def _send_audio(self, ws: ClientConnection) -> None:
        """100 ms appends, each sent when its audio would have been spoken (at ``speed``)."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        for n, pcm in enumerate(_chunks(self.samples)):
            await asyncio.sleep(start + n * CHUNK_S / self.speed - loop.time())
            await ws.send(
                json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm).decode()})
            )
        self.sent.set()

    async def _receive(self, ws: ClientConnection) -> None:
        """Print the server's events until the audio is sent and every turn is done; raises
        :class:`websockets.ConnectionClosed` if the socket closes first."""
        while not (self.sent.is_set() and self.transcript.finished):
            emit(self.transcript.feed(json.loads(await ws.recv())))
