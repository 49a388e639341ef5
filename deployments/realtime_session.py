"""A Realtime transcription session's settings: what ``session.update`` (GA) and
``transcription_session.update`` (beta) may set, and the one :class:`SessionConfig` both come to.

What this service cannot do is refused with an error naming the field (semantic VAD, noise
reduction, conversation sessions, PCM at a rate other than 24 kHz) rather than silently ignored,
as the client would otherwise believe it in effect. Keys that change nothing here
(``include``, ``create_response``, ``interrupt_response``, ``idle_timeout_ms``, ``delay``,
``keywords``, ``client_secret``, ...) and keys unknown to this version are accepted and ignored,
so that a newer SDK's session still connects.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from pipeline.errors import InvalidParameter
from pipeline.languages import normalize_language
from pipeline.live_audio import LiveFormat
from pipeline.live_turns import TurnDetection

#: The one PCM rate OpenAI's ``audio/pcm`` (beta: ``pcm16``) allows.
PCM_RATE = 24000
BetaFormat = Literal["pcm16", "g711_ulaw", "g711_alaw"]
#: :class:`TurnDetection`'s fields: OpenAI's ``server_vad`` keys.
_VAD_KEYS = ("threshold", "prefix_padding_ms", "silence_duration_ms")
_BETA: dict[LiveFormat, BetaFormat] = {
    "audio/pcm": "pcm16",
    "audio/pcmu": "g711_ulaw",
    "audio/pcma": "g711_alaw",
}
_FROM_BETA: dict[BetaFormat, LiveFormat] = {beta: ga for ga, beta in _BETA.items()}


def _refuse(message: str) -> PydanticCustomError:
    """A validation error whose message is shown to the client as it stands."""
    return PydanticCustomError("refused", message)


class FrozenModel(BaseModel):
    model_config = ConfigDict(frozen=True, use_attribute_docstrings=True)


class SessionConfig(FrozenModel):
    """A session's effective settings, whichever dialect set them."""

    format: LiveFormat = "audio/pcm"
    """Encoding of the appended audio: 16-bit little-endian mono PCM at 24 kHz, or G.711 at 8 kHz."""
    model: str | None = None
    """The model the client asked for; None for the service's configured ASR model."""
    language: str | None = None
    """Whisper's language code; None detects the language."""
    prompt: str | None = None
    """Text to guide style and spelling."""
    turn_detection: TurnDetection | None = Field(default_factory=TurnDetection)
    """Server VAD (the default, with OpenAI's defaults); None: the client commits each turn."""
    beta: bool = False
    """The client speaks the beta dialect, so session events go out in the beta shape."""

    def _transcription(self) -> dict[str, Any]:
        return {"model": self.model, "language": self.language, "prompt": self.prompt}

    def _vad(self) -> dict[str, Any] | None:
        vad = self.turn_detection
        return None if vad is None else {"type": "server_vad"} | {key: getattr(vad, key) for key in _VAD_KEYS}

    def ga_session(self) -> dict[str, Any]:
        """GA ``RealtimeTranscriptionSessionCreateRequest``."""
        audio_format = {"type": self.format} | ({"rate": PCM_RATE} if self.format == "audio/pcm" else {})
        audio_input = {
            "format": audio_format,
            "transcription": self._transcription(),
            "turn_detection": self._vad(),
            "noise_reduction": None,
        }
        return {"type": "transcription", "audio": {"input": audio_input}}

    def beta_session(self) -> dict[str, Any]:
        """Beta ``TranscriptionSession`` (without ``client_secret``, which the beta API sent only in
        answer to a REST request)."""
        return {
            "input_audio_format": _BETA[self.format],
            "input_audio_transcription": self._transcription(),
            "turn_detection": self._vad(),
        }


class Transcription(FrozenModel):
    """A key left out keeps its current value; null resets it to the service's default."""

    model: str | None = None
    """The model asked for; which names are served is the server's decision."""
    language: str | None = None
    """ISO-639-1 code or English name Whisper knows; null or empty detects the language."""
    prompt: str | None = None
    """Text that came before, to guide style and spelling."""

    @field_validator("language")
    @classmethod
    def _known_language(cls, value: str | None) -> str | None:
        try:
            return normalize_language(value)
        except InvalidParameter as exc:
            raise _refuse(exc.message.rstrip(".")) from None

    def changes(self) -> dict[str, Any]:
        return self.model_dump(include=self.model_fields_set)


