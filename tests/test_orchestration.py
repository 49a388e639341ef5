"""The graph's orchestration (``deployments.graph``) over fake stages, without Ray or HTTP.

The fakes stand in for Serve's ``DeploymentHandle``s only: ``.remote(...)`` answers an awaitable,
cancellable response, as Serve's ``DeploymentResponse`` does; failures are Ray's and Serve's own
exception classes. What runs is the real orchestration: upload chunking, planning, fan-out,
ordering, progress, retries, re-cuts, cancellation, the LLM fallback and the document.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from ray.exceptions import ObjectLostError, RayActorError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

from deployments.audio_plan import AudioPlan, Rejected, Upload
from deployments.graph import (
    UPLOAD_CHUNK_BYTES,
    PlannedAudio,
    TranscriptionGraph,
    TranscriptionRequest,
    collect_document,
)
from deployments.http_errors import Overloaded, StageUnavailable
from deployments.protocol import WindowProgress
from pipeline.decoding import DecodeOptions
from pipeline.errors import InvalidParameter, NotAudio
from pipeline.schemas import PostprocessResult, PunctuationResult, Segment, SummaryResult, WindowTranscript
from pipeline.settings import PipelineSettings
from pipeline.windows import Window


class FakeResponse:
    """A stage call in flight: awaitable once, cancellable, as Serve's ``DeploymentResponse``."""

    def __init__(self, coro):
        self.task = asyncio.ensure_future(coro)

    def __await__(self):
        return self.task.__await__()

    def cancel(self) -> None:
        self.task.cancel()


class FakeMethod:
    def __init__(self, fn: Callable):
        self.fn = fn
        self.calls: list[tuple] = []
        self.responses: list[FakeResponse] = []

    def remote(self, *args) -> FakeResponse:
        self.calls.append(args)
        response = FakeResponse(self.fn(*args))
        self.responses.append(response)
        return response


class FakeAsr:
    """ASR replicas: each window takes ``delays[i]`` seconds and says its index as its text."""

    def __init__(
        self, delays: dict[int, float] | None = None, fail: dict[int, list[Exception]] | None = None
    ):
        self.delays = delays or {}
        self.fail = fail or {}  # window index -> exceptions raised by its first calls, in turn
        self.detect_language = FakeMethod(self._detect)
        self.transcribe = FakeMethod(self._transcribe)

    async def _detect(self, ref) -> str:
        return "de"

    async def _transcribe(
        self, ref, window: Window, language: str, options: DecodeOptions
    ) -> WindowTranscript:
        await asyncio.sleep(self.delays.get(window.index, 0.0))
        if self.fail.get(window.index):
            raise self.fail[window.index].pop(0)
        segment = Segment(id=0, start=window.start_s, end=window.end_s, text=f" w{window.index}:{ref}")
        return WindowTranscript(
            window=window.index, language=language, segments=[segment], replica_id="r1", node_id="n1"
        )


def windows(n: int) -> list[Window]:
    return [Window(index=i, start=160_000 * i, end=160_000 * i + 80_000, sample_rate=16000) for i in range(n)]


def plan(n: int, tag: str = "a") -> AudioPlan:
    refs: list[Any] = [f"{tag}{i}" for i in range(n)]  # names in place of ObjectRefs
    return AudioPlan(
        duration_s=10.0 * n,
        sample_rate=16000,
        windows=windows(n),
        refs=refs,
        upload=Upload(chunks=[], size=1),
        node_id="n0",
    )


def llm_answer(punctuated: str = "Punctuated.") -> Callable:
    async def answer(text: str, punctuate: bool, summarize: bool) -> PostprocessResult:
        return PostprocessResult(
            punctuation=PunctuationResult(applied=True, text=punctuated),
            summary=SummaryResult(reason="not requested"),
            node_id="n2",
        )

    return answer


def make_graph(
    asr=None, plans=None, llm=None, settings=None, fallbacks=None
) -> tuple[TranscriptionGraph, dict]:
    plans = list(plans or [plan(3)])

    async def preprocess(upload):
        return plans.pop(0) if len(plans) > 1 else plans[0]

    stages = {
        "preprocess": FakeMethod(preprocess),
        "asr": asr or FakeAsr(),
        "postprocess": FakeMethod(llm or llm_answer()),
    }
    graph = TranscriptionGraph(
        stages["preprocess"],
        stages["asr"],
        stages["postprocess"],
        settings or PipelineSettings(),
        put=lambda chunk: bytes(chunk),
        node_id="n-ingress",
        on_llm_fallback=(fallbacks.append if fallbacks is not None else lambda result: None),
    )
    return graph, stages


