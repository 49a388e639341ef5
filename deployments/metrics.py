"""The speech view of the service, as Prometheus metrics through ``ray.serve.metrics``.

Why Ray's metrics and not ``prometheus_client`` in each replica: Ray's metrics agent on every node
collects them from all replicas and serves one scrape endpoint (the ``metrics`` port KubeRay's
PodMonitor scrapes), with the ``deployment``, ``replica`` and ``application`` labels added, next to
Serve's own ``ray_serve_*`` series. Ray prefixes every name with ``ray_`` and adds ``_total`` to
counters: ``speechgraph_requests`` is scraped as ``ray_speechgraph_requests_total``.

Labels stay bounded: routes are the API's route templates, statuses are HTTP codes, reasons are
the fixed codes of :data:`pipeline.llm_results.FallbackReason`; never request ids, file names or
languages. Each stage builds its metrics in its replica's ``__init__`` (Serve adds its labels only
inside a replica).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from ray.serve.metrics import Counter, Gauge, Histogram

from pipeline.llm_results import PostprocessResult
from pipeline.schemas import StageTimings

#: Seconds, from a short clip's preprocessing to an hour-long file end to end.
SECONDS_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800]
#: Wall seconds per audio second: a GPU is far below 0.1, a CPU with real models near 1.
RTF_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5]
BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64]
#: Ray's histogram boundaries must be positive: a request with no speech lands at or below 0.5.
WINDOW_BUCKETS = [0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]
SPEAKER_BUCKETS = [1, 2, 3, 4, 5, 6, 8, 10, 20]
RATIO_BUCKETS = [0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]


def audio_seconds() -> Counter:
    return Counter(
        "speechgraph_audio_seconds",
        description="Seconds of audio a stage has cleared (preprocess: decoded; asr: speech "
        "windows through Whisper).",
        tag_keys=("stage",),
    )


def postprocess_fallbacks() -> Counter:
    return Counter(
        "speechgraph_postprocess_fallbacks",
        description="Punctuation or summary requested but not delivered, by task and reason code.",
        tag_keys=("task", "reason"),  # type: ignore[arg-type]  # Ray annotates Tuple[str], means Tuple[str, ...]
    )


def count_fallbacks(counter: Counter, result: PostprocessResult) -> None:
    for task, fallback in (
        ("punctuation", result.punctuation.fallback),
        ("summary", result.summary.fallback),
    ):
        if fallback is not None:
            counter.inc(tags={"task": task, "reason": fallback})


class HeldGauge:
    """A gauge whose value stays in the scrape until it changes. Ray 2.60 drops a gauge's series
    once it has not been set for about two export intervals (ray-project/ray#64633), so a value
    set once (a model's load time) or rarely (sessions open) would vanish from dashboards and
    alerts a few seconds after it was set; a daemon thread sets it again every second."""

    REFRESH_S = 1.0

    def __init__(self, gauge: Gauge):
        self._gauge = gauge
        self._value: float | None = None
        threading.Thread(target=self._refresh, name="held-gauge", daemon=True).start()

    def set(self, value: float) -> None:
        self._value = value
        self._gauge.set(value)

    def _refresh(self) -> None:
        tick = threading.Event()
        while not tick.wait(self.REFRESH_S):
            if self._value is not None:
                self._gauge.set(self._value)


def model_load_seconds(stage: str) -> HeldGauge:
    gauge = Gauge(
        "speechgraph_model_load_seconds",
        description="Seconds the replica took to load its model.",
        tag_keys=("stage",),
    )
    gauge.set_default_tags({"stage": stage})
    return HeldGauge(gauge)


class IngressMetrics:
    def __init__(self):
        self.requests = Counter(
            "speechgraph_requests",
            description="Requests answered, by route and HTTP status.",
            tag_keys=("route", "status"),
        )
        self.stage_seconds = Histogram(
            "speechgraph_stage_seconds",
            description="Seconds a request spent in each stage, as the driver saw "
            "them (queueing included); stage=total is end to end.",
            boundaries=SECONDS_BUCKETS,
            tag_keys=("stage",),
        )
        self.real_time_factor = Histogram(
            "speechgraph_real_time_factor",
            description="Wall seconds per second of audio, per request.",
            boundaries=RTF_BUCKETS,
        )
        self.windows = Histogram(
            "speechgraph_windows_per_request",
            description="Speech windows (Whisper inputs) per request.",
            boundaries=WINDOW_BUCKETS,
        )
        self.received_bytes = Counter(
            "speechgraph_received_bytes", description="Bytes of audio uploads received."
        )
        self.fallbacks = postprocess_fallbacks()  # llm_unavailable: the ingress found no LLM to ask

    def record_document(self, timings: StageTimings, duration_s: float, diarized: bool = False) -> None:
        stages = ("preprocess", "asr", "diarization", "postprocess", "total")
        for stage in stages if diarized else [s for s in stages if s != "diarization"]:
            self.stage_seconds.observe(getattr(timings, f"{stage}_s"), tags={"stage": stage})
        if duration_s > 0:
            self.real_time_factor.observe(timings.total_s / duration_s)
        self.windows.observe(timings.windows)


class PreprocessMetrics:
    def __init__(self):
        self.audio_seconds = audio_seconds()
        self.audio_seconds.set_default_tags({"stage": "preprocess"})
        self.speech_ratio = Histogram(
            "speechgraph_vad_speech_ratio",
            description="Share of each file's duration that VAD kept as speech windows "
            "(files decoded by one replica; long files cut across replicas are not counted).",
            boundaries=RATIO_BUCKETS,
        )

    def record_decoded(self, seconds: float) -> None:
        if seconds > 0:
            self.audio_seconds.inc(seconds)

    def record_file(self, duration_s: float, speech_s: float) -> None:
        """A file decoded whole by this replica: the share of it that is speech."""
        if duration_s > 0:
            self.speech_ratio.observe(min(1.0, speech_s / duration_s))


class AsrMetrics:
    def __init__(self):
        self.audio_seconds = audio_seconds()
        self.audio_seconds.set_default_tags({"stage": "asr"})
        self.batch_size = Histogram(
            "speechgraph_asr_batch_size",
            description="Windows per Whisper generate call.",
            boundaries=BATCH_BUCKETS,
        )
        self.model_load_seconds = model_load_seconds("asr")

    def record_batch(self, window_seconds: Sequence[float]) -> None:
        self.batch_size.observe(len(window_seconds))
        if sum(window_seconds) > 0:
            self.audio_seconds.inc(sum(window_seconds))


class DiarizationMetrics:
    def __init__(self):
        self.audio_seconds = audio_seconds()
        self.audio_seconds.set_default_tags({"stage": "diarization"})
        self.speakers = Histogram(
            "speechgraph_speakers_per_file",
            description="Speakers found in each diarized file.",
            boundaries=SPEAKER_BUCKETS,
        )
        self.model_load_seconds = model_load_seconds("diarization")

    def record_window(self, seconds: float) -> None:
        if seconds > 0:
            self.audio_seconds.inc(seconds)


class PostprocessMetrics:
    def __init__(self):
        self.llm_tokens = Counter(
            "speechgraph_llm_tokens",
            description="LLM tokens, by direction (input, output).",
            tag_keys=("direction",),
        )
        self.fallbacks = postprocess_fallbacks()
        self.model_load_seconds = model_load_seconds("postprocess")

    def record_result(self, result: PostprocessResult) -> None:
        self.record_tokens(result.tokens_in, result.tokens_out)
        count_fallbacks(self.fallbacks, result)

    def record_tokens(self, tokens_in: int, tokens_out: int) -> None:
        for direction, tokens in (("input", tokens_in), ("output", tokens_out)):
            if tokens > 0:
                self.llm_tokens.inc(tokens, tags={"direction": direction})


class RealtimeMetrics:
    """Live sessions (``/v1/realtime``), as the ingress replica holding them sees them."""

    def __init__(self):
        self.sessions = HeldGauge(
            Gauge("speechgraph_realtime_sessions", description="Live transcription sessions open now.")
        )
        self.turns = Counter(
            "speechgraph_realtime_turns",
            description="Turns committed in live sessions, by outcome (completed or failed).",
            tag_keys=("outcome",),
        )
        self.partial_seconds = Histogram(
            "speechgraph_realtime_partial_seconds",
            description="Seconds from sending a turn-so-far to ASR to its partial result.",
            boundaries=SECONDS_BUCKETS,
        )
        self.final_seconds = Histogram(
            "speechgraph_realtime_final_seconds",
            description="Seconds from a turn's end (speech stopped or commit) to its completed transcript.",
            boundaries=SECONDS_BUCKETS,
        )
        self.audio_seconds = Counter(
            "speechgraph_realtime_audio_seconds", description="Seconds of audio streamed into live sessions."
        )
        self.closed = Counter(
            "speechgraph_realtime_closed",
            description="Live sessions ended, by reason (client, or the limit or error that closed it).",
            tag_keys=("reason",),
        )
