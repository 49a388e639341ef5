"""Steady load for fault tests: clients that send one request after another until stopped, and
what each request came to."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import requests


@dataclass
class Outcome:
    started: float
    seconds: float
    status: int | str
    """The HTTP status, or the client error's name (``Timeout``: no answer in time)."""
    body: dict | str | None
    retry_after: str | None = None


class Traffic:
    """``clients`` threads POSTing ``file`` to ``url``/v1/transcribe one request after another, each
    waiting at most ``timeout_s``; a refusal's ``Retry-After`` is honoured, as a client should."""

    def __init__(
        self,
        url: str,
        file: tuple[str, bytes],
        fields: dict | None = None,
        clients: int = 3,
        timeout_s: float = 90,
    ):
        self.url, self.file, self.fields, self.timeout_s = url, file, fields or {}, timeout_s
        self.outcomes: list[Outcome] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._client, daemon=True) for _ in range(clients)]

    def _client(self) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                r = requests.post(
                    f"{self.url}/v1/transcribe",
                    files={"file": self.file},
                    data=self.fields,
                    timeout=self.timeout_s,
                )
                try:
                    body = r.json()
                except ValueError:
                    body = r.text
                outcome = Outcome(
                    started, time.monotonic() - started, r.status_code, body, r.headers.get("retry-after")
                )
            except requests.RequestException as exc:
                outcome = Outcome(started, time.monotonic() - started, type(exc).__name__, None)
            self.outcomes.append(outcome)
            if outcome.retry_after:
                self.stop.wait(min(float(outcome.retry_after), 5.0))

    def __enter__(self) -> Traffic:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(self.timeout_s + 10)

    def wait_for(self, done, timeout_s: float, what: str) -> None:
        """Wait until ``done(outcomes so far)``; fail naming ``what`` after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while not done(list(self.outcomes)):
            assert time.monotonic() < deadline, f"{what} within {timeout_s} s; outcomes: " + str(
                [(o.status, o.body if o.status != 200 else "") for o in self.outcomes]
            )
            time.sleep(0.5)

    def hanging(self) -> bool:
        """True while a client is still waiting for an answer (after the traffic stopped)."""
        return any(t.is_alive() for t in self.threads)

    def counts(self) -> dict[str, int]:
        out = self.outcomes
        return {
            "sent": len(out),
            "ok": sum(o.status == 200 for o in out),
            "refused": sum(o.status in (429, 503) for o in out),
            "failed": sum(o.status not in (200, 429, 503) for o in out),
        }
