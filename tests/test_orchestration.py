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
from ray.exceptions import RayActorError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

from deployments import audio_parts
from deployments.audio_plan import AudioPart, AudioProbe, Busy, Rejected, ScannedChunk, Upload
from deployments.graph import UPLOAD_CHUNK_BYTES, PlannedAudio, TranscriptionGraph
from deployments.graph_request import TranscriptionRequest, collect_document
from deployments.http_errors import Overloaded, StageUnavailable
from deployments.protocol import WindowProgress
from pipeline.decoding import DecodeOptions
from pipeline.errors import InvalidParameter, NotAudio
from pipeline.llm_results import PostprocessResult, PunctuationResult, SummaryResult
from pipeline.schemas import Segment, WindowTranscript
from pipeline.settings import PipelineSettings
from pipeline.speech_windows import ChunkSpeech
from pipeline.windows import Window, plan_speech_windows


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

    async def _detect(self, samples, adapter: str | None = None) -> str:
        return "de"

    async def _transcribe(
        self, samples, window: Window, language: str, options: DecodeOptions
    ) -> WindowTranscript:
        await asyncio.sleep(self.delays.get(window.index, 0.0))
        if self.fail.get(window.index):
            raise self.fail[window.index].pop(0)
        segment = Segment(id=0, start=window.start_s, end=window.end_s, text=f" w{window.index}:{samples}")
        return WindowTranscript(
            window=window.index, language=language, segments=[segment], replica_id="r1", node_id="n1"
        )


def windows(n: int, first: int = 0) -> list[Window]:
    return [
        Window(index=i, start=160_000 * i, end=160_000 * i + 80_000, sample_rate=16000)
        for i in range(first, first + n)
    ]


def part(n: int, tag: str = "a", first: int = 0, last: bool = True) -> AudioPart:
    samples: list[Any] = [f"{tag}{i}" for i in range(first, first + n)]  # names in place of arrays
    return AudioPart(
        windows=windows(n, first), samples=samples, planned_to_s=10.0 * (first + n), node_id="n0", last=last
    )


class FakeStream:
    """A streamed stage call, as Serve's ``DeploymentResponseGenerator``: async-iterable,
    cancellable; an exception among the items is raised in its turn."""

    def __init__(self, items: list, delay: float = 0.0):
        self.items, self.delay = list(items), delay
        self.cancelled = False

    def __aiter__(self):
        return self

    async def __anext__(self):
        await asyncio.sleep(self.delay)
        if not self.items or self.cancelled:
            raise StopAsyncIteration
        item = self.items.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    def cancel(self) -> None:
        self.cancelled = True


class FakePreprocess:
    """Preprocess replicas: ``streams`` are what successive ``plan`` calls stream."""

    def __init__(self, streams: list[list], probe: Any = None, delay: float = 0.0):
        self.streams, self.delay = list(streams), delay
        self.scan: FakeMethod | None = None  # set, with cut, by tests of the chunked path
        self.cut: FakeMethod | None = None
        self.plan = self
        self.plan_calls: list[tuple] = []
        self._probe_answer = probe or AudioProbe(duration_s=30.0, seekable=False)

    def options(self, stream: bool = False) -> FakePreprocess:
        assert stream, "plan is a streamed call"
        return self

    def remote(self, *args) -> FakeStream:  # plan.remote: the probe, then the parts
        self.plan_calls.append(args)
        items = self.streams.pop(0) if len(self.streams) > 1 else self.streams[0]
        probe = self._probe_answer
        chunked = isinstance(probe, AudioProbe) and probe.chunked(
            PipelineSettings().audio.model_copy(update={"chunked_above_s": 600})
        )
        return FakeStream([probe] if chunked or isinstance(probe, Rejected) else [probe, *items], self.delay)


def llm_answer(punctuated: str = "Punctuated.") -> Callable:
    async def answer(text: str, punctuate: bool, summarize: bool, speakers=None) -> PostprocessResult:
        return PostprocessResult(
            punctuation=PunctuationResult(applied=True, text=punctuated),
            summary=SummaryResult(reason="not requested"),
            node_id="n2",
        )

    return answer


