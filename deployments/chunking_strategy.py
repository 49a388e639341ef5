"""OpenAI's ``chunking_strategy`` on the transcription route: ``auto``, or a ``server_vad`` object
that sets Silero VAD's options for one request.

Apart from the form models (``deployments.api_requests``) because it is the one form value with a
grammar of its own: OpenAI's SDKs flatten the object into ``chunking_strategy[KEY]`` form fields,
other clients send it as JSON, and every way it can be wrong must answer one 400 that names
``chunking_strategy`` and says what to send. Its limits are :class:`VadOptions`' own, so a request
is held to the same bounds as the configuration.
"""

import json
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pipeline.errors import InvalidParameter
from pipeline.settings import VadOptions


def _limits(name: str, scale: int = 1) -> dict[str, Any]:
    """:class:`VadOptions`' bounds on ``name`` as ``Field`` keywords, times ``scale`` (1000: s to
    ms), so a request is held to the same limits as the configuration."""
    limits: dict[str, Any] = {}
    for item in VadOptions.model_fields[name].metadata:
        for key in ("gt", "ge", "lt", "le"):
            value = getattr(item, key, None)
            if value is not None:
                scaled = value * scale
                limits[key] = int(scaled) if scale != 1 and float(scaled).is_integer() else scaled
    return limits


def _range(limits: dict[str, Any]) -> str:
    low = f"{limits['gt']} <" if "gt" in limits else f"{limits['ge']} <="
    high = f"< {limits['lt']}" if "lt" in limits else f"<= {limits['le']}"
    return f"{low} x {high}"


_THRESHOLD = _limits("threshold")
_PREFIX_PADDING_MS = _limits("speech_pad_s", 1000)
_SILENCE_DURATION_MS = _limits("min_silence_s", 1000)

#: What to send instead, in every chunking_strategy error.
_CHUNKING_HINT = (
    "Send chunking_strategy=auto, or a server_vad object, either as JSON "
    '(\'{"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 200, "silence_duration_ms": 500}\') '
    "or as chunking_strategy[type]=server_vad, chunking_strategy[threshold]=... form fields "
    f"(as OpenAI's SDKs send it), with threshold {_range(_THRESHOLD)}, "
    f"prefix_padding_ms {_range(_PREFIX_PADDING_MS)} and silence_duration_ms {_range(_SILENCE_DURATION_MS)}; "
    "leave a key out for the service's configured value."
)


def _shown(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _bad_chunking_strategy(detail: str) -> InvalidParameter:
    return InvalidParameter(f"Invalid chunking_strategy: {detail}. {_CHUNKING_HINT}", "chunking_strategy")


class ServerVad(BaseModel):
    """OpenAI's ``VadConfig``: Silero VAD's settings for this request. A key left out takes the
    service's configured value (``audio.vad_threshold``, ``audio.vad_speech_pad_s``,
    ``audio.vad_min_silence_s``), not OpenAI's defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    type: Literal["server_vad"]
    """Must be server_vad."""
    threshold: Annotated[float, Field(**_THRESHOLD)] | None = None
    """Speech probability above which a 32 ms frame counts as speech (0 and 1 excluded)."""
    prefix_padding_ms: Annotated[int, Field(**_PREFIX_PADDING_MS)] | None = None
    """Audio kept around each stretch of speech, in milliseconds (on both sides, as Silero pads)."""
    silence_duration_ms: Annotated[int, Field(**_SILENCE_DURATION_MS)] | None = None
    """Shortest pause that separates two stretches of speech, in milliseconds."""

    @field_validator("threshold", "prefix_padding_ms", "silence_duration_ms", mode="before")
    @classmethod
    def _not_a_boolean(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("Input should be a number, not a boolean")
        return value

    def vad_options(self, configured: VadOptions) -> VadOptions:
        """``configured`` with the keys this object sets."""
        update: dict[str, float] = {}
        if self.threshold is not None:
            update["threshold"] = self.threshold
        if self.prefix_padding_ms is not None:
            update["speech_pad_s"] = self.prefix_padding_ms / 1000
        if self.silence_duration_ms is not None:
            update["min_silence_s"] = self.silence_duration_ms / 1000
        return VadOptions.model_validate({**configured.model_dump(), **update})


ChunkingStrategy = Literal["auto"] | ServerVad

BRACKETED = "chunking_strategy["
"""How OpenAI's SDKs name the form fields of a flattened ``chunking_strategy`` object."""


def parse_chunking_strategy(plain: Any, bracketed: Mapping[str, Any]) -> ChunkingStrategy | None:
    """``chunking_strategy`` from what a form carries: ``plain`` is the ``chunking_strategy``
    field (``auto``, a JSON object or string, or already an object), ``bracketed`` the
    ``chunking_strategy[KEY]`` fields by KEY (how OpenAI's Python and Node SDKs send an object)."""
    if bracketed and plain is not None:
        raise _bad_chunking_strategy(
            "it was sent both as chunking_strategy and as chunking_strategy[...] fields; send one"
        )
    value: Any = dict(bracketed) if bracketed else plain
    if isinstance(value, str):
        text = value.strip()
        if text in ("", "auto"):
            return "auto" if text else None
        try:
            value = json.loads(text)
        except (ValueError, RecursionError):
            raise _bad_chunking_strategy(f"{_shown(value)} is neither 'auto' nor a JSON object") from None
        if value is None or value == "auto":
            return value
    if value is None or isinstance(value, ServerVad):
        return value
    if not isinstance(value, Mapping):
        raise _bad_chunking_strategy(f"expected 'auto' or an object, got {_shown(value)}")
    if value.get("type") != "server_vad":
        got = f"type {_shown(value['type'])}" if "type" in value else "no type"
        raise _bad_chunking_strategy(f"the object has {got}; the only type is 'server_vad'")
    try:
        return ServerVad.model_validate(value)
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(str(part) for part in error["loc"])
        if error["type"] == "extra_forbidden":
            raise _bad_chunking_strategy(f"unknown key {key!r}") from None
        message = error["msg"].removeprefix("Value error, ")
        raise _bad_chunking_strategy(f"{key}={_shown(error['input'])}: {message}") from None
