"""A client for a running speechgraph service: upload files, follow the streamed progress, and
rebuild the document from the final event. Ray-free; used by ``python -m pipeline client``."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import requests

from pipeline.schemas import TranscriptionResult

#: Called with each ``progress`` event: windows done, windows total, audio seconds done.
ProgressCallback = Callable[[int, int, float], None]


class ServiceError(RuntimeError):
    """The service refused the file or failed; the message is the service's own."""


def sse_events(response: requests.Response) -> Iterator[tuple[str, dict]]:
    """(event name, JSON data) pairs of a server-sent-events response, as they arrive."""
    name = "message"
    for line in response.iter_lines(decode_unicode=True):
        if line.startswith("event: "):
            name = line[len("event: ") :]
        elif line.startswith("data: "):
            yield name, json.loads(line[len("data: ") :])
            name = "message"


def transcribe_remote(
    url: str,
    path: Path,
    *,
    language: str | None = None,
    task: str = "transcribe",
    punctuate: bool = True,
    summarize: bool = True,
    translate_to: str | None = None,
    api_key: str | None = None,
    progress: ProgressCallback | None = None,
    timeout_s: float = 3600,
) -> TranscriptionResult:
    """Send ``path`` to ``url``'s ``/v1/transcribe`` with ``stream=true`` and return the document."""
    fields = {
        "task": task,
        "punctuate": str(punctuate).lower(),
        "summarize": str(summarize).lower(),
        "stream": "true",
        **({"language": language} if language else {}),
        **({"translate_to": translate_to} if translate_to else {}),
    }
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    with (
        path.open("rb") as f,
        requests.post(
            f"{url.rstrip('/')}/v1/transcribe",
            files={"file": (path.name, f)},
            data=fields,
            headers=headers,
            stream=True,
            timeout=(30, timeout_s),
        ) as response,
    ):
        if response.status_code != 200:
            try:
                message = response.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = response.text[:500]
            raise ServiceError(f"HTTP {response.status_code}: {message}")
        for name, body in sse_events(response):
            if name == "progress" and progress:
                progress(body["windows_done"], body["windows_total"], body["audio_seconds_done"])
            elif name == "error":
                raise ServiceError(body["error"]["message"])
            elif name == "document":
                return TranscriptionResult.model_validate(body)
    raise ServiceError("the stream ended before the document arrived; retry the file")
