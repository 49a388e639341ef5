"""Whisper through transformers: batched generation over windows, segment and word timestamps.

Each window (at most 30 s) is decoded in one ``generate`` pass (``force_unique_generate_call``),
the way batched WhisperX/faster-whisper work: windows are independent, so many windows of many
requests go through one batched call, and segment times come from Whisper's timestamp tokens,
clamped to the window (a model may predict a timestamp past the end of a short window) and moved
to absolute time by the window's offset.

The encoder runs once per batch and its output is shared by language detection, ``generate``
and the scoring pass of ``pipeline.whisper_scoring`` (``avg_logprob``, ``no_speech_prob`` and,
when asked, token logprobs). Word timestamps come from transformers' token timestamps: dynamic
time warping over the cross-attention of the checkpoint's alignment heads.

Fine-tunes served as LoRA adapters (``pipeline.whisper_adapters``) are chosen per call: the
encoder pass, ``generate`` and the scoring pass of a batch all run with its adapter.
"""

from __future__ import annotations

import copy
import logging
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import WhisperForConditionalGeneration, WhisperProcessor

from pipeline.decoding import DecodeOptions
from pipeline.devices import (
    cap_cuda_memory,
    dtype_name,
    memory_in_use_bytes,
    resolve_device,
    resolve_dtype,
)
from pipeline.schemas import ModelInfo, Segment, Task, WindowTranscript, Word
from pipeline.settings import AsrSettings, memory_fraction
from pipeline.tiny_models import resolve_model_path
from pipeline.whisper_adapters import WhisperAdapters
from pipeline.whisper_scoring import WhisperScorer, WindowScore

log = logging.getLogger(__name__)

# transformers' generate warns on every Whisper call that max_new_tokens overrides the
# checkpoint's max_length, that Whisper's config carries suppress lists, and that the batched
# features have no attention mask (Whisper features are all padded to 30 s): all expected here.
logging.getLogger("transformers.generation.utils").setLevel(logging.ERROR)


