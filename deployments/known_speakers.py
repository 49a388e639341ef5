"""OpenAI's known speakers: ``known_speaker_names[]`` with ``known_speaker_references[]``, the
names a diarized transcript gives the voices it finds.

A reference is a data URL (``data:audio/wav;base64,...``) of 2 to 10 s of one person speaking,
as OpenAI takes it. The ingress only unpacks the URLs and checks that names and references pair
up; the diarization stage decodes each clip and takes its voice print (``voice_print``). That
happens before the transcription starts, so a bad reference is refused with a 400 before any work
is done, and the voice prints then name the speakers found (``pipeline.diarization.name_speakers``).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from pipeline.errors import InvalidParameter

#: OpenAI's limit on known speakers per request.
MAX_KNOWN_SPEAKERS = 4
#: Shortest and longest reference clip, in seconds, as OpenAI documents them.
REFERENCE_S = (2.0, 10.0)
#: Largest reference accepted, decoded from base64: 10 s of 48 kHz stereo 32-bit PCM fits.
MAX_REFERENCE_BYTES = 4 * 2**20

NAMES, REFERENCES = "known_speaker_names", "known_speaker_references"


@dataclass(frozen=True)
class BadReference:
    """A reference the diarization stage could not take a voice print of, and why (returned, not
    raised, as the preprocessing stage returns a bad upload: it is the client's, not a fault)."""

    reason: str


def diarizes(model: str, diarizing_models: list[str], response_format: str, known: dict[str, bytes]) -> bool:
    """Whether an OpenAI transcription request is diarized: its ``model`` is a diarizing one.
    ``diarized_json`` and known speakers need one, as in OpenAI's API (400 otherwise)."""
    diarize = model in diarizing_models
    if response_format == "diarized_json" and not diarize:
        names = ", ".join(diarizing_models) or "none configured"
        raise InvalidParameter(
            f"response_format=diarized_json needs a diarizing model ({names}), not {model!r}.",
            "response_format",
        )
    if known and not diarize:
        raise InvalidParameter(
            f"{NAMES}[] name the speakers a diarizing model finds; {model!r} is not one.", NAMES
        )
    return diarize


def known_speaker_audio(names: list[str] | None, references: list[str] | None) -> dict[str, bytes]:
    """Each known speaker's reference audio by name, in the order given; refuses (400) names and
    references that do not pair up, repeated or empty names, and URLs that are not base64 data."""
    names, references = names or [], references or []
    if len(names) != len(references):
        param = NAMES if len(names) > len(references) else REFERENCES
        raise InvalidParameter(
            f"{len(names)} {NAMES}[] were sent with {len(references)} {REFERENCES}[]: send one "
            "reference clip per name, in the same order.",
            param,
        )
    if len(names) > MAX_KNOWN_SPEAKERS:
        raise InvalidParameter(
            f"{len(names)} known speakers were sent; at most {MAX_KNOWN_SPEAKERS} are taken.", NAMES
        )
    clean = [name.strip() for name in names]
    if any(not name for name in clean) or len(set(clean)) != len(clean):
        raise InvalidParameter(f"{NAMES}[] must be distinct and not empty; got {names!r}.", NAMES)
    return {name: _data_url_bytes(url, name) for name, url in zip(clean, references, strict=True)}


def _data_url_bytes(url: str, name: str) -> bytes:
    head, comma, data = url.strip().partition(",")
    if not (comma and head.startswith("data:") and head.endswith(";base64")):
        raise InvalidParameter(
            f"The reference for {name!r} is not a base64 data URL. Send the clip as "
            "'data:audio/wav;base64,...' (any audio format).",
            REFERENCES,
        )
    if len(data) > MAX_REFERENCE_BYTES * 4 // 3 + 4:
        raise InvalidParameter(
            f"The reference for {name!r} is over {MAX_REFERENCE_BYTES // 2**20} MiB. Send "
            f"{REFERENCE_S[0]:g} to {REFERENCE_S[1]:g} s of the speaker.",
            REFERENCES,
        )
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidParameter(
            f"The reference for {name!r} is not valid base64 after 'data:...;base64,'.", REFERENCES
        ) from None
