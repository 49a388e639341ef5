"""Pipeline settings: one pydantic model per stage, a docstring on every field.

The same models are the ``args`` of the Serve application (``deployments.app_args.AppArgs`` adds
the Serve-only keys on top: the HTTP API and the deployment options) and the ``--config`` of the
in-process CLI, so a YAML file means the same thing in both. A Serve config file is read into app
args in one place, :func:`serve_config_args`, by the CLI and the Serve side alike. Unknown keys are
errors, named by pydantic, so a typo in a config never silently falls back to a default.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, frozen=True)


class VadOptions(_Settings):
    """How Silero VAD finds speech: the settings' values, or one request's (OpenAI's
    ``chunking_strategy``)."""

    threshold: float = Field(0.5, gt=0, lt=1)
    """Speech probability above which a 32 ms frame counts as speech."""

    min_silence_s: float = Field(0.5, ge=0, le=10)
    """Shortest pause that separates two stretches of speech."""

    speech_pad_s: float = Field(0.2, ge=0, le=5)
    """Audio kept on each side of a stretch of speech, so word edges are not clipped."""


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

    chunked_above_s: float = Field(900.0, gt=0)
    """Audio longer than this (as its container declares) whose format seeks exactly (wav, flac)
    is cut into chunks that several preprocess replicas decode and scan for speech in parallel;
    shorter audio, and formats that cannot seek exactly, are decoded by one replica, a chunk at a
    time."""

    chunk_s: float = Field(300.0, ge=60)
    """Length of one chunk of the timeline: the most audio a preprocess call decodes at once."""

    chunk_overlap_s: float = Field(10.0, ge=1)
    """Audio scanned on each side of a chunk, so speech crossing a chunk's edge is seen whole."""

    chunks_in_flight: int = Field(4, ge=1)
    """Chunks of one file being decoded at the same time (spread over the preprocess replicas)."""

    max_decoded_s_in_flight: float = Field(3600.0, gt=0)
    """Seconds of decoded audio one preprocess replica holds at once over all its calls (about
    230 MB per hour at 16 kHz float32); work beyond it is refused with 503 and Retry-After."""

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    def vad_options(self) -> VadOptions:
        """This configuration's VAD, for requests that set none of their own."""
        return VadOptions(
            threshold=self.vad_threshold,
            min_silence_s=self.vad_min_silence_s,
            speech_pad_s=self.vad_speech_pad_s,
        )