def compression_ratio(text: str) -> float:
    """zlib compression ratio of the text, as Whisper reports it (high means repetition)."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


@dataclass(frozen=True)
class WindowAudio:
    """One window to transcribe: samples at 16 kHz and where it sits in the file."""

    audio: np.ndarray
    offset_s: float
    index: int = 0


class WhisperTranscriber:
    """A loaded Whisper that transcribes batches of windows."""

    def __init__(self, settings: AsrSettings, gpu_share: float | None = None):
        """``gpu_share``: the fraction of a GPU Ray reserved for this replica (``None`` outside Ray);
        the replica's CUDA memory is capped at it, or at ``settings.gpu_memory_fraction``."""
        started = time.perf_counter()
        self.settings = settings
        path = resolve_model_path(settings.model, "whisper")
        self.device = resolve_device(settings.device)
        self.gpu_memory_fraction = cap_cuda_memory(
            self.device, memory_fraction(gpu_share, settings.gpu_memory_fraction)
        )
        self.dtype = resolve_dtype(settings.dtype, self.device, torch.float16)
        self.processor = WhisperProcessor.from_pretrained(path)
        model = WhisperForConditionalGeneration.from_pretrained(path, dtype=self.dtype)
        model.to(self.device).eval()  # type: ignore[arg-type]  # `to` is @wraps-decorated: mypy sees it unbound
        self.adapters = WhisperAdapters(model, settings, self.device)
        self.model = self.adapters.model
        self.tokenizer = self.processor.tokenizer
        self.sample_rate = self.processor.feature_extractor.sampling_rate
        # One config for every call: max_new_tokens replaces the checkpoint's max_length.
        self.generation_config = copy.deepcopy(self.model.generation_config)
        self.generation_config.max_length = None
        self.generation_config.max_new_tokens = settings.max_new_tokens
        self.timestamp_begin = self.tokenizer.convert_tokens_to_ids("<|notimestamps|>") + 1
        self.eos_token_id = self.tokenizer.convert_tokens_to_ids("<|endoftext|>")
        self.prev_token_id = self.tokenizer.convert_tokens_to_ids("<|startofprev|>")
        self.scorer = WhisperScorer(self.model, self.tokenizer, self.device, eos_token_id=self.eos_token_id)
        self._id_to_language = {
            # lang_to_id comes from the checkpoint's generation_config.json: no declared attribute
            tid: tok.strip("<|>")
            for tok, tid in self.generation_config.lang_to_id.items()  # type: ignore[attr-defined]
        }
        self.load_s = time.perf_counter() - started
        log.info(
            "loaded whisper %s on %s/%s in %.2fs",
            settings.model,
            self.device,
            dtype_name(self.dtype),
            self.load_s,
        )

    def info(self) -> ModelInfo:
        return ModelInfo(
            stage="asr",
            model=self.settings.model,
            backend="transformers",
            device=self.device.type,
            dtype=dtype_name(self.dtype),
            load_s=self.load_s,
            memory_bytes=memory_in_use_bytes(self.device),
            gpu_memory_fraction=self.gpu_memory_fraction,
        )

    def _features(self, audios: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-mel features (padded to 30 s) and the mask of frames that hold audio."""
        inputs = self.processor.feature_extractor(
            list(audios), sampling_rate=self.sample_rate, return_tensors="pt", return_attention_mask=True
        )
        return inputs.input_features.to(self.device, self.dtype), inputs.attention_mask

    def _encode(self, audios: Sequence[np.ndarray]):
        features, mask = self._features(audios)
        return self.model.get_encoder()(features), mask

    @torch.inference_mode()
    def detect_language(self, audio: np.ndarray, adapter: str | None = None) -> str:
        """Whisper's most likely language for a window of audio, as ``adapter`` hears it (``None``:
        the base model)."""
        with self.adapters.selected(adapter):
            encoded, _ = self._encode([audio])
            return self._detect(encoded)[0]

    def _detect(self, encoded) -> list[str]:
        ids = self.model.detect_language(encoder_outputs=encoded, generation_config=self.generation_config)
        return [self._id_to_language[int(i)] for i in ids]

    @torch.inference_mode()
    def transcribe(
        self,
        windows: Sequence[WindowAudio],
        *,
        language: str | Sequence[str | None] | None,
        task: Task = "transcribe",
        options: DecodeOptions | None = None,
    ) -> list[WindowTranscript]:
        """Transcribe windows in one batched ``generate`` call.

        ``language`` is one code for all windows, one per window, or ``None`` to detect it per
        window. ``options`` (task, temperature, prompt, word timestamps, logprobs, adapter) apply to
        every window; ``task`` is a shorthand when only the task differs from the defaults. Segment ids
        are per window (0-based); the document renumbers them.
        """
        options = options or DecodeOptions(task=task)
        with self.adapters.selected(options.adapter) as adapter:
            if not windows:
                return []
            languages, output, scores, token_logprobs = self._decode(windows, language, options)
        results = []
        for row, (raw, w, lang, (avg_logprob, no_speech_prob)) in enumerate(
            zip(output["segments"], windows, languages, scores, strict=True)
        ):
            kept = self._segments(raw, w, options)
            segments = [segment for _, segment in kept]
            logprobs = (
                self.scorer.text_token_logprobs(
                    [r for r, _ in kept], output["sequences"][row], token_logprobs[row]
                )
                if options.logprobs
                else None
            )
            ratio = round(compression_ratio("".join(s.text for s in segments)), 4)
            segments = [
                s.model_copy(
                    update={
                        "avg_logprob": avg_logprob,
                        "no_speech_prob": no_speech_prob,
                        "compression_ratio": ratio,
                    }
                )
                for s in segments
            ]
            results.append(
                WindowTranscript(
                    window=w.index, language=lang, segments=segments, logprobs=logprobs, adapter=adapter
                )
            )
        return results

    def _decode(
        self,
        windows: Sequence[WindowAudio],
        language: str | Sequence[str | None] | None,
        options: DecodeOptions,
    ) -> tuple[list[str], dict, list[WindowScore], torch.Tensor]:
        """The model's part of ``transcribe``, run with the batch's adapter: the encoder once,
        language detection where none is given, ``generate`` and the scoring pass. Returns each
        window's language, ``generate``'s output, and the scoring pass's scores and logprobs."""
        encoded, mask = self._encode([w.audio for w in windows])
        requested = (
            [language] * len(windows) if language is None or isinstance(language, str) else list(language)
        )
        missing = [i for i, lang in enumerate(requested) if lang is None]
        detected: dict[int, str] = {}
        if missing:
            subset = type(encoded)(last_hidden_state=encoded.last_hidden_state[missing])
            detected = dict(zip(missing, self._detect(subset), strict=True))
        languages = [detected[i] if lang is None else lang for i, lang in enumerate(requested)]
        prompt_ids = self._prompt_ids(options.prompt)
        output = self.model.generate(
            encoder_outputs=encoded,
            attention_mask=mask if options.word_timestamps else None,
            generation_config=self.generation_config,
            language=languages,
            task=options.task,
            prompt_ids=prompt_ids,
            temperature=options.temperature,
            return_timestamps=True,
            return_segments=True,
            return_token_timestamps=options.word_timestamps,
            force_unique_generate_call=True,
        )
        prefix_len = (0 if prompt_ids is None else len(prompt_ids)) + 3  # <|sot|><|lang|><|task|>
        scores, token_logprobs = self.scorer.score(encoded, output["sequences"], prefix_len)
        return languages, output, scores, token_logprobs

    def _prompt_ids(self, prompt: str | None) -> torch.Tensor | None:
        """``<|startofprev|>`` and the prompt's last tokens: as many as Whisper's context leaves
        beside the start tokens and ``max_new_tokens`` (at most 223, as OpenAI's Whisper keeps)."""
        if not prompt or not prompt.strip():
            return None
        room = min(223, self.model.config.max_target_positions - self.generation_config.max_new_tokens - 4)
        if room <= 0:
            return None
        # The prompt is plain text: "<|endoftext|>" in it is spelled out, not a control token
        # (transformers' get_prompt_ids refuses such text instead).
        ids = self.tokenizer(
            " " + prompt.strip(), add_special_tokens=False, split_special_tokens=True
        ).input_ids[-room:]
        return torch.tensor([self.prev_token_id, *ids], device=self.device)

    def _segments(
        self, raw_segments: list[dict], window: WindowAudio, options: DecodeOptions
    ) -> list[tuple[dict, Segment]]:
        """The window's segments, each with the raw segment of transformers it came from (those
        with no text, or past the window's end, are left out)."""
        duration = window.audio.shape[-1] / self.sample_rate
        segments: list[tuple[dict, Segment]] = []
        for raw in raw_segments:
            start = min(float(raw["start"]), duration)
            end = min(max(float(raw["end"]), start), duration)
            if start >= duration:
                break
            all_tokens = raw["tokens"].tolist()
            tokens = [t for t in all_tokens if t < self.eos_token_id]
            text = self.tokenizer.decode(tokens, skip_special_tokens=True)
            if not text.strip():
                continue
            words = (
                self._words(all_tokens, raw["token_timestamps"].tolist(), start, end, window.offset_s)
                if options.word_timestamps
                else []
            )
            segment = Segment(
                id=len(segments),
                seek=round(window.offset_s * 100),
                start=round(window.offset_s + start, 3),
                end=round(window.offset_s + end, 3),
                text=text,
                tokens=tokens,
                temperature=options.temperature,
                words=words,
                window=window.index,
            )
            segments.append((raw, segment))
        return segments

    def _words(
        self, tokens: list[int], times: list[float], start: float, end: float, offset: float
    ) -> list[Word]:
        """Group text tokens into words (a word starts at a token that begins with a space) and
        time each from its first token to the token after its last, within the segment."""
        groups: list[list[int]] = []  # positions in `tokens`
        for i, token in enumerate(tokens):
            if token >= self.eos_token_id:
                continue
            piece = self.tokenizer.convert_ids_to_tokens(token)
            if not groups or piece.startswith("Ġ"):
                groups.append([i])
            else:
                groups[-1].append(i)
        words = []
        for group in groups:
            text = self.tokenizer.decode([tokens[i] for i in group], skip_special_tokens=True).strip()
            if not text:
                continue
            after = group[-1] + 1
            w_start = min(max(times[group[0]], start), end)
            w_end = min(max(times[after] if after < len(times) else end, w_start), end)
            words.append(Word(word=text, start=round(offset + w_start, 3), end=round(offset + w_end, 3)))
        return words