def request(language: str | None = "en", punctuate=True, summarize=False) -> TranscriptionRequest:
    return TranscriptionRequest(language, DecodeOptions(), punctuate, summarize, request_id="req-1")


async def events_of(graph: TranscriptionGraph, req: TranscriptionRequest) -> list:
    audio = await graph.plan(Upload(chunks=[], size=1))
    return [event async for event in graph.run(audio, req)]


def run(coro):
    return asyncio.run(coro)


def test_windows_come_in_order_though_they_finish_out_of_order():
    graph, _ = make_graph(asr=FakeAsr(delays={0: 0.15, 1: 0.0, 2: 0.05}))
    events = run(events_of(graph, request()))
    progress = [e for e in events if isinstance(e, WindowProgress)]
    transcripts = [e for e in events if isinstance(e, WindowTranscript)]
    assert [p.windows_done for p in progress] == [1, 2, 3]
    assert progress[-1].audio_seconds_done == progress[-1].audio_seconds_total == 15.0
    assert [t.window for t in transcripts] == [0, 1, 2]
    # Window 0 finished last, so nothing could be sent before every progress event.
    assert events.index(transcripts[0]) > events.index(progress[-1])
    document = events[-1]
    assert [s.text for s in document.segments] == [" w0:a0", " w1:a1", " w2:a2"]
    assert [s.id for s in document.segments] == [0, 1, 2]
    assert document.text == "w0:a0 w1:a1 w2:a2"
    assert document.punctuation.text == "Punctuated." and document.request_id == "req-1"
    assert document.timings.windows == 3 and document.timings.asr_windows_by_replica == {"r1": 3}
    assert document.timings.nodes.ingress == "n-ingress" and document.timings.nodes.postprocess == "n2"


def test_language_is_detected_once_on_the_first_window_when_not_given():
    asr = FakeAsr()
    graph, _ = make_graph(asr=asr)
    document = run(events_of(graph, request(language=None)))[-1]
    assert len(asr.detect_language.calls) == 1 and asr.detect_language.calls[0][0] == "a0"
    assert {call[2] for call in asr.transcribe.calls} == {"de"} and document.language == "de"


def test_the_configured_default_language_skips_detection():
    asr = FakeAsr()
    settings = PipelineSettings.model_validate({"asr": {"default_language": "fr"}})
    graph, _ = make_graph(asr=asr, settings=settings)
    run(events_of(graph, request(language=None)))
    assert asr.detect_language.calls == [] and {call[2] for call in asr.transcribe.calls} == {"fr"}


def test_silence_never_reaches_asr():
    asr = FakeAsr()
    graph, _ = make_graph(asr=asr, plans=[plan(0)])
    events = run(events_of(graph, request(language=None, punctuate=False)))
    assert len(events) == 1 and events[0].segments == [] and events[0].language == "en"
    assert asr.transcribe.calls == [] and asr.detect_language.calls == []


def test_neither_punctuation_nor_summary_asked_skips_the_llm():
    graph, stages = make_graph()
    document = run(events_of(graph, request(punctuate=False, summarize=False)))[-1]
    assert stages["postprocess"].calls == []
    assert document.punctuation.reason == "not requested" and document.summary.reason == "not requested"


def test_a_window_whose_replica_died_is_sent_once_more():
    asr = FakeAsr(fail={1: [RayActorError()]})
    graph, _ = make_graph(asr=asr)
    document = run(events_of(graph, request()))[-1]
    assert [call[1].index for call in asr.transcribe.calls].count(1) == 2
    assert len(document.segments) == 3


def test_a_window_whose_replica_died_twice_fails_the_request_as_unavailable():
    asr = FakeAsr(fail={1: [RayActorError(), RayActorError()]})
    graph, _ = make_graph(asr=asr)
    with pytest.raises(StageUnavailable):
        run(events_of(graph, request()))


def test_lost_windows_are_cut_again_once_and_sent_with_the_new_refs():
    asr = FakeAsr(fail={0: [ObjectLostError("00" * 14, None, "")], 2: [ObjectLostError("00" * 14, None, "")]})
    graph, stages = make_graph(asr=asr, plans=[plan(3, "a"), plan(3, "b")])
    document = run(events_of(graph, request()))[-1]
    assert len(stages["preprocess"].calls) == 2, "one plan, then one re-cut for both lost windows"
    assert [s.text for s in document.segments] == [" w0:b0", " w1:a1", " w2:b2"]


