"""The three stages in one process, no Ray: the baseline the graph is measured against, and the
engine of the ``python -m pipeline`` CLI."""

from __future__ import annotations

import time
from collections.abc import Callable

from pipeline.audio import Source
from pipeline.document import NO_SPEECH_LANGUAGE, build_document, stitch_segments, transcript_text
from pipeline.languages import normalize_language
from pipeline.llm import load_chat_backend
from pipeline.long_audio import plan_in_chunks
from pipeline.postprocess import PostProcessor
from pipeline.schemas import StageTimings, Task, TranscriptionResult, WindowTranscript
from pipeline.settings import PipelineSettings
from pipeline.translation import (
    Translator,
    sources,
    target_language,
    translated_segments,
    translation_result,
)
from pipeline.vad import SpeechDetector
from pipeline.whisper import WhisperTranscriber, WindowAudio

#: Called after each ASR batch with (windows done, windows total).
ProgressCallback = Callable[[int, int], None]


class InProcessPipeline:
    """Decode, window, transcribe and post-process in the calling process."""

    def __init__(self, settings: PipelineSettings):
        self.settings = settings
        self.transcriber = WhisperTranscriber(settings.asr)
        self.detector = SpeechDetector(settings.audio) if settings.audio.vad else None
        backend = load_chat_backend(settings.llm)
        self.postprocessor = PostProcessor(settings.llm, backend)
        self.translator = Translator(settings.llm, backend)

    def transcribe(
        self,
        source: Source,
        *,
        language: str | None = None,
        task: Task = "transcribe",
        punctuate: bool = True,
        summarize: bool = True,
        translate_to: str | None = None,
        progress: ProgressCallback | None = None,
    ) -> TranscriptionResult:
        """``translate_to``: a language code or English name to translate the segments into."""
        started = time.perf_counter()
        language = normalize_language(language) or self.settings.asr.default_language
        target = target_language(translate_to)
        rate = self.transcriber.sample_rate
        # Planned a chunk at a time (as the service plans a file), so a long file is never held
        # whole, and each batch is transcribed as soon as its windows are final.
        waiting: list[WindowAudio] = []
        results: list[WindowTranscript] = []
        windows = 0
        duration_s = 0.0
        for part in plan_in_chunks(source, self.settings.audio, self.detector, sample_rate=rate):
            windows += len(part.windows)
            pairs = zip(part.windows, part.samples, strict=True)
            waiting += [WindowAudio(x, w.start_s, w.index) for w, x in pairs]
            if language is None and waiting:
                language = self.transcriber.detect_language(waiting[0].audio)
            duration_s = part.planned_to / rate
            step = self.settings.asr.batch_size
            while len(waiting) >= step or (part.last and waiting):
                batch, waiting = waiting[:step], waiting[step:]
                results += self.transcriber.transcribe(batch, language=language, task=task)
                if progress:
                    progress(len(results), windows)
        preprocessed = started  # planning and ASR interleave here; preprocess_s is not measured
        segments = stitch_segments(results)
        transcribed = time.perf_counter()

        translation = None
        if target is not None:
            answer = self.translator.translate(sources(segments), target)
            translation = translation_result(translated_segments(segments, answer.segments), target)
        translated = time.perf_counter()
        post = self.postprocessor.run(transcript_text(segments), punctuate=punctuate, summarize=summarize)
        finished = time.perf_counter()
        timings = StageTimings(
            preprocess_s=preprocessed - started,
            asr_s=transcribed - preprocessed,
            postprocess_s=finished - translated,
            translation_s=translated - transcribed,
            total_s=finished - started,
            windows=windows,
        )
        return build_document(
            language=language or NO_SPEECH_LANGUAGE,
            task=task,
            duration_s=duration_s,
            segments=segments,
            post=post,
            timings=timings,
            models={"asr": self.settings.asr.model, "llm": self.settings.llm.model},
            translation=translation,
        )
