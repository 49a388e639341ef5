"""Stitch per-window results into one document; shared by the in-process runner and the graph,
so both give the same document for the same audio and models."""

from __future__ import annotations

from collections.abc import Iterable

from pipeline.llm_results import PostprocessResult, TranslationResult
from pipeline.schemas import Segment, SpeakerTalk, StageTimings, Task, TranscriptionResult, WindowTranscript

#: The document's language when nothing was given and there was no speech to detect it from.
NO_SPEECH_LANGUAGE = "en"


def stitch_segments(windows: Iterable[WindowTranscript]) -> list[Segment]:
    """All segments in time order with document-wide ids."""
    ordered = sorted(windows, key=lambda w: w.window)
    segments = [s for w in ordered for s in sorted(w.segments, key=lambda s: (s.start, s.end))]
    return [s.model_copy(update={"id": i}) for i, s in enumerate(segments)]


def transcript_text(segments: Iterable[Segment]) -> str:
    return "".join(s.text for s in segments).strip()


def build_document(
    *,
    language: str,
    task: Task,
    duration_s: float,
    segments: list[Segment],
    post: PostprocessResult,
    timings: StageTimings,
    models: dict[str, str],
    request_id: str | None = None,
    speakers: list[SpeakerTalk] | None = None,
    translation: TranslationResult | None = None,
) -> TranscriptionResult:
    return TranscriptionResult(
        request_id=request_id,
        language=language,
        task=task,
        duration_s=round(duration_s, 3),
        segments=segments,
        text=transcript_text(segments),
        punctuation=post.punctuation,
        summary=post.summary,
        timings=timings,
        real_time_factor=round(timings.total_s / duration_s, 4) if duration_s > 0 else 0.0,
        models=models,
        speakers=speakers,
        translation=translation,
    )
