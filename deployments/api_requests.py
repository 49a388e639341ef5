"""The requests of the HTTP API: one pydantic model per route, taken as a multipart form.

As vLLM's speech-to-text protocol does, each route's form is one model (FastAPI's form models),
so the fields, their limits and their descriptions live in one place and appear as such in the
OpenAPI schema; checks that span fields are model validators. They raise the API's own
:class:`InvalidParameter` (not ``ValueError``), which pydantic lets through, so the answer names
the parameter at fault rather than the form as a whole. Unknown form fields are ignored, as
OpenAI's clients send fields this service does not use; the exception is the transcription
route's ``chunking_strategy[KEY]`` fields, the one object OpenAI's SDKs flatten into several form
fields, which are read together and checked as one parameter (``deployments.chunking_strategy``).
"""

# No `from __future__ import annotations`: FastAPI reads these models' fields at runtime.

from collections.abc import Mapping
from typing import Any, Literal

from fastapi import Form, UploadFile
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from deployments.chunking_strategy import BRACKETED, ChunkingStrategy, ServerVad, parse_chunking_strategy
from deployments.known_speakers import known_speaker_audio
from deployments.openai_protocol import Granularity, ResponseFormat
from pipeline.decoding import DecodeOptions
from pipeline.diarization import SpeakerCount
from pipeline.errors import InvalidParameter
from pipeline.languages import normalize_language
from pipeline.schemas import Task
from pipeline.settings import VadOptions
from pipeline.translation import target_language

#: How a route takes its form model: multipart, as an upload needs (FastAPI's form default is
#: url-encoded, which would describe the upload wrongly in the OpenAPI schema).
MULTIPART = Form(media_type="multipart/form-data")


class _Form(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True, populate_by_name=True)

    file: UploadFile | None = None
    """The audio file (wav, flac, mp3, ogg/opus, m4a, webm, mp4)."""

    def audio_file(self) -> UploadFile:
        if self.file is None:
            raise InvalidParameter(
                "The request has no 'file' part. Send the audio as multipart/form-data in a field "
                "named 'file'.",
                "file",
                "missing_file",
            )
        return self.file


class _SpeakerCountForm(_Form):
    num_speakers: int | None = None
    """With diarization: exactly this many speakers (1 to 20); found from the audio when left out."""
    min_speakers: int | None = None
    """With diarization: at least this many speakers (1 to 20)."""
    max_speakers: int | None = None
    """With diarization: at most this many speakers (1 to 20)."""
    multichannel: bool = False
    """With diarization: one speaker per channel of the recording (a call recorded in stereo; A
    is the first, usually left, channel) instead of speakers told apart by voice."""

    @model_validator(mode="after")
    def _speaker_count_is_possible(self) -> "_SpeakerCountForm":
        SpeakerCount(**self._counts())
        given = [name for name, value in self._counts().items() if value is not None]
        if self.multichannel and given:
            raise InvalidParameter(
                f"{given[0]} does not apply with multichannel=true: each channel is one speaker. "
                f"Leave out {given[0]}, or multichannel to find the speakers by voice.",
                given[0],
            )
        return self

    def _counts(self) -> dict[str, int | None]:
        return {
            "num_speakers": self.num_speakers,
            "min_speakers": self.min_speakers,
            "max_speakers": self.max_speakers,
        }


class DiarizationForm(_SpeakerCountForm):
    """``POST /v1/audio/diarization``: who spoke when, without a transcript."""

    response_format: Literal["json", "rttm"] = "json"
    """json (turns and talk time per speaker) or rttm (NIST's Rich Transcription Time Marked lines)."""

    def speaker_count(self) -> SpeakerCount:
        return SpeakerCount(**self._counts())


