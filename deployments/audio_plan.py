"""What the ingress and the preprocessing stage send each other: the upload and the audio's plan.

The upload is an :class:`Upload`, the file's bytes in object-store chunks that the driver wrote as
it read them from its spooled temporary file, so the driver never holds the whole file in its
heap. The stage answers with a small :class:`AudioPlan` of ``ObjectRef``s, so the driver routes
windows to ASR replicas without ever holding the samples itself. The windows are owned by the
replica that cut them (Ray 2.56 removed ``ray.put``'s ``_owner``), so they are lost if it dies
before ASR fetched them: the plan carries its upload, and the driver cuts it again.

Apart from ``deployments.preprocess`` so that the ingress, which decodes nothing, imports neither
the decoder nor the VAD model to receive them.
"""

from __future__ import annotations

from dataclasses import dataclass

import ray

from pipeline.errors import AudioError
from pipeline.windows import Window


@dataclass(frozen=True)
class Rejected:
    """The upload is not usable audio. Returned rather than raised: a client's bad file is not a
    replica failure, and must not be logged as one."""

    error: AudioError


@dataclass(frozen=True)
class Upload:
    """An uploaded file as ``ObjectRef``s of consecutive uint8 chunks, in order."""

    chunks: list[ray.ObjectRef]
    size: int

    def read(self) -> bytes:
        """The file's bytes, joined once (the chunks themselves are zero-copy views)."""
        return b"".join(memoryview(chunk) for chunk in ray.get(self.chunks))


@dataclass(frozen=True)
class AudioPlan:
    """Decoded audio as refs: one ``ObjectRef`` (float32 samples) per window."""

    duration_s: float
    sample_rate: int
    windows: list[Window]
    refs: list[ray.ObjectRef]
    upload: Upload
    """What the windows were cut from (the driver's own objects), to cut again if they are lost."""
    node_id: str | None = None
    """The node whose object store holds the windows (the preprocess replica's)."""
