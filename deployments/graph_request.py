"""What a request asks of the graph, and what the graph answers, whatever route it came by.

Apart from :mod:`deployments.graph` (how the stages are composed), so that the routes and the
answers (``deployments.ingress``, ``deployments.responses``) name the request and the events
without the orchestration.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from deployments.protocol import WindowProgress
from pipeline.decoding import DecodeOptions
from pipeline.diarization import SpeakerCount
from pipeline.llm_results import TranslatedSegment
from pipeline.schemas import TranscriptionResult, WindowTranscript
from pipeline.settings import VadOptions

GraphEvent = WindowProgress | WindowTranscript | TranslatedSegment | TranscriptionResult
"""What :meth:`TranscriptionGraph.run` yields; the last event is always the document."""


class UploadedFile(Protocol):
    """What the graph needs of an upload (Starlette's ``UploadFile`` is one)."""

    filename: str | None

    async def read(self, size: int = -1) -> bytes: ...


@dataclass(frozen=True)
class TranscriptionRequest:
    """What a request asks of the graph, whatever route it came by."""

    language: str | None
    options: DecodeOptions
    punctuate: bool
    summarize: bool
    request_id: str | None = None
    vad: VadOptions | None = None
    """This request's VAD (OpenAI's ``chunking_strategy``); None: the configured one."""
    speakers: SpeakerCount | None = None
    """Find who spoke, with this many speakers; None: no diarization."""
    known_voices: Mapping[str, np.ndarray] | None = None
    """Known speakers' voice prints by name, to name the speakers found (with ``speakers``)."""
    speakers_by_channel: bool = False
    """With ``speakers``: one speaker per channel of the recording, not told apart by voice."""
    translate_to: str | None = None
    """Translate the segments into this language (a code) with the LLM stage; None: no translation."""


async def collect_document(
    events: AsyncGenerator[GraphEvent],
) -> tuple[TranscriptionResult, list[WindowTranscript]]:
    """The document at the end of ``events``, and the windows it was made of."""
    windows = []
    async with aclosing(events):
        async for event in events:
            if isinstance(event, WindowTranscript):
                windows.append(event)
            elif isinstance(event, TranscriptionResult):
                return event, windows
    raise RuntimeError("the graph's events ended without a document")