class TranscribeForm(_SpeakerCountForm):
    """``POST /v1/transcribe``: the document route."""

    language: str | None = None
    """Language code or English name; detected on the first speech window when left out."""
    task: Task = "transcribe"
    """transcribe, or translate into English."""
    punctuate: bool = True
    """Restore punctuation and casing with the LLM."""
    summarize: bool = True
    """Write a summary with the LLM."""
    stream: bool = False
    """Send server-sent events instead: 'progress' as each window finishes, 'segment' as soon as
    it and all before it are ready, then 'document'."""
    diarize: bool = False
    """Find who spoke: a speaker on each segment (and word), and each speaker's talk time."""
    model: str | None = None
    """A model name from GET /v1/models: a Whisper fine-tune's name (asr.adapters) decodes with
    it; left out, the configured Whisper."""
    translate_to: str | None = None
    """Translate the segments into this language (ISO-639-1 code or English name) with the LLM:
    the document gains 'translation', each segment's translation on its times, and ?format=srt
    or vtt gives the translated subtitles. With stream=true, a 'translation' event follows each
    segment as soon as it is translated."""

    _normalize_language = field_validator("language")(normalize_language)
    _normalize_translate_to = field_validator("translate_to")(target_language)

    def decode_options(self, adapter: str | None = None) -> DecodeOptions:
        """``adapter``: the Whisper LoRA adapter ``model`` selects."""
        return DecodeOptions(task=self.task, adapter=adapter)

    def check_format(self, fmt: str) -> None:
        """``?format=`` renders the document, which a stream sends as events instead."""
        if self.stream and fmt != "json":
            raise InvalidParameter(
                f"format={fmt} renders the finished document; stream=true sends events instead. "
                "Leave out one of them.",
                "format",
            )

    def speaker_count(self) -> SpeakerCount | None:
        """How many speakers to find; None without diarize."""
        if not self.diarize:
            given = [name for name, value in self._counts().items() if value is not None]
            given += ["multichannel"] if self.multichannel else []
            if given:
                raise InvalidParameter(f"{given[0]} needs diarize=true; send both, or neither.", given[0])
            return None
        return SpeakerCount(**self._counts())


class _OpenAIForm(_Form):
    model: str | None = None
    """A model name from GET /v1/models (e.g. whisper-1); the configured ASR model when left out."""
    prompt: str | None = None
    """Text that came before, to guide style and spelling."""
    response_format: ResponseFormat = "json"
    """json, text, srt, verbose_json or vtt; diarized_json (a speaker on each segment) with a
    diarizing model (transcriptions only)."""
    temperature: float = Field(0.0, ge=0.0, le=1.0)
    """0 decodes greedily; up to 1 samples."""
    punctuate: bool = False
    """Extension: restore punctuation and casing with the LLM."""
    summarize: bool = False
    """Extension: add an LLM summary under the key 'summary'."""
    translate_to: str | None = None
    """Extension: translate into this language (ISO-639-1 code or English name) with the LLM. The
    text, segments and subtitles of the answer are then the translation, on the source's times,
    and the key 'translation' marks any segment that kept its source text, with the reason."""

    _normalize_translate_to = field_validator("translate_to")(target_language)