#: An adapter's name: it travels in requests and URLs, and keys peft's module dicts (no dots).
_ADAPTER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


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

    adapters: dict[str, str] = Field(default_factory=dict)
    """Fine-tunes of ``model`` served as LoRA adapters, chosen per request: name -> a local folder
    or Hub id of a peft LoRA adapter (``adapter_config.json`` and its weights) trained on ``model``,
    or ``tiny-random-lora-a`` / ``-b`` (generated, for the ``tiny-random`` Whispers). All load at
    start, beside the base model, which stays available; switching costs no reload, and windows
    of different adapters are decoded in separate ``generate`` calls. A name is letters, digits,
    ``-`` and ``_`` (it travels in requests, and peft keys its weights by it), and is not ``model``."""

    merge_adapter: str | None = None
    """The name of the one adapter in ``adapters`` to merge into Whisper's weights at start: every
    window is then decoded by that fine-tune, with no per-token LoRA cost and no per-request choice
    (one fine-tune serving all traffic, such as call triage). No other adapter may be listed beside
    it: each was trained on the base weights, which merging replaces."""

    @field_validator("adapters")
    @classmethod
    def _adapter_names_are_plain(cls, adapters: dict[str, str]) -> dict[str, str]:
        for name, source in adapters.items():
            if not _ADAPTER_NAME.fullmatch(name):
                raise ValueError(
                    f"asr.adapters: name {name!r} must start with a letter or digit and hold only "
                    "letters, digits, '-' and '_'"
                )
            if not source.strip():
                raise ValueError(f"asr.adapters: adapter {name!r} needs a folder or Hub id")
            if name == "base":
                raise ValueError(
                    "asr.adapters: 'base' is reserved (it names the model without an adapter in "
                    "timings.asr_windows_by_adapter); give the adapter another name"
                )
        return adapters

    @model_validator(mode="after")
    def _adapters_fit_the_model(self) -> AsrSettings:
        if self.model in self.adapters:
            raise ValueError(
                f"asr.adapters: an adapter is named {self.model!r}, the name of asr.model; "
                "give it a name of its own, so a request for either is unambiguous"
            )
        if self.merge_adapter is None:
            return self
        if self.merge_adapter not in self.adapters:
            raise ValueError(
                f"asr.merge_adapter: {self.merge_adapter!r} is not one of asr.adapters "
                f"({', '.join(self.adapters) or 'none listed'}); list it there with its folder or Hub id"
            )
        others = sorted(set(self.adapters) - {self.merge_adapter})
        if others:
            raise ValueError(
                f"asr.merge_adapter: {self.merge_adapter!r} is merged into the weights, so "
                f"asr.adapters may list only it, not also {', '.join(others)}: those were trained "
                "on the base weights, which merging replaces. Serve them from another deployment, "
                "or leave merge_adapter out to choose adapters per request."
            )
        return self


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

    translation_batch_segments: int = Field(40, ge=1, le=500)
    """Most segments translated in one LLM call (fewer when they would not fit
    ``max_input_tokens``): numbered lines the LLM must give back one for one."""

    translation_context_segments: int = Field(3, ge=0, le=50)
    """Source segments before a batch shown to the LLM with it, not translated, so that a batch
    starting mid-conversation keeps its pronouns and terms."""

    translation_token_ratio: float = Field(2.5, ge=1, le=10)
    """Output tokens allowed per input token of a batch: room for target languages that take
    more tokens than the source (or scripts the tokenizer splits finely)."""

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
    """Extra keyword arguments for vLLM's ``AsyncEngineArgs`` (e.g. ``max_model_len``). Not
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


class DiarizationSettings(_Settings):
    """Who spoke when: voice prints of each window (Resemblyzer's GE2E encoder, whose trained
    weights ship in its wheel, or pyannote's pipeline), clustered once per file
    (``pipeline.diarization``)."""

    backend: Literal["resemblyzer", "pyannote"] = "resemblyzer"
    """The voice prints: ``resemblyzer`` works offline with no token; ``pyannote`` runs
    pyannote.audio 4's diarization pipeline on each window (the ``pyannote`` extra, its gated
    weights, a torchaudio built for the installed torch) and clusters its speakers' embeddings
    across the file. Speakers by channel (``multichannel``) need neither."""

    pyannote_model: str = "pyannote/speaker-diarization-community-1"
    """With the pyannote backend: a hub id, or a local folder (or its ``config.yaml``) holding
    the pipeline, for machines without the hub."""

    pyannote_token: SecretStr | None = None
    """With the pyannote backend: a Hugging Face token that may read the gated model. Left out,
    the hub client reads ``HF_TOKEN`` from the replica's environment (``runtime_env``), which
    keeps the token out of the config."""

    device: Literal["auto", "cuda", "cpu"] = "auto"
    """Where the speaker encoder runs. GE2E is small (1.4 M weights): a CPU embeds a minute of
    speech in about half a second."""

    count_threshold: float | None = Field(None, gt=0, lt=2)
    """Cosine distance (average linkage) beyond which two groups of voice prints are different
    speakers, when a request gives no ``num_speakers``. Higher merges similar voices. Left out:
    the backend's own (0.3 for GE2E, tuned on the shared recordings; 0.6 for pyannote's
    WeSpeaker embeddings, see ``pipeline.pyannote_speakers``)."""

    min_speaker_windows: int = Field(8, ge=1)
    """Fewest 1.6 s embedding windows (0.4 s apart) a speaker found from the data needs: about
    3 s of speech. A speaker heard less is found only when the request gives the count."""

    min_speaker_share: float = Field(0.02, ge=0, lt=1)
    """Least share of a long file's voice prints a speaker found from the data needs (when more
    than ``min_speaker_windows``): on an hour, about a minute of speech. Stray windows (changeovers,
    laughter) add up to false speakers on long files without it; a speaker heard less is found
    only when the request gives the count."""

    min_pause_s: float = Field(0.1, ge=0, le=10)
    """Shortest pause that ends a stretch of speech for the voice prints (Silero's
    ``min_silence_s`` inside each window): an embedding window never spans such a pause, so it
    rarely holds two people, who often change over with a short pause. On a 15-minute, 4-speaker
    conversation with 0.4 s changeovers, the transcription VAD's 0.5 s let mixed windows pass
    for 5 more speakers (DER 45%); 0.1 s found 5 (DER 15%)."""

    known_speaker_similarity: float = Field(0.75, ge=-1, le=1)
    """Least cosine similarity between a known speaker's reference and a speaker found for the
    name to be given; a speaker like no reference keeps its letter. On the shared recordings two
    clips of one person scored 0.83 to 0.94, two different people 0.40 to 0.66 (GE2E's prints:
    measure your own with the pyannote backend)."""


class PipelineSettings(_Settings):
    """Everything the stages need; Ray-free."""

    audio: AudioSettings = AudioSettings()
    asr: AsrSettings = AsrSettings()
    llm: LlmSettings = LlmSettings()
    diarization: DiarizationSettings = DiarizationSettings()


#: Keys of a Serve application's ``args`` that only the Serve side reads (``deployments.app_args``).
SERVE_ONLY_KEYS = ("deployments", "api", "realtime")


def application_args(serve_config: dict, source: str | Path) -> dict:
    """The ``args`` of a parsed Serve config's first application (``source`` names the config in
    errors). The one place that knows where a Serve config keeps them."""
    apps = serve_config.get("applications") if isinstance(serve_config, dict) else None
    if not apps:
        raise ValueError(
            f"{source}: not a Serve config with an application: it needs 'applications:' with at "
            "least one entry whose 'args' are the app args (see serve_config.yaml)"
        )
    args = apps[0].get("args") or {}
    if not isinstance(args, dict):
        raise ValueError(f"{source}: the first application's 'args' is not a mapping of settings")
    return args


def serve_config_args(path: str | Path) -> dict:
    """The first application's ``args`` of the Serve config file at ``path``, as a fresh dict."""
    return application_args(_read_yaml(path), path)


def load_pipeline_settings(path: str | Path) -> PipelineSettings:
    """Read settings from YAML: either a plain settings file, or a Serve config file whose first
    application's ``args`` are taken, less the keys only the Serve side reads."""
    data = _read_yaml(path)
    if isinstance(data, dict) and "applications" in data:
        args = application_args(data, path)
        data = {key: value for key, value in args.items() if key not in SERVE_ONLY_KEYS}
    return PipelineSettings.model_validate(data)


def _read_yaml(path: str | Path) -> dict:
    return yaml.safe_load(Path(path).read_text()) or {}


def memory_fraction(gpu_share: float | None, configured: float | None, margin: float = 1.0) -> float | None:
    """The fraction of one GPU's memory a replica may use: ``configured`` when set, else its Ray
    GPU share (at most one whole GPU) times ``margin``; ``None`` with neither (no cap)."""
    if configured is not None:
        return configured
    if not gpu_share or gpu_share <= 0:
        return None
    return round(min(gpu_share, 1.0) * margin, 4)
