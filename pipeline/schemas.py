"""The documents the pipeline produces (pydantic), shared by the runner, the CLI and the API."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from pipeline.llm_results import PunctuationResult, SummaryResult, TranslationResult

Task = Literal["transcribe", "translate"]


class _Schema(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)


class Word(_Schema):
    """A word, timed from the start of the file by cross-attention alignment."""

    word: str
    start: float
    end: float
    speaker: str | None = None
    """Who said it, when the transcript was diarized."""


class Segment(_Schema):
    """A stretch of speech with its text, timed from the start of the file."""

    id: int
    """Position in the document (0-based)."""
    seek: int = 0
    """Start of the decoding window it came from, in 10 ms frames (as Whisper counts)."""
    start: float
    """Start, in seconds from the start of the file."""
    end: float
    """End, in seconds from the start of the file."""
    text: str
    """Text as Whisper wrote it."""
    tokens: list[int] = Field(default_factory=list)
    """Whisper token ids of the text (timestamp tokens excluded)."""
    temperature: float = 0.0
    """Sampling temperature of the decoding (0 is greedy)."""
    avg_logprob: float = 0.0
    """Mean token log-probability of the window's decoding (low means unsure)."""
    compression_ratio: float = 0.0
    """zlib compression ratio of the window's text (high means repetition)."""
    no_speech_prob: float = 0.0
    """Probability the model gave to "no speech" for the window."""
    words: list[Word] = Field(default_factory=list)
    """Words with their times (only when word timestamps were asked for)."""
    window: int = 0
    """Index of the audio window the segment came from."""
    speaker: str | None = None
    """Who said it (a letter, ``A`` first, or a known speaker's name), when the transcript was
    diarized."""


class SpeakerTurn(_Schema):
    """A stretch of one speaker's speech, timed from the start of the file."""

    start: float
    end: float
    speaker: str
    """A letter (``A``, ``B``, ... in order of first appearance) or a known speaker's name."""


class TokenLogprob(_Schema):
    """One text token and the log-probability Whisper gave it: an entry of OpenAI's ``logprobs``."""

    token: str
    """The token's text (a token that holds part of a multi-byte character shows U+FFFD)."""
    logprob: float
    """Natural log of the probability the model gave the token (before Whisper's suppress rules)."""
    bytes: list[int]
    """The token's UTF-8 bytes as values 0-255; a character split across tokens is whole only once
    the tokens' bytes are joined."""


class WindowTranscript(_Schema):
    """What the ASR stage returns for one window."""

    window: int
    language: str
    segments: list[Segment]
    logprobs: list[TokenLogprob] | None = None
    """The window's text tokens in order (those of its segments), only when asked."""
    replica_id: str | None = None
    """The ASR replica that transcribed it (filled in by the service)."""
    node_id: str | None = None
    """The cluster node of that replica (filled in by the service)."""
    batch_size: int = 1
    """Windows in the ``generate`` call that decoded it (the service batches across requests)."""
    adapter: str | None = None
    """The LoRA adapter that decoded the window (merged at start, or chosen by the request);
    ``None``: the base model."""


class StageNodes(_Schema):
    """The cluster nodes that ran a request's stages, by Ray node id (the service only). Audio
    crosses nodes through Ray's object store wherever two of them differ."""

    ingress: str | None = None
    preprocess: str | None = None
    """The node that decoded the audio and put its windows in the object store."""
    asr_windows: dict[str, int] = Field(default_factory=dict)
    """How many of the file's windows ASR replicas on each node transcribed."""
    postprocess: str | None = None
    """The node of the LLM replica (``None`` when the LLM was not asked)."""