def test_windows_cut_differently_the_second_time_fail_the_request():
    asr = FakeAsr(fail={0: [ObjectLostError("00" * 14, None, "")]})
    graph, _ = make_graph(asr=asr, plans=[plan(3), plan(2)])
    with pytest.raises(StageUnavailable, match="cut differently"):
        run(events_of(graph, request()))


def test_a_full_asr_queue_is_overloaded_with_serves_status_and_retry_after():
    full = BackPressureError(num_queued_requests=1, max_queued_requests=1, status_code=429, retry_after_s=3)
    graph, _ = make_graph(asr=FakeAsr(fail={0: [full]}))
    with pytest.raises(Overloaded) as info:
        run(events_of(graph, request()))
    assert info.value.status == 429 and info.value.headers == {"Retry-After": "3"}


@pytest.mark.parametrize(
    "error,reason",
    [
        (DeploymentUnavailableError.__new__(DeploymentUnavailableError), "no live replica"),
        (BackPressureError(num_queued_requests=1, max_queued_requests=1), "at capacity"),
    ],
)
def test_an_llm_that_cannot_answer_leaves_the_transcript_raw_saying_why(error, reason) -> None:
    async def refuse(text, punctuate, summarize):
        raise error

    fallbacks: list = []
    graph, _ = make_graph(llm=refuse, fallbacks=fallbacks)
    document = run(events_of(graph, request(punctuate=True, summarize=True)))[-1]
    assert document.text == "w0:a0 w1:a1 w2:a2"
    assert document.punctuation.fallback == "llm_unavailable" and reason in document.punctuation.reason
    assert document.summary.fallback == "llm_unavailable"
    assert len(fallbacks) == 1 and fallbacks[0].punctuation.fallback == "llm_unavailable"


def test_a_client_that_leaves_cancels_the_windows_still_running():
    asr = FakeAsr(delays={0: 0.0, 1: 5.0, 2: 5.0})

    async def leave_after_first_progress():
        graph, _ = make_graph(asr=asr)
        audio = await graph.plan(Upload(chunks=[], size=1))
        events = graph.run(audio, request())
        assert isinstance(await events.__anext__(), WindowProgress)
        await events.aclose()
        await asyncio.sleep(0)
        return [r.task.cancelled() for r in asr.transcribe.responses]

    assert run(leave_after_first_progress()) == [False, True, True]


def test_a_rejected_upload_raises_the_stages_error():
    graph, _ = make_graph(plans=[Rejected(NotAudio("not audio"))])
    with pytest.raises(NotAudio):
        run(graph.plan(Upload(chunks=[], size=1)))


def test_a_preprocessing_replica_that_died_is_asked_once_more() -> None:
    answers: list = [RayActorError(), plan(1)]

    async def preprocess(upload):
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    graph, _ = make_graph()
    graph.preprocess = FakeMethod(preprocess)
    audio = run(graph.plan(Upload(chunks=[], size=1)))
    assert isinstance(audio, PlannedAudio) and len(audio.plan.windows) == 1 and answers == []


class FakeUpload:
    def __init__(self, data: bytes, filename: str = "a.wav"):
        self.data, self.filename = data, filename
        self.reads: list[int] = []

    async def read(self, size: int = -1) -> bytes:
        self.reads.append(size)
        chunk, self.data = self.data[:size], self.data[size:]
        return chunk


def test_the_upload_goes_to_the_object_store_a_chunk_at_a_time():
    data = np.random.default_rng(0).integers(0, 256, 2 * UPLOAD_CHUNK_BYTES + 5, np.uint8).tobytes()
    graph, _ = make_graph()
    file = FakeUpload(data)
    upload = run(graph.upload(file))
    assert upload.size == len(data) and [len(c) for c in upload.chunks] == [UPLOAD_CHUNK_BYTES] * 2 + [5]
    assert b"".join(upload.chunks) == data and set(file.reads) == {UPLOAD_CHUNK_BYTES}


def test_an_empty_upload_is_refused_naming_the_file():
    graph, _ = make_graph()
    with pytest.raises(InvalidParameter) as info:
        run(graph.upload(FakeUpload(b"", "empty.wav")))
    assert info.value.code == "empty_file" and info.value.param == "file" and "empty.wav" in str(info.value)


def test_collect_document_returns_the_document_and_its_windows():
    graph, _ = make_graph()

    async def collect():
        audio = await graph.plan(Upload(chunks=[], size=1))
        return await collect_document(graph.run(audio, request()))

    document, transcripts = run(collect())
    assert [t.window for t in transcripts] == [0, 1, 2] and len(document.segments) == 3
