"""What the ingress and the preprocessing stage send each other: the upload, and its windows.

The upload is an :class:`Upload`, the file's bytes in object-store chunks that the driver wrote as
it read them from its spooled temporary file, so the driver never holds the whole file in its
heap; a preprocess replica reads it through :class:`UploadReader`, a seekable file over those
chunks mapped from the object store, so it never copies the file either. The stage answers with
small messages: an :class:`AudioProbe`, the speech a chunk holds (``ChunkSpeech``), and
:class:`AudioPart`s, windows with their samples.

The samples travel inside the answer, not as ``ObjectRef``s the replica put: Ray loses count of
refs nested in a streamed answer (ray-project/ray#58080), and Serve answers every call through a
streaming generator, so under load a window's owner freed it before ASR fetched it. The answer
itself is owned by the driver that asked; it lands in the object store, and the driver's copy of
the samples is a read-only view of it, which the driver passes on to ASR calls. The windows then
live as long as the request, whatever happens to the replica that cut them.

Apart from ``deployments.preprocess`` so that the ingress, which decodes nothing, imports neither
the decoder nor the VAD model to receive them.
"""

from __future__ import annotations

import bisect
import io
from dataclasses import dataclass

import numpy as np
import ray

from pipeline.errors import AudioError
from pipeline.settings import AudioSettings
from pipeline.speech_windows import ChunkSpeech
from pipeline.windows import Window


@dataclass(frozen=True)
class Rejected:
    """The upload is not usable audio. Returned rather than raised: a client's bad file is not a
    replica failure, and must not be logged as one."""

    error: AudioError


@dataclass(frozen=True)
class Busy:
    """The replica holds as much decoded audio as it may (``max_decoded_s_in_flight``)."""

    decoded_s_in_flight: float


@dataclass(frozen=True)
class Upload:
    """An uploaded file as ``ObjectRef``s of consecutive uint8 chunks, in order."""

    chunks: list[ray.ObjectRef]
    size: int

    def open(self) -> io.BufferedReader:
        """The file, readable and seekable, over the chunks as the object store maps them."""
        return io.BufferedReader(UploadReader([memoryview(chunk) for chunk in ray.get(self.chunks)]), 1 << 16)


class UploadReader(io.RawIOBase):
    """A read-only, seekable file over consecutive buffers: what PyAV reads the upload from."""

    def __init__(self, parts: list[memoryview]):
        self._parts = parts
        self._starts = []
        offset = 0
        for part in parts:
            self._starts.append(offset)
            offset += len(part)
        self._size = offset
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def,override]
        out = memoryview(buffer).cast("B")
        written = 0
        while written < len(out) and self._pos < self._size:
            i = self._part_at(self._pos)
            part, within = self._parts[i], self._pos - self._starts[i]
            n = min(len(out) - written, len(part) - within)
            out[written : written + n] = part[within : within + n]
            written += n
            self._pos += n
        return written

    def _part_at(self, position: int) -> int:
        return bisect.bisect_right(self._starts, position) - 1


@dataclass(frozen=True)
class AudioProbe:
    """What the container says before anything is decoded."""

    duration_s: float | None
    """As declared; None when the container does not say."""
    seekable: bool
    """Seeking lands on the exact sample (wav, flac): chunks can be decoded apart."""
    channels: int = 1
    """The audio stream's channel count (the windows are their mix)."""

    def chunked(self, settings: AudioSettings) -> bool:
        """Whether the file is cut into chunks across replicas: VAD on, seekable, and longer than
        ``chunked_above_s``; otherwise one replica plans it front to back."""
        duration = self.duration_s
        return settings.vad and self.seekable and duration is not None and duration > settings.chunked_above_s


@dataclass(frozen=True)
class ScannedChunk:
    """One chunk's speech, and the replica that scanned it."""

    speech: ChunkSpeech
    replica_id: str | None = None


@dataclass(frozen=True)
class AudioPart:
    """Some of a file's windows, in order, with their float32 samples."""

    windows: list[Window]
    samples: list[np.ndarray]
    planned_to_s: float
    """How far into the audio the windows are now planned (the audio's length on the last part)."""
    replica_id: str | None = None
    node_id: str | None = None
    """The node of the preprocess replica that cut the windows."""
    last: bool = False
    """No windows come after these."""