class ServerVad(FrozenModel):
    """``turn_detection``: Silero VAD ends a turn after a pause. A key left out keeps the session's
    current value (OpenAI's defaults when it had none). Semantic VAD is refused, not approximated:
    send server_vad, or null to commit each turn yourself."""

    type: str = "server_vad"
    """server_vad; left out (allowed in the beta dialect) means server_vad."""
    threshold: Annotated[float, Field(strict=True, gt=0, le=1)] | None = None
    """Speech probability above which a frame counts as speech."""
    prefix_padding_ms: Annotated[int, Field(strict=True, ge=0, le=5000)] | None = None
    """Audio kept before the detected start of speech (bounded as the HTTP API's VAD options are)."""
    silence_duration_ms: Annotated[int, Field(strict=True, ge=0, le=10000)] | None = None
    """Pause after which the turn is committed."""

    @field_validator("type")
    @classmethod
    def _server_vad_only(cls, value: str) -> str:
        if value == "semantic_vad":
            raise _refuse(
                'semantic_vad is not supported; send {"type": "server_vad"} to end turns at pauses, '
                "or turn_detection null to commit each turn with input_audio_buffer.commit"
            )
        if value != "server_vad":
            raise _refuse(f"unknown turn detection type {value!r}; send 'server_vad', or turn_detection null")
        return value

    def applied_to(self, current: TurnDetection | None) -> TurnDetection:
        sent = {key: getattr(self, key) for key in _VAD_KEYS if getattr(self, key) is not None}
        return dataclasses.replace(current or TurnDetection(), **sent)


def _no_noise_reduction(value: Any) -> Any:
    if value is not None:
        raise _refuse("noise reduction is not supported; leave it out or send null")
    return value


class AudioFormat(FrozenModel):
    type: LiveFormat = "audio/pcm"
    rate: int | None = None
    """Only 24000 (PCM); left out means 24000."""

    @field_validator("rate")
    @classmethod
    def _pcm_rate(cls, value: int | None) -> int | None:
        if value is not None and value != PCM_RATE:
            raise _refuse(
                f"only {PCM_RATE} Hz is accepted, got {value}; resample to 24 kHz 16-bit mono PCM, "
                "or send audio/pcmu or audio/pcma (G.711 at 8 kHz)"
            )
        return value


class AudioInput(FrozenModel):
    format: AudioFormat | None = None
    """Left out or null: unchanged."""
    transcription: Transcription | None = None
    turn_detection: ServerVad | None = None
    """null: no VAD, the client commits each turn."""
    noise_reduction: Any = None
    """Not supported: only null or left out."""

    _noise = field_validator("noise_reduction")(_no_noise_reduction)


class Audio(FrozenModel):
    input: AudioInput | None = None


def apply_audio_input(current: SessionConfig, audio_input: AudioInput, beta: bool) -> SessionConfig:
    """``current`` with what ``audio_input`` sets: a key left out keeps its value, null resets it."""
    changes: dict[str, Any] = {"beta": beta}
    sent = audio_input.model_fields_set
    if audio_input.format is not None:
        changes["format"] = audio_input.format.type
    if audio_input.transcription is not None:
        changes.update(audio_input.transcription.changes())
    elif "transcription" in sent:
        changes.update(model=None, language=None, prompt=None)
    if audio_input.turn_detection is not None:
        changes["turn_detection"] = audio_input.turn_detection.applied_to(current.turn_detection)
    elif "turn_detection" in sent:
        changes["turn_detection"] = None
    return current.model_copy(update=changes)


class Session(FrozenModel):
    """GA session of an update: a key left out keeps its current value."""

    type: str
    """transcription: conversation sessions (realtime) are refused."""
    audio: Audio | None = None
    include: list[str] | None = None
    """Accepted and ignored: no logprobs are sent."""

    @field_validator("type")
    @classmethod
    def _transcription_only(cls, value: str) -> str:
        if value != "transcription":
            raise _refuse(
                f"this service serves transcription sessions only, not {value!r}; connect with "
                "?intent=transcription and send session.type 'transcription'"
            )
        return value


#: A beta session's keys by their GA names in ``audio.input``.
_GA_NAMES = {
    "input_audio_format": "format",
    "input_audio_transcription": "transcription",
    "turn_detection": "turn_detection",
}


class BetaSession(FrozenModel):
    """Beta session of an update: a key left out keeps its current value."""

    input_audio_format: BetaFormat | None = None
    input_audio_transcription: Transcription | None = None
    turn_detection: ServerVad | None = None
    """null: no VAD, the client commits each turn."""
    input_audio_noise_reduction: Any = None
    """Not supported: only null or left out."""
    include: list[str] | None = None
    """Accepted and ignored: no logprobs are sent."""

    _noise = field_validator("input_audio_noise_reduction")(_no_noise_reduction)

    def audio_input(self) -> AudioInput:
        """This beta session's settings under their GA names, with what it left out left unset."""
        beta_format = self.input_audio_format
        return AudioInput.model_construct(
            {_GA_NAMES[key] for key in self.model_fields_set if key in _GA_NAMES},
            format=beta_format and AudioFormat(type=_FROM_BETA[beta_format]),
            transcription=self.input_audio_transcription,
            turn_detection=self.turn_detection,
        )
