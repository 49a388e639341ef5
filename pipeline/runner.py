"""The three stages in one process, no Ray: the baseline the graph is measured against, and the
engine of the ``python -m pipeline`` CLI."""

from __future__ import annotations

import time
from collections.abc import Callable

from pipeline.audio import Source, decode_audio
from pipeline.document import NO_SPEECH_LANGUAGE, build_document, stitch_segments, transcript_text
from pipeline.languages import normalize_language
from pipeline.llm import load_chat_backend
from pipeline.postprocess import PostProcessor
from pipeline.schemas import StageTimings, Task, TranscriptionResult
from pipeline.settings import PipelineSettings
from pipeline.vad import WindowPlanner
from pipeline.whisper import WhisperTranscriber, WindowAudio

#: Called after each ASR batch with (windows done, windows total).
ProgressCallback = Callable[[int, int], None]


class InProcessPipeline:
    """Decode, window, transcribe and post-process in the calling process."""

    def __init__(self, settings: PipelineSettings):
        self.settings = settings
        self.transcriber = WhisperTranscriber(settings.asr)
        self.planner = WindowPlanner(settings.audio)
        self.postprocessor = PostProcessor(settings.llm, load_chat_backend(settings.llm))

    def transcribe(
        self,
        source: Source,
        *,
        language: str | None = None,
        task: Task = "transcribe",
        punctuate: bool = True,
        summarize: bool = True,
        progress: ProgressCallback | None = None,
    ) -> TranscriptionResult:
        started = time.perf_counter()
        language = normalize_language(language) or self.settings.asr.default_language
        audio = decode_audio(
            source,
            max_duration_s=self.settings.audio.max_duration_s,
            sample_rate=self.transcriber.sample_rate,
        )
        windows = self.planner.plan(audio, self.transcriber.sample_rate)
        preprocessed = time.perf_counter()

        if language is None and windows:
            language = self.transcriber.detect_language(windows[0].cut(audio))
        results = []
        step = self.settings.asr.batch_size
        for i in range(0, len(windows), step):
            batch = [WindowAudio(w.cut(audio), w.start_s, w.index) for w in windows[i : i + step]]
            results += self.transcriber.transcribe(batch, language=language, task=task)
            if progress:
                progress(len(results), len(windows))
        segments = stitch_segments(results)
        transcribed = time.perf_counter()

        post = self.postprocessor.run(transcript_text(segments), punctuate=punctuate, summarize=summarize)
        finished = time.perf_counter()
        timings = StageTimings(
            preprocess_s=preprocessed - started,
            asr_s=transcribed - preprocessed,
            postprocess_s=finished - transcribed,
            total_s=finished - started,
            windows=len(windows),
        )
        return build_document(
            language=language or NO_SPEECH_LANGUAGE,
            task=task,
            duration_s=audio.size / self.transcriber.sample_rate,
            segments=segments,
            post=post,
            timings=timings,
            models={"asr": self.settings.asr.model, "llm": self.settings.llm.model},
        )
