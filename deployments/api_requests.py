"""The requests of the HTTP API: one pydantic model per route, taken as a multipart form.

As vLLM's speech-to-text protocol does, each route's form is one model (FastAPI's form models),
so the fields, their limits and their descriptions live in one place and appear as such in the
OpenAPI schema; checks that span fields are model validators. They raise the API's own
:class:`InvalidParameter` (not ``ValueError``), which pydantic lets through, so the answer names
the parameter at fault rather than the form as a whole. Unknown form fields are ignored, as
OpenAI's clients send fields this service does not use.
"""

# No `from __future__ import annotations`: FastAPI reads these models' fields at runtime.

from typing import Literal

from fastapi import Form, UploadFile
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from deployments.openai_protocol import Granularity, ResponseFormat
from pipeline.decoding import DecodeOptions
from pipeline.errors import InvalidParameter
from pipeline.languages import normalize_language
from pipeline.schemas import Task

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


class TranscribeForm(_Form):
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

    _normalize_language = field_validator("language")(normalize_language)

    def decode_options(self) -> DecodeOptions:
        return DecodeOptions(task=self.task)


class _OpenAIForm(_Form):
    model: str | None = None
    """A model name from GET /v1/models (e.g. whisper-1); the configured ASR model when left out."""
    prompt: str | None = None
    """Text that came before, to guide style and spelling."""
    response_format: ResponseFormat = "json"
    """json, text, srt, verbose_json or vtt."""
    temperature: float = Field(0.0, ge=0.0, le=1.0)
    """0 decodes greedily; up to 1 samples."""
    punctuate: bool = False
    """Extension: restore punctuation and casing with the LLM."""
    summarize: bool = False
    """Extension: add an LLM summary under the key 'summary'."""


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
    """Stream transcript.text.delta events, then transcript.text.done (json or text only)."""

    _normalize_language = field_validator("language")(normalize_language)

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
        if self.stream and self.response_format not in ("json", "text"):
            raise InvalidParameter(
                f"stream=true works with response_format json or text, not {self.response_format!r}.",
                "stream",
            )
        if self.logprobs and self.response_format != "json":
            raise InvalidParameter(
                f"include[]=logprobs works with response_format json, not {self.response_format!r}, "
                "as in OpenAI's API.",
                "include[]",
            )
        return self

    def decode_options(self, prompt: str | None) -> DecodeOptions:
        return DecodeOptions(
            task="transcribe",
            temperature=self.temperature,
            prompt=prompt,
            word_timestamps="word" in self.granularities,
            logprobs=self.logprobs,
        )


class TranslationForm(_OpenAIForm):
    """``POST /v1/audio/translations``: into English, as OpenAI's API takes it."""

    def decode_options(self, prompt: str | None) -> DecodeOptions:
        return DecodeOptions(task="translate", temperature=self.temperature, prompt=prompt)