class TranscriptionForm(_OpenAIForm):
    """``POST /v1/audio/transcriptions``, as OpenAI's API takes it."""

    language: str | None = None
    """ISO-639-1 code; detected when left out."""
    timestamp_granularities: list[Granularity] | None = Field(None, alias="timestamp_granularities[]")
    """word and/or segment; word timestamps need response_format=verbose_json."""
    timestamp_granularities_plain: list[Granularity] | None = Field(None, alias="timestamp_granularities")
    """The same as timestamp_granularities[]."""
    include: list[Literal["logprobs"]] | None = Field(None, alias="include[]")
    """logprobs: each text token's log-probability, under 'logprobs' (response_format=json only)."""
    stream: bool = False
    """Stream transcript.text.delta events, then transcript.text.done (json, text or diarized_json;
    diarized_json sends each transcript.text.segment, with its speaker, before the done event)."""
    known_speaker_names: list[str] | None = Field(None, alias="known_speaker_names[]")
    """With a diarizing model: up to 4 names for the speakers of known_speaker_references[], in
    the same order; a speaker found whose voice matches one takes its name instead of a letter."""
    known_speaker_references: list[str] | None = Field(None, alias="known_speaker_references[]")
    """With a diarizing model: each known speaker's voice, 2 to 10 s of audio as a data URL
    (data:audio/wav;base64,...)."""
    chunking_strategy: ChunkingStrategy | None = None
    """How Silero VAD cuts the audio, as OpenAI's API takes it: 'auto' (or left out) for the
    service's configured VAD, or a server_vad object {"type": "server_vad", "threshold",
    "prefix_padding_ms", "silence_duration_ms"}, sent as chunking_strategy[KEY] fields (as OpenAI's
    SDKs send it) or as one JSON string. A key left out takes the service's configured value, not
    OpenAI's defaults; an unknown type or key, or a value out of range, is refused with 400."""

    _normalize_language = field_validator("language")(normalize_language)

    @model_validator(mode="before")
    @classmethod
    def _gather_chunking_strategy(cls, data: Any) -> Any:
        """FastAPI hands the model every form field, declared or not: the SDKs' bracketed
        ``chunking_strategy[KEY]`` fields are gathered into the one declared field here."""
        if not isinstance(data, Mapping):
            return data
        bracketed = {
            key.removeprefix(BRACKETED).removesuffix("]"): value
            for key, value in data.items()
            if isinstance(key, str) and key.startswith(BRACKETED) and value != ""
        }
        plain = data.get("chunking_strategy")
        if not bracketed and plain is None:
            return data
        rest = {key: value for key, value in data.items() if not str(key).startswith(BRACKETED)}
        return {**rest, "chunking_strategy": parse_chunking_strategy(plain, bracketed)}

    @property
    def granularities(self) -> frozenset[str]:
        return frozenset((self.timestamp_granularities or []) + (self.timestamp_granularities_plain or []))

    @property
    def logprobs(self) -> bool:
        return "logprobs" in (self.include or [])

    @model_validator(mode="after")
    def _formats_allow_what_is_asked(self) -> "TranscriptionForm":
        if "word" in self.granularities and self.response_format != "verbose_json":
            raise InvalidParameter(
                "Word timestamps come only with response_format=verbose_json, as in OpenAI's API. "
                "Ask for verbose_json, or leave out 'word'.",
                "timestamp_granularities[]",
            )
        if self.stream and self.response_format not in ("json", "text", "diarized_json"):
            raise InvalidParameter(
                "stream=true works with response_format json, text or diarized_json, not "
                f"{self.response_format!r}.",
                "stream",
            )
        if self.logprobs and self.response_format != "json":
            raise InvalidParameter(
                f"include[]=logprobs works with response_format json, not {self.response_format!r}, "
                "as in OpenAI's API.",
                "include[]",
            )
        return self

    def known_speakers(self) -> dict[str, bytes]:
        """Each known speaker's reference audio by name (none when not sent)."""
        return known_speaker_audio(self.known_speaker_names, self.known_speaker_references)

    def vad_options(self, configured: VadOptions | None = None) -> VadOptions | None:
        """This request's VAD: None for 'auto' or no chunking_strategy (the service's own); for a
        server_vad object, ``configured`` (the service's, ``AudioSettings.vad_options()``;
        :class:`VadOptions`' defaults when not given) with the keys the object sets."""
        if isinstance(self.chunking_strategy, ServerVad):
            return self.chunking_strategy.vad_options(configured or VadOptions())
        return None

    def decode_options(self, prompt: str | None, adapter: str | None = None) -> DecodeOptions:
        return DecodeOptions(
            task="transcribe",
            temperature=self.temperature,
            prompt=prompt,
            word_timestamps="word" in self.granularities,
            logprobs=self.logprobs,
            adapter=adapter,
        )


class TranslationForm(_OpenAIForm):
    """``POST /v1/audio/translations``: into English, as OpenAI's API takes it."""

    def vad_options(self, configured: VadOptions | None = None) -> VadOptions | None:
        """None: OpenAI's translations take no chunking_strategy, so the service's VAD."""
        return None

    def decode_options(self, prompt: str | None, adapter: str | None = None) -> DecodeOptions:
        return DecodeOptions(task="translate", temperature=self.temperature, prompt=prompt, adapter=adapter)
