"""Typed errors that say what the caller did wrong and what to do about it.

Every error a request can cause is a :class:`SpeechgraphError` with a stable ``code`` and, where
one parameter is at fault, its ``param``. The core knows nothing of HTTP: the ingress maps each
``code`` to its status (``deployments.http_errors``). Errors keep their constructor's ``args`` so
they pickle across Ray processes unchanged. Apart from ``pipeline.audio`` so that a process
without the decoder (the ingress) can receive one.
"""

from __future__ import annotations


class SpeechgraphError(Exception):
    """Base class: a request that cannot be served as asked."""

    code: str = "invalid_request"
    param: str | None = None

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidParameter(SpeechgraphError):
    """A request parameter is missing or has a bad value; ``param`` names it."""

    code = "invalid_parameter"

    def __init__(self, message: str, param: str | None = None, code: str = "invalid_parameter"):
        super().__init__(message)
        self.args = (message, param, code)
        self.param = param
        self.code = code


class AudioError(SpeechgraphError):
    """The upload cannot be turned into audio."""

    param = "file"


class EmptyAudio(AudioError):
    code = "empty_file"


class NotAudio(AudioError):
    """Not an audio or video file (FFmpeg does not recognise it, or only guesses)."""

    code = "unsupported_media"


class NoAudioStream(AudioError):
    """A media file without an audio track."""

    code = "no_audio_stream"


class UndecodableAudio(AudioError):
    """An audio stream that does not decode (truncated or corrupt)."""

    code = "undecodable_audio"


class ChannelCountError(AudioError):
    """Diarization by channel (``multichannel``) of a file without a channel per speaker."""

    code = "wrong_channel_count"
    param = "multichannel"

    @classmethod
    def check(cls, channels: int, most: int) -> None:
        """Raise unless a file with ``channels`` channels can have a speaker on each (2..``most``)."""
        if channels < 2:
            raise cls(
                f"The file has {channels} audio channel; multichannel=true takes one channel per "
                "speaker (a stereo call recording). Leave multichannel out to tell speakers apart "
                "by voice."
            )
        if channels > most:
            raise cls(f"The file has {channels} audio channels; multichannel=true takes at most {most}.")


class AudioTooLong(AudioError):
    code = "audio_too_long"
