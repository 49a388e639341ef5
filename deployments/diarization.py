"""Diarization stage: speaker embeddings of each window, and a file's speakers from all of them.

Two calls per file, so that the stage runs beside ASR rather than after it. ``embed`` takes one
window's samples, the same ones its ASR call takes, as soon as the window is planned: a long
file's windows fan out over the stage's replicas like ASR's do. Silero finds the speech inside the
window first, with a shorter pause than the transcription's (``min_pause_s``), so that neither
the pauses a window spans nor two people's turns around a short pause are taken for a voice.
``cluster`` runs once per file, on every window's embeddings (a few kilobytes per second of
speech), since speakers are only speakers across the whole file. A third, ``voice_print``, takes
a known speaker's reference clip (``deployments.known_speakers``), whose print then names the
speaker it matches. A fourth, ``channel_turns``, diarizes a recording with a channel per speaker
(``multichannel``) from the upload itself, since the windows are a mix of the channels: one call
per file, beside the whole transcription (``pipeline.channel_speakers``).

The voice prints come from the configured backend (``diarization.backend``): Resemblyzer's GE2E
encoder over the speech Silero finds, or pyannote's pipeline, which finds the speech itself
(``pipeline.pyannote_speakers``); the clustering is the same for both.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
from ray import serve

from deployments.audio_plan import Rejected, Upload
from deployments.known_speakers import REFERENCE_S, BadReference
from deployments.metrics import DiarizationMetrics
from deployments.stage import StageReplica
from pipeline import channel_speakers
from pipeline.audio import SAMPLE_RATE, decode_audio
from pipeline.devices import resolve_device
from pipeline.diarization import (
    Diarization,
    DiarizationOptions,
    SpeakerCount,
    SpeakerEmbedding,
    diarize,
    name_speakers,
)
from pipeline.errors import AudioError
from pipeline.pyannote_speakers import PyannoteSpeakers
from pipeline.schemas import ModelInfo
from pipeline.settings import AudioSettings, DiarizationSettings
from pipeline.speaker_encoder import SpeakerEncoder
from pipeline.vad import SpeechDetector
from pipeline.windows import Window


def load_voice_encoder(settings: DiarizationSettings, device: str) -> SpeakerEncoder | PyannoteSpeakers:
    """The configured voice prints' model, on ``device``."""
    if settings.backend == "pyannote":
        token = settings.pyannote_token.get_secret_value() if settings.pyannote_token else None
        return PyannoteSpeakers(settings.pyannote_model, token, device)
    return SpeakerEncoder(device)


@serve.deployment(name="diarization")
class DiarizationDeployment(StageReplica):
    def __init__(self, settings: DiarizationSettings, audio: AudioSettings):
        super().__init__("diarization")
        started = time.perf_counter()
        self.device = str(resolve_device(settings.device))
        self.encoder = load_voice_encoder(settings, self.device)
        self.detector = SpeechDetector(audio)
        self.max_duration_s = audio.max_duration_s
        self.vad = audio.vad_options().model_copy(update={"min_silence_s": settings.min_pause_s})
        self.load_s = time.perf_counter() - started
        self.metrics = DiarizationMetrics()
        self.metrics.model_load_seconds.set(self.load_s)
        self.options = DiarizationOptions(
            threshold=settings.count_threshold or self.encoder.count_threshold,
            min_speaker_windows=settings.min_speaker_windows,
            min_speaker_share=settings.min_speaker_share,
        )
        self.known_speaker_similarity = settings.known_speaker_similarity
        self.warm_up()

    def probe_model(self) -> None:
        """Two seconds of faint noise through the encoder: a window's path, but for the VAD."""
        noise = np.random.default_rng(0).normal(0, 0.003, 32000).astype(np.float32)
        self.encoder.embed_window(noise)

    async def embed(self, audio: np.ndarray, window: Window) -> list[SpeakerEmbedding]:
        """Voice prints of the speech in one window, timed from the start of its file."""
        embeddings = await asyncio.to_thread(self._embed, audio, window)
        self.metrics.record_window(window.duration_s)
        self.probe.answered()
        return embeddings

    def _embed(self, audio: np.ndarray, window: Window) -> list[SpeakerEmbedding]:
        if isinstance(self.encoder, PyannoteSpeakers):  # its pipeline finds the speech itself
            return self.encoder.embed_window(audio, window.start_s)
        rate = window.sample_rate
        speech = [
            (window.start_s + a / rate, window.start_s + b / rate)
            for a, b in self.detector.speech_spans(audio, self.vad)
        ]
        return self.encoder.embed_window(audio, window.start_s, speech)

    async def cluster(
        self,
        embeddings: list[SpeakerEmbedding],
        count: SpeakerCount,
        known: dict[str, np.ndarray] | None = None,
    ) -> Diarization:
        """The file's speaker turns and voice prints from all its windows' embeddings; speakers
        whose voice matches a ``known`` speaker's print take that name."""
        diarization = await asyncio.to_thread(diarize, embeddings, count, self.options)
        if known:
            diarization = name_speakers(diarization, known, self.known_speaker_similarity)
        self.metrics.speakers.observe(len(diarization.speakers))
        return diarization

    async def channel_turns(self, upload: Upload) -> Diarization | Rejected:
        """The turns of a recording with one speaker per channel; a file that is not one (mono,
        undecodable) is answered, not raised: it is the client's, not a replica failure."""
        try:
            turns = await asyncio.to_thread(
                channel_speakers.channel_turns,
                upload.open(),
                self.detector,
                self.vad,
                max_duration_s=self.max_duration_s,
            )
        except AudioError as exc:
            return Rejected(exc)
        diarization = Diarization(turns)
        self.metrics.speakers.observe(len(diarization.speakers))
        self.probe.answered()
        return diarization

    async def voice_print(self, name: str, data: bytes) -> np.ndarray | BadReference:
        """A known speaker's voice print from their reference clip (any audio format)."""
        return await asyncio.to_thread(self._voice_print, name, data)

    def _voice_print(self, name: str, data: bytes) -> np.ndarray | BadReference:
        shortest, longest = REFERENCE_S
        try:
            audio = decode_audio(data, max_duration_s=longest + 0.5)
        except AudioError as exc:
            return BadReference(f"The reference for {name!r} is not usable audio: {exc}")
        seconds = audio.size / SAMPLE_RATE
        if not shortest <= seconds <= longest + 0.5:
            return BadReference(
                f"The reference for {name!r} is {seconds:.1f} s long; send {shortest:g} to {longest:g} s "
                "of the speaker alone."
            )
        try:
            return self.encoder.embed_reference(audio)
        except ValueError as exc:  # pyannote heard no one in it
            return BadReference(f"The reference for {name!r} holds no speaker's voice: {exc}")

    def loaded_model_info(self) -> ModelInfo:
        if isinstance(self.encoder, PyannoteSpeakers):
            return self.encoder.info()
        return ModelInfo(
            stage="diarization",
            model="resemblyzer-ge2e",
            backend="torch",
            device=self.device,
            dtype="float32",
            load_s=self.load_s,
        )
