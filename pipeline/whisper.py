"""Whisper through transformers: batched generation over windows, segment timestamps.

Each window (at most 30 s) is decoded in one ``generate`` pass (``force_unique_generate_call``),
the way batched WhisperX/faster-whisper work: windows are independent, so many windows of many
requests go through one batched call, and segment times come from Whisper's timestamp tokens,
clamped to the window (a model may predict a timestamp past the end of a short window) and moved
to absolute time by the window's offset.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import WhisperForConditionalGeneration, WhisperProcessor
from transformers.models.whisper.tokenization_whisper import LANGUAGES, TO_LANGUAGE_CODE

from pipeline.devices import dtype_name, memory_in_use_bytes, resolve_device, resolve_dtype
from pipeline.errors import InvalidParameter
from pipeline.schemas import ModelInfo, Segment, Task, WindowTranscript
from pipeline.settings import AsrSettings
from pipeline.tiny_models import resolve_model_path

log = logging.getLogger(__name__)

# transformers' generate warns on every Whisper call that max_new_tokens overrides the
# checkpoint's max_length, that Whisper's config carries suppress lists, and that the batched
# features have no attention mask (Whisper features are all padded to 30 s): all expected here.
logging.getLogger("transformers.generation.utils").setLevel(logging.ERROR)


def normalize_language(language: str | None) -> str | None:
    """Map a language code or English name (``en``, ``English``) to Whisper's code.

    Raises :class:`InvalidParameter` naming the parameter for anything Whisper does not know.
    """
    if language is None or language.strip() == "":
        return None
    key = language.strip().lower()
    if key in LANGUAGES:
        return key
    if key in TO_LANGUAGE_CODE:
        return TO_LANGUAGE_CODE[key]
    raise InvalidParameter(
        f"Unknown language {language!r}. Give an ISO-639-1 code Whisper knows (e.g. 'en', 'de') "
        "or leave it out to detect the language.", param="language")


@dataclass(frozen=True)
class WindowAudio:
    """One window to transcribe: samples at 16 kHz and where it sits in the file."""

    audio: np.ndarray
    offset_s: float
    index: int = 0


class WhisperTranscriber:
    """A loaded Whisper that transcribes batches of windows."""

    def __init__(self, settings: AsrSettings):
        started = time.perf_counter()
        self.settings = settings
        path = resolve_model_path(settings.model, "whisper")
        self.device = resolve_device(settings.device)
        self.dtype = resolve_dtype(settings.dtype, self.device, torch.float16)
        self.processor = WhisperProcessor.from_pretrained(path)
        self.model = WhisperForConditionalGeneration.from_pretrained(path, dtype=self.dtype)
        self.model.to(self.device).eval()
        self.tokenizer = self.processor.tokenizer
        self.sample_rate = self.processor.feature_extractor.sampling_rate
        # One config for every call: max_new_tokens replaces the checkpoint's max_length.
        self.generation_config = copy.deepcopy(self.model.generation_config)
        self.generation_config.max_length = None
        self.generation_config.max_new_tokens = settings.max_new_tokens
        self.timestamp_begin = self.tokenizer.convert_tokens_to_ids("<|notimestamps|>") + 1
        self.eos_token_id = self.tokenizer.convert_tokens_to_ids("<|endoftext|>")
        self._id_to_language = {tid: tok.strip("<|>") for tok, tid in
                                self.generation_config.lang_to_id.items()}
        self.load_s = time.perf_counter() - started
        log.info("loaded whisper %s on %s/%s in %.2fs", settings.model, self.device,
                 dtype_name(self.dtype), self.load_s)

    def info(self) -> ModelInfo:
        return ModelInfo(stage="asr", model=self.settings.model, backend="transformers",
                         device=self.device.type, dtype=dtype_name(self.dtype), load_s=self.load_s,
                         memory_bytes=memory_in_use_bytes(self.device))

    def _features(self, audios: Sequence[np.ndarray]) -> torch.Tensor:
        features = self.processor.feature_extractor(
            list(audios), sampling_rate=self.sample_rate, return_tensors="pt").input_features
        return features.to(self.device, self.dtype)

    @torch.inference_mode()
    def detect_language(self, audio: np.ndarray) -> str:
        """Whisper's most likely language for a window of audio."""
        return self._detect(self._features([audio]))[0]

    def _detect(self, features: torch.Tensor) -> list[str]:
        ids = self.model.detect_language(features, generation_config=self.generation_config)
        return [self._id_to_language[int(i)] for i in ids]

    @torch.inference_mode()
    def transcribe(self, windows: Sequence[WindowAudio], *, language: str | Sequence[str | None] | None,
                   task: Task = "transcribe") -> list[WindowTranscript]:
        """Transcribe windows in one batched ``generate`` call.

        ``language`` is one code for all windows, one per window, or ``None`` to detect it per
        window. Segment ids are per window (0-based); the document renumbers them.
        """
        if not windows:
            return []
        features = self._features([w.audio for w in windows])
        languages = ([language] * len(windows) if language is None or isinstance(language, str)
                     else list(language))
        missing = [i for i, lang in enumerate(languages) if lang is None]
        if missing:
            for i, detected in zip(missing, self._detect(features[missing])):
                languages[i] = detected
        output = self.model.generate(
            features,
            generation_config=self.generation_config,
            language=languages,
            task=task,
            return_timestamps=True,
            return_segments=True,
            force_unique_generate_call=True,
        )
        return [WindowTranscript(window=w.index, language=lang, segments=self._segments(raw, w))
                for raw, w, lang in zip(output["segments"], windows, languages)]

    def _segments(self, raw_segments: list[dict], window: WindowAudio) -> list[Segment]:
        duration = window.audio.shape[-1] / self.sample_rate
        segments: list[Segment] = []
        for raw in raw_segments:
            start = min(float(raw["start"]), duration)
            end = min(max(float(raw["end"]), start), duration)
            if start >= duration:
                break
            tokens = [t for t in raw["tokens"].tolist() if t < self.eos_token_id]
            text = self.tokenizer.decode(tokens, skip_special_tokens=True)
            if not text.strip():
                continue
            segments.append(Segment(id=len(segments), start=round(window.offset_s + start, 3),
                                    end=round(window.offset_s + end, 3), text=text, tokens=tokens,
                                    window=window.index))
        return segments
