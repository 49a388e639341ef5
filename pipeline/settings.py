"""Pipeline settings: one pydantic model per stage, a docstring on every field.

The same models are the ``args`` of the Serve application (``deployments.app.AppArgs`` adds the
Ray-only deployment options on top) and the ``--config`` of the in-process CLI, so a YAML file
means the same thing in both. Unknown keys are errors, named by pydantic, so a typo in a config
never silently falls back to a default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, frozen=True)


class AudioSettings(_Settings):
    """Decoding limits and windowing."""

    max_duration_s: float = Field(4 * 3600.0, gt=0)
    """Longest audio accepted, in seconds; longer input is refused while it is being decoded."""

    max_upload_mb: float = Field(1024.0, gt=0)
    """Largest upload accepted, in MiB; checked before the request body is buffered."""

    window_s: float = Field(30.0, gt=0, le=30.0)
    """Longest window the audio is cut into for Whisper (Whisper sees at most 30 s)."""

    vad: bool = True
    """Cut windows at silences found by Silero VAD and never send silence to Whisper; false
    splits the whole audio into equal windows instead."""

    vad_threshold: float = Field(0.5, gt=0, lt=1)
    """Speech probability above which Silero counts a 32 ms frame as speech."""

    vad_min_silence_s: float = Field(0.5, ge=0)
    """Shortest pause that separates two stretches of speech."""

    vad_speech_pad_s: float = Field(0.2, ge=0)
    """Audio kept on each side of a stretch of speech, so word edges are not clipped."""

    vad_max_gap_s: float = Field(2.0, gt=0)
    """A silence at least this long always ends a window (shorter ones may sit inside one)."""

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


class AsrSettings(_Settings):
    """The Whisper stage."""

    model: str = "openai/whisper-large-v3-turbo"
    """Whisper checkpoint: a hub id, a local folder, or ``tiny-random[-SHAPE]`` (generated)."""

    device: Literal["auto", "cuda", "cpu"] = "auto"
    """Where the model runs. ``auto`` (and ``cuda``) use CUDA only when a GPU is really visible."""

    dtype: Literal["auto", "float16", "bfloat16", "float32"] = "auto"
    """Weights and compute dtype. ``auto`` is float16 on CUDA, float32 on CPU (CPU is always float32)."""

    batch_size: int = Field(8, ge=1)
    """Windows per ``generate`` call in the in-process runner (the Serve stage batches by its own
    ``max_batch_size``)."""

    max_new_tokens: int = Field(224, ge=1, le=444)
    """Upper bound of tokens decoded per 30 s window."""

    default_language: str | None = None
    """Language used when a request gives none; ``None`` detects it on the first window."""

    gpu_memory_fraction: float | None = Field(None, gt=0, le=1)
    """The most of one GPU's memory a replica may use, applied at replica start on CUDA with
    ``torch.cuda.set_per_process_memory_fraction``. ``None``: the replica's ``num_gpus`` share.
    The app builder refuses a fraction above the share: Ray's GPU fractions are logical, and
    this cap is what keeps a replica out of the memory of the one sharing its GPU."""


class LlmSettings(_Settings):
    """The post-processing LLM stage (punctuation and casing, summary)."""

    backend: Literal["transformers", "vllm"] = "transformers"
    """``transformers`` runs anywhere; ``vllm`` needs CUDA and the ``vllm`` extra."""

    model: str = "Qwen/Qwen2.5-1.5B-Instruct"
    """Chat LLM: a hub id, a local folder, or ``tiny-random`` (generated)."""

    device: Literal["auto", "cuda", "cpu"] = "auto"
    """Where the transformers backend runs; CUDA only when a GPU is really visible."""

    dtype: Literal["auto", "float16", "bfloat16", "float32"] = "auto"
    """Weights dtype. ``auto`` is bfloat16 on CUDA, float32 on CPU."""

    max_input_tokens: int = Field(3072, ge=16)
    """Longest piece of transcript (in LLM tokens) in one LLM call. Longer transcripts are
    punctuated chunk by chunk (with overlap) and summarised map-reduce over the chunks."""

    chunk_overlap_words: int = Field(12, ge=0)
    """Words of the previous chunk given again at the start of the next, as context for its
    punctuation (they are checked, then dropped from the joined text)."""

    max_transcript_tokens: int = Field(200_000, ge=16)
    """Longest transcript post-processed at all (about 40 hours of speech at the default); longer
    text is left raw and the result says why."""

    max_summary_tokens: int = Field(384, ge=16)
    """Tokens the summary may use."""

    gpu_memory_fraction: float | None = Field(None, gt=0, le=1)
    """The most of one GPU's memory a replica may use: vLLM's ``gpu_memory_utilization``, or for
    transformers the cap set with ``torch.cuda.set_per_process_memory_fraction`` at replica start.
    ``None``: the replica's ``num_gpus`` share (times ``gpu_memory_margin`` for vLLM). The app
    builder refuses a fraction above the share (vLLM takes that much of the GPU whatever Ray's
    logical fraction says)."""

    gpu_memory_margin: float = Field(0.9, gt=0, le=1)
    """vLLM only, when ``gpu_memory_fraction`` is not set: ``gpu_memory_utilization`` is this times
    the replica's GPU share, so vLLM never takes memory beyond the fraction Ray gave the replica."""

    vllm_options: dict[str, Any] = Field(default_factory=dict)
    """Extra keyword arguments for ``vllm.LLM`` (e.g. ``max_model_len``). Not
    ``gpu_memory_utilization``: that is ``gpu_memory_fraction``, checked against the GPU share."""

    @field_validator("vllm_options")
    @classmethod
    def _memory_is_gpu_memory_fraction(cls, options: dict[str, Any]) -> dict[str, Any]:
        if "gpu_memory_utilization" in options:
            raise ValueError(
                "set llm.gpu_memory_fraction instead of vllm_options.gpu_memory_utilization: "
                "it becomes vLLM's gpu_memory_utilization, and is checked against the "
                "replica's GPU share"
            )
        return options


class ApiSettings(_Settings):
    """The HTTP API: model names clients may ask for, and the API key."""

    model_aliases: list[str] = ["whisper-1"]
    """Names accepted in a request's ``model`` besides the ASR model's own name (``asr.model``).
    Any other name is refused with 404 ``model_not_found``: a request never picks a checkpoint."""

    api_key_env: str = "SPEECHGRAPH_API_KEY"
    """Environment variable holding the API key (several keys: comma-separated, for rotation).
    When it is set and not empty, every ``/v1`` request needs ``Authorization: Bearer KEY``;
    unset (local use) means no authentication. In Kubernetes it comes from a Secret."""

    max_prompt_chars: int = Field(4096, ge=0)
    """Longest ``prompt`` accepted, in characters (Whisper then keeps its last 223 tokens)."""


class PipelineSettings(_Settings):
    """Everything the three stages need; Ray-free."""

    api: ApiSettings = ApiSettings()
    audio: AudioSettings = AudioSettings()
    asr: AsrSettings = AsrSettings()
    llm: LlmSettings = LlmSettings()


def load_pipeline_settings(path: str | Path) -> PipelineSettings:
    """Read settings from YAML: either a plain settings file, or a Serve config file whose first
    application's ``args`` are taken (the Ray-only ``deployments`` key is left out)."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    if "applications" in data:
        apps = data["applications"]
        if not apps:
            raise ValueError(f"{path}: 'applications' is empty")
        data = dict(apps[0].get("args") or {})
        data.pop("deployments", None)
    return PipelineSettings.model_validate(data)