class StageTimings(_Schema):
    """Wall-clock seconds per stage, as the driver saw them (queueing included)."""

    preprocess_s: float = 0.0
    """Until every window was planned."""
    asr_s: float = 0.0
    """From the first window planned until the last was transcribed."""
    postprocess_s: float = 0.0
    total_s: float = 0.0
    windows: int = 0
    """Speech windows the audio was cut into: one Whisper input each (none for silence)."""
    first_window_s: float = 0.0
    """Seconds from the start until the first windows were planned (ASR starts then; a long file
    is still being decoded, so ASR and preprocessing overlap and their times add up to more than
    the total)."""
    preprocess_chunks_by_replica: dict[str, int] = Field(default_factory=dict)
    """Chunks of this file each preprocess replica decoded (one per replica for a file decoded
    front to back by one replica; the service only)."""
    asr_windows_by_replica: dict[str, int] = Field(default_factory=dict)
    """How many of the file's windows each ASR replica transcribed (the service only)."""
    asr_largest_batch: int = 0
    """Most windows in one ``generate`` call that decoded this file's windows, counting other
    requests' windows batched with them (the service only)."""
    nodes: StageNodes = Field(default_factory=StageNodes)
    """Where each stage ran (the service only)."""
    diarization_s: float = 0.0
    """From the last window transcribed until the speakers were known (``diarize=true``): what
    diarization adds to the wall time, since each window's embeddings are taken beside its ASR."""
    translation_s: float = 0.0
    """From the last window transcribed until the last segment was translated (``translate_to``):
    what translation adds to the wall time, since segments are translated as their windows end."""
    translation_calls: int = 0
    """Calls to the LLM stage that translated this file's segments (each with every segment final
    since the call before, in batches that fit the LLM's context)."""
    asr_windows_by_adapter: dict[str, int] = Field(default_factory=dict)
    """How many of the file's windows each Whisper LoRA adapter decoded (``base``: no adapter)."""


class ModelInfo(_Schema):
    """A loaded model, as one replica reports it."""

    stage: str
    model: str
    backend: str
    device: str
    dtype: str
    load_s: float
    """Seconds it took to load the model."""
    memory_bytes: int | None = None
    """Device memory in use by this process (CUDA only)."""
    gpu_memory_fraction: float | None = None
    """The most of one GPU's memory this replica may use: its torch allocator's cap, or vLLM's
    ``gpu_memory_utilization`` (CUDA only)."""
    replicas: int | None = None
    """Running replicas of the stage (filled in by the service)."""
    replica_id: str | None = None
    """The replica that answered (filled in by the service)."""
    node_id: str | None = None
    """The cluster node of that replica."""
    gpu_ids: list[str] = Field(default_factory=list)
    """GPU ids the scheduler assigned to that replica (logical; empty when none)."""
    warmup_s: float | None = None
    """Seconds the replica's warm-up inference took at start (so the first request does not)."""
    windows_transcribed: int | None = None
    """Windows that replica has run through Whisper since it started (ASR only)."""


class SpeakerTalk(_Schema):
    """One speaker of a diarized file."""

    speaker: str
    """A letter (``A``, ``B``, ...) or a known speaker's name, as on the segments."""
    talk_s: float
    """Seconds of speech."""
    turns: int
    """Turns taken."""


class DiarizationResult(_Schema):
    """Who spoke when in one audio file, without a transcript (``/v1/audio/diarization``)."""

    request_id: str | None = None
    duration_s: float
    """Length of the decoded audio in seconds."""
    turns: list[SpeakerTurn]
    """Each speaker's stretches of speech, in order."""
    speakers: list[SpeakerTalk]
    """Who spoke, in order of first appearance, with their talk time."""
    total_s: float
    """Wall-clock seconds the request took."""


class TranscriptionResult(_Schema):
    """The whole document for one audio file."""

    request_id: str | None = None
    language: str
    task: Task
    duration_s: float
    """Length of the decoded audio in seconds."""
    segments: list[Segment]
    text: str
    """Raw transcript: the segments' text joined."""
    punctuation: PunctuationResult
    summary: SummaryResult
    timings: StageTimings
    real_time_factor: float
    """Processing seconds per second of audio (lower is faster)."""
    models: dict[str, str]
    """Model name per stage."""
    speakers: list[SpeakerTalk] | None = None
    """Who spoke, in order of first appearance, with their talk time (``diarize=true`` only)."""
    translation: TranslationResult | None = None
    """The segments in the language asked for (``translate_to`` only)."""