def make_graph(
    asr=None, preprocess=None, llm=None, settings=None, fallbacks=None
) -> tuple[TranscriptionGraph, dict]:
    stages = {
        "preprocess": preprocess or FakePreprocess([[part(3)]]),
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
    assert [p.windows_done for p in progress] == [0, 1, 2, 3], "planned, then each window done"
    assert {p.windows_total for p in progress} == {3} and all(p.planning_done for p in progress)
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
    graph, _ = make_graph(asr=asr, preprocess=FakePreprocess([[part(0)]]))
    events = run(events_of(graph, request(language=None, punctuate=False)))
    assert len(events) == 2 and events[-1].segments == [] and events[-1].language == "en"
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
    async def refuse(text, punctuate, summarize, speakers):
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
        async for event in events:
            if isinstance(event, WindowProgress) and event.windows_done == 1:
                break
        await events.aclose()
        await asyncio.sleep(0)
        return [r.task.cancelled() for r in asr.transcribe.responses]

    assert run(leave_after_first_progress()) == [False, True, True]


def test_a_rejected_upload_raises_the_stages_error():
    graph, _ = make_graph(preprocess=FakePreprocess([[]], probe=Rejected(NotAudio("not audio"))))
    with pytest.raises(NotAudio):
        run(graph.plan(Upload(chunks=[], size=1)))
    refused_later = FakePreprocess([[Rejected(NotAudio("undecodable"))]])
    graph, _ = make_graph(preprocess=refused_later)
    with pytest.raises(NotAudio, match="undecodable"):
        run(graph.plan(Upload(chunks=[], size=1)))


def test_a_preprocessing_replica_that_died_is_asked_once_more() -> None:
    preprocess = FakePreprocess([[RayActorError()], [part(1)]])
    graph, _ = make_graph(preprocess=preprocess)
    audio = run(graph.plan(Upload(chunks=[], size=1)))
    assert isinstance(audio, PlannedAudio) and len(audio.first.windows) == 1
    assert len(preprocess.plan_calls) == 2


def test_a_stream_cut_short_by_a_dead_replica_resumes_after_the_windows_received() -> None:
    # The first replica streamed windows 0-1, then died; the second streams them all again.
    first = [part(2, "a", last=False), RayActorError()]
    again = [part(2, "b", last=False), part(2, "b", first=2)]
    asr = FakeAsr()
    graph, _ = make_graph(asr=asr, preprocess=FakePreprocess([first, again]))
    document = run(events_of(graph, request()))[-1]
    assert [s.text for s in document.segments] == [" w0:a0", " w1:a1", " w2:b2", " w3:b3"]
    assert sorted(call[1].index for call in asr.transcribe.calls) == [0, 1, 2, 3], "no window twice"


def test_windows_go_to_asr_while_later_parts_are_still_being_planned() -> None:
    parts = [part(1, first=0, last=False), part(1, first=1, last=False), part(1, first=2)]
    asr = FakeAsr()
    graph, _ = make_graph(asr=asr, preprocess=FakePreprocess([parts], delay=0.2))

    async def progress_before_window_0() -> list[WindowProgress]:
        audio = await graph.plan(Upload(chunks=[], size=1))
        seen: list[WindowProgress] = []
        async for event in graph.run(audio, request()):
            if isinstance(event, WindowTranscript) and event.window == 0:
                return seen
            if isinstance(event, WindowProgress):
                seen.append(event)
        raise AssertionError("no transcript")

    seen = run(progress_before_window_0())
    assert seen and not any(p.planning_done for p in seen), "window 0 was out before planning was done"
    assert len(asr.transcribe.calls) < 3, "the last part's window was not yet sent to ASR"


def test_a_stage_at_its_decoding_budget_is_asked_again_then_overloaded(monkeypatch) -> None:
    monkeypatch.setattr(audio_parts, "BUSY_RETRY_S", 0.5)
    busy_then_fine = FakePreprocess([[Busy(3600.0)], [part(2)]])
    graph, _ = make_graph(preprocess=busy_then_fine)
    document = run(events_of(graph, request()))[-1]
    assert len(document.segments) == 2 and len(busy_then_fine.plan_calls) == 2
    always_busy = FakePreprocess([[Busy(3600.0)]])
    graph, _ = make_graph(preprocess=always_busy)
    with pytest.raises(Overloaded) as info:
        run(graph.plan(Upload(chunks=[], size=1)))
    assert info.value.status == 503 and "Retry-After" in (info.value.headers or {})


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


def chunking_stage(scan: Callable, duration_s: float) -> tuple[FakePreprocess, PipelineSettings]:
    """A preprocess stage that cuts a file of ``duration_s`` into 5-minute chunks, scanned by
    ``scan``; its cut answers each window with a name in place of samples."""

    async def cut(upload, windows, planned_to_s, last):
        return AudioPart(windows, [f"c{w.index}" for w in windows], planned_to_s, "p0", "n0", last)

    preprocess = FakePreprocess([[]], probe=AudioProbe(duration_s=duration_s, seekable=True))
    preprocess.scan, preprocess.cut = FakeMethod(scan), FakeMethod(cut)
    return preprocess, PipelineSettings.model_validate({"audio": {"chunked_above_s": 600, "chunk_s": 300}})


def test_a_long_seekable_file_is_scanned_in_chunks_and_cut_as_they_settle(monkeypatch) -> None:
    # Speech: 20 s every 40 s over 40 minutes. The fake scan is an exact VAD (the true speech,
    # clipped to the chunk's scanned range); the stitching and the calls are the graph's own.
    sr = 16000
    total = 40 * 60 * sr
    speech = [(t * sr, (t + 20) * sr) for t in range(5, 40 * 60 - 20, 40)]

    async def scan(upload, chunk, vad):
        stop = total if chunk.scan_to is None else min(chunk.scan_to, total)
        seen = [
            (max(a, chunk.scan_from), min(b, stop)) for a, b in speech if b > chunk.scan_from and a < stop
        ]
        await asyncio.sleep(0.01 * (chunk.index % 3))  # chunks finish out of order
        return ScannedChunk(ChunkSpeech(chunk, seen, stop, stop >= total), f"p{chunk.index % 2}")

    preprocess, settings = chunking_stage(scan, total / sr)
    asr = FakeAsr()
    graph, _ = make_graph(asr=asr, preprocess=preprocess, settings=settings)
    events = run(events_of(graph, request()))
    document = events[-1]
    assert preprocess.scan is not None and preprocess.cut is not None  # set by chunking_stage
    assert len(preprocess.scan.calls) == 8
    assert len(preprocess.plan_calls) == 1, "one streamed call: the probe, which says chunks"
    expected = plan_speech_windows(speech, sr, window_s=30.0, max_gap_s=2.0)
    assert [(s.start, s.end) for s in document.segments] == [(w.start_s, w.end_s) for w in expected]
    cut_windows = [w for call in preprocess.cut.calls for w in call[1]]
    assert cut_windows == expected and len(preprocess.cut.calls) >= 3, "cut as chunks settle, not once"
    assert document.timings.preprocess_chunks_by_replica == {"p0": 4, "p1": 4}
    planned = [e.audio_planned_s for e in events if isinstance(e, WindowProgress)]
    assert planned[0] == 300.0 and planned == sorted(planned) and planned[-1] == total / sr


def test_the_first_chunk_is_scanned_alone_then_chunks_in_flight_at_once() -> None:
    """The file's first segment waits on the first chunk: it gets the stage to itself, and the
    others follow (``chunks_in_flight`` at a time) once its windows are planned."""
    sr = 16000
    total = 30 * 60 * sr
    running: set[int] = set()
    started_beside: dict[int, set[int]] = {}
    most = 0

    async def scan(upload, chunk, vad):
        nonlocal most
        started_beside[chunk.index] = set(running)
        running.add(chunk.index)
        most = max(most, len(running))
        await asyncio.sleep(0.02)
        running.discard(chunk.index)
        stop = total if chunk.scan_to is None else min(chunk.scan_to, total)
        seen = [(max(chunk.scan_from, 5 * sr), stop)] if stop > 5 * sr else []
        return ScannedChunk(ChunkSpeech(chunk, seen, stop, stop >= total), "p0")

    preprocess, settings = chunking_stage(scan, total / sr)
    graph, _ = make_graph(asr=FakeAsr(), preprocess=preprocess, settings=settings)
    run(events_of(graph, request()))
    assert started_beside[0] == set() and len(started_beside) == 6
    assert all(0 not in beside for beside in started_beside.values()), "the rest start after it"
    assert most == settings.audio.chunks_in_flight


def test_a_slow_consumer_still_gets_every_part_of_a_chunked_file() -> None:
    # While the consumer is busy with one part, the later chunks' cuts all finish: the parts
    # already cut are handed on, and the stream ends after the last one.
    sr, total = 16000, 20 * 60 * 16000
    speech = [(t * sr, (t + 20) * sr) for t in range(5, 20 * 60 - 20, 40)]

    async def scan(upload, chunk, vad):
        stop = total if chunk.scan_to is None else min(chunk.scan_to, total)
        seen = [
            (max(a, chunk.scan_from), min(b, stop)) for a, b in speech if b > chunk.scan_from and a < stop
        ]
        return ScannedChunk(ChunkSpeech(chunk, seen, stop, stop >= total), "p0")

    preprocess, settings = chunking_stage(scan, total / sr)

    async def consume_slowly() -> list[AudioPart]:
        parts = audio_parts.AudioParts(preprocess, settings.audio, Upload(chunks=[], size=1), None)
        got = []
        async for part in parts.stream():
            got.append(part)
            await asyncio.sleep(0.05)
        return got

    parts = run(consume_slowly())
    assert parts[-1].last and [w for p in parts for w in p.windows] == plan_speech_windows(speech, sr)
