"""The diarization branch of the graph, with fakes in the stages' places (as test_orchestration):
each window goes to the diarization stage when it goes to ASR, the embeddings are clustered once,
and the segments get the speakers."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import numpy as np
import pytest
from test_orchestration import FakeAsr, FakeMethod, FakePreprocess, events_of, make_graph, part, request, run

from deployments.audio_plan import AudioProbe, Rejected, Upload
from deployments.graph_request import TranscriptionRequest
from deployments.speaker_branch import diarize_audio
from pipeline.diarization import Diarization, SpeakerCount, SpeakerEmbedding
from pipeline.errors import ChannelCountError, UndecodableAudio
from pipeline.schemas import SpeakerTurn, WindowTranscript

TURNS = [SpeakerTurn(start=0.0, end=12.0, speaker="A"), SpeakerTurn(start=12.0, end=30.0, speaker="B")]


class FakeDiarization:
    """The diarization stage: one embedding per window; the turns above for any file."""

    def __init__(self, asr: FakeAsr):
        self.asr = asr
        self.embed = FakeMethod(self._embed)
        self.cluster = FakeMethod(self._cluster)
        self.asr_calls_done_when_embedding: list[int] = []

    async def _embed(self, samples, window) -> list[SpeakerEmbedding]:
        done = sum(r.task.done() for r in self.asr.transcribe.responses)
        self.asr_calls_done_when_embedding.append(done)
        return [SpeakerEmbedding(window.start_s, window.end_s, np.ones(4, np.float32))]

    async def _cluster(self, embeddings, count, known) -> Diarization:
        return Diarization(TURNS)


def diarizing_graph(asr: FakeAsr):
    graph, stages = make_graph(asr=asr)
    stages["diarization"] = graph.diarization = FakeDiarization(asr)
    return graph, stages


def diarize(req: TranscriptionRequest, count: SpeakerCount) -> TranscriptionRequest:
    return TranscriptionRequest(
        req.language, req.options, req.punctuate, req.summarize, req.request_id, speakers=count
    )


def test_windows_go_to_diarization_with_asr_and_the_segments_get_speakers():
    asr = FakeAsr(delays={0: 0.1, 1: 0.1, 2: 0.1})
    graph, stages = diarizing_graph(asr)
    events = run(events_of(graph, diarize(request(), SpeakerCount(num_speakers=2))))
    diarization = stages["diarization"]
    first_window = next(i for i, e in enumerate(events) if isinstance(e, WindowTranscript))
    assert first_window > 0 and len(diarization.embed.calls) == 3
    assert diarization.asr_calls_done_when_embedding == [0, 0, 0], "embedded while ASR ran"
    assert [call[0] for call in diarization.embed.calls] == [c[0] for c in asr.transcribe.calls], (
        "the samples ASR got"
    )
    assert len(diarization.cluster.calls) == 1, "clustered once per file"
    embeddings, count, known = diarization.cluster.calls[0]
    assert [e.start_s for e in embeddings] == [0.0, 10.0, 20.0] and count == SpeakerCount(num_speakers=2)
    assert known == {}
    document = events[-1]
    # windows at 0-5, 10-15 and 20-25 s: the second one is mostly B's (12-15)
    assert [s.speaker for s in document.segments] == ["A", "B", "B"]
    assert [(t.speaker, t.talk_s, t.turns) for t in document.speakers] == [("A", 12.0, 1), ("B", 18.0, 1)]
    assert document.timings.diarization_s >= 0


def test_without_diarize_the_stage_is_not_called_and_there_are_no_speakers():
    asr = FakeAsr()
    graph, stages = diarizing_graph(asr)
    document = run(events_of(graph, request()))[-1]
    assert stages["diarization"].embed.calls == [] and document.speakers is None
    assert all(s.speaker is None for s in document.segments)


def test_a_request_that_fails_cancels_its_embeddings():
    asr = FakeAsr(fail={1: [ValueError("boom")]})
    graph, stages = diarizing_graph(asr)

    async def slow_embed(samples, window):
        await asyncio.sleep(30)

    stages["diarization"].embed = FakeMethod(slow_embed)

    async def fail_then_look() -> list[bool]:
        with pytest.raises(ValueError):
            await events_of(graph, diarize(request(), SpeakerCount()))
        await asyncio.sleep(0)  # let the cancellations land, inside the loop (its end cancels all)
        return [r.task.cancelled() for r in stages["diarization"].embed.responses]

    cancelled = run(fail_then_look())
    assert cancelled and all(cancelled)


def test_speakers_alone_go_through_the_branch_without_asr():
    asr = FakeAsr()
    graph, stages = diarizing_graph(asr)
    graph.preprocess = FakePreprocess([[part(2, last=False), part(1, first=2)]])

    async def speakers():
        audio = await graph.plan(Upload(chunks=[], size=1))
        return await diarize_audio(stages["diarization"], audio, SpeakerCount(), "req-2")

    result = run(speakers())
    assert asr.transcribe.calls == [] and len(stages["diarization"].embed.calls) == 3
    assert result.turns == TURNS and [t.speaker for t in result.speakers] == ["A", "B"]
    assert result.request_id == "req-2" and result.duration_s == 30.0


@pytest.mark.parametrize(
    "names,references,param",
    [
        (["Ada"], [], "known_speaker_names"),
        ([], ["data:audio/wav;base64,AAAA"], "known_speaker_references"),
        (["A", "B", "C", "D", "E"], ["data:audio/wav;base64,AAAA"] * 5, "known_speaker_names"),
        (["Ada", "Ada "], ["data:audio/wav;base64,AAAA"] * 2, "known_speaker_names"),
        (["Ada"], ["data:audio/wav;base64,not base64!"], "known_speaker_references"),
        (["Ada"], ["data:audio/wav,plain"], "known_speaker_references"),
    ],
)
def test_known_speakers_that_do_not_pair_up_are_refused_naming_the_parameter(names, references, param):
    from deployments.known_speakers import known_speaker_audio
    from pipeline.errors import InvalidParameter

    with pytest.raises(InvalidParameter) as info:
        known_speaker_audio(names, references)
    assert info.value.param == param


def test_known_speakers_unpack_in_order():
    from deployments.known_speakers import known_speaker_audio

    found = known_speaker_audio([" Ada", "Bo"], ["data:audio/wav;base64,AAEC", "data:audio/ogg;base64,AwQ="])
    assert found == {"Ada": b"\x00\x01\x02", "Bo": b"\x03\x04"} and list(found) == ["Ada", "Bo"]
    assert known_speaker_audio(None, None) == {}


def by_channel(req: TranscriptionRequest) -> TranscriptionRequest:
    return TranscriptionRequest(
        req.language,
        req.options,
        req.punctuate,
        req.summarize,
        req.request_id,
        speakers=SpeakerCount(),
        speakers_by_channel=True,
    )


def test_speakers_by_channel_are_one_call_on_the_upload_made_before_any_window():
    asr = FakeAsr(delays={0: 0.1, 1: 0.1, 2: 0.1})
    graph, stages = diarizing_graph(asr)
    graph.preprocess = FakePreprocess(
        [[part(3)]], probe=AudioProbe(duration_s=30.0, seekable=False, channels=2)
    )
    diarization = stages["diarization"]
    asked: list[int] = []

    def channel_turns(
        upload: Upload,
    ) -> Coroutine[Any, Any, Diarization]:  # runs when the call is made; the answer is awaited later
        asked.append(len(asr.transcribe.calls))
        return asyncio.sleep(0, Diarization(TURNS))

    diarization.channel_turns = FakeMethod(channel_turns)
    upload = Upload(chunks=[], size=7)

    async def transcribe():
        audio = await graph.plan(upload, by_channel=True)
        return [event async for event in graph.run(audio, by_channel(request()))]

    document = run(transcribe())[-1]
    assert diarization.channel_turns.calls == [(upload,)], "one call, on the upload itself"
    assert asked == [0], "asked for before any window went to ASR"
    assert diarization.embed.calls == [] and diarization.cluster.calls == []
    assert [s.speaker for s in document.segments] == ["A", "B", "B"]


def test_a_file_that_is_not_one_speaker_per_channel_is_refused_before_any_transcription():
    asr = FakeAsr()
    graph, _ = diarizing_graph(asr)
    graph.preprocess = FakePreprocess(
        [[part(3)]], probe=AudioProbe(duration_s=30.0, seekable=False, channels=1)
    )
    with pytest.raises(ChannelCountError, match="1 audio channel") as caught:
        run(graph.plan(Upload(chunks=[], size=1), by_channel=True))
    assert caught.value.param == "multichannel"
    assert asr.transcribe.calls == []
    assert run(graph.plan(Upload(chunks=[], size=1))).first.windows, "without multichannel, mono is fine"


def test_a_rejected_channel_file_fails_the_request_with_the_audio_error():
    graph, stages = diarizing_graph(FakeAsr())
    graph.preprocess = FakePreprocess(
        [[part(3)]], probe=AudioProbe(duration_s=30.0, seekable=False, channels=2)
    )

    async def channel_turns(upload):
        return Rejected(UndecodableAudio("The audio stream could not be decoded."))

    stages["diarization"].channel_turns = FakeMethod(channel_turns)
    with pytest.raises(UndecodableAudio):
        run(events_of(graph, by_channel(request())))


def test_the_llm_gets_the_speaker_turns_of_a_diarized_transcript():
    asr = FakeAsr()
    graph, stages = diarizing_graph(asr)
    run(events_of(graph, diarize(request(punctuate=True), SpeakerCount())))
    text, punctuate, _, turns = stages["postprocess"].calls[0]
    assert punctuate and [t.speaker for t in turns] == ["A", "B"], "windows 1 and 2 are B's: one turn"
    assert "".join(t.text for t in turns).replace(" ", "") == text.replace(" ", "")
    run(events_of(graph, request(punctuate=True)))
    assert stages["postprocess"].calls[1][3] is None, "no speakers, no turns"
