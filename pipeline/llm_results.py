"""What the LLM stage answers (pydantic): punctuation, a summary, translations; and the speaker
turns it is given. Apart from :mod:`pipeline.schemas` (the document and its parts), which holds
these as parts of the document, so that each module stays one read."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Schema(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)


class SpeakerText(_Schema):
    """One turn of a diarized transcript: what one speaker said until another spoke."""

    speaker: str = Field(min_length=1)
    """The speaker's label, as on the segments (``A``, ``B``, ... or a known speaker's name)."""
    text: str
    """What they said, as transcribed (the segments' text joined)."""


class SpeakerPoint(_Schema):
    """Something one speaker said or proposed, as the LLM's summary attributes it."""

    model_config = ConfigDict(extra="forbid")

    speaker: str = Field(min_length=1)
    """The speaker's label, one of the transcript's (checked)."""
    point: str = Field(min_length=1)
    """What they said or proposed, in a sentence."""


class Summary(_Schema):
    """What the LLM writes about the transcript."""

    model_config = ConfigDict(extra="forbid")

    abstract: str = Field(min_length=1)
    """A few sentences on what was said."""
    bullets: list[str] = Field(min_length=1)
    """The main points, one per item."""
    speaker_points: list[SpeakerPoint] | None = None
    """Who said or proposed what, by speaker label (only for a transcript with speakers, and then
    always present)."""


FallbackReason = Literal[
    "no_words",
    "transcript_too_long",
    "words_changed",
    "some_chunks_changed",
    "unusable_answer",
    "not_combined",
    "llm_unavailable",
]
"""Why punctuation or a summary that was asked for was not (wholly) delivered, as a fixed code."""


class PunctuationResult(_Schema):
    """Punctuated text, or why the raw text was kept."""

    applied: bool
    """True when ``text`` is the LLM's punctuated text with the words unchanged."""
    text: str | None = None
    """The punctuated text (``None`` when not applied); for a transcript with speakers, one
    ``speaker: text`` line per turn of ``turns``, joined with newlines."""
    turns: list[SpeakerText] | None = None
    """The punctuated text of each speaker turn, one per turn given and in that order (only for a
    transcript with speakers, when applied). A turn the LLM changed keeps its raw text, and
    ``reason`` says which."""
    reason: str | None = None
    """Why punctuation was not applied (not requested, words changed, too long, ...)."""
    fallback: FallbackReason | None = None
    """``reason`` as a fixed code, when punctuation was asked for and not (wholly) applied."""


class SummaryResult(_Schema):
    """A summary, or why there is none."""

    summary: Summary | None = None
    reason: str | None = None
    """Why there is no summary (not requested, not valid JSON, wrong shape, ...)."""
    fallback: FallbackReason | None = None
    """``reason`` as a fixed code, when a summary was asked for and there is none."""


class PostprocessResult(_Schema):
    punctuation: PunctuationResult
    summary: SummaryResult
    tokens_in: int = 0
    tokens_out: int = 0
    node_id: str | None = None
    """The cluster node of the LLM replica that answered (filled in by the service)."""

    @classmethod
    def not_requested(cls) -> PostprocessResult:
        """The result when the caller asked for neither punctuation nor a summary."""
        return cls(
            punctuation=PunctuationResult(applied=False, reason="not requested"),
            summary=SummaryResult(reason="not requested"),
        )

    @classmethod
    def llm_unavailable(cls, reason: str, *, punctuate: bool, summarize: bool) -> PostprocessResult:
        """The result when the LLM could not be reached: the raw transcript stands, and says why."""
        why = f"the LLM stage was unavailable ({reason}); the raw transcript is returned"
        not_asked = "not requested"
        return cls(
            punctuation=PunctuationResult(
                applied=False,
                reason=why if punctuate else not_asked,
                fallback="llm_unavailable" if punctuate else None,
            ),
            summary=SummaryResult(
                reason=why if summarize else not_asked, fallback="llm_unavailable" if summarize else None
            ),
        )


TranslationFallback = Literal["no_text", "no_line", "empty_line", "llm_unavailable"]
"""Why a segment kept its source text instead of a translation, as a fixed code."""


class TranslationSource(_Schema):
    """A segment sent to the LLM stage for translation: its id in the document and its text."""

    id: int
    text: str


class SegmentTranslation(_Schema):
    """One segment's translation as the LLM stage answers it."""

    id: int
    """The source segment's id in the document."""
    text: str
    """The translation; the source text when not translated."""
    translated: bool
    reason: str | None = None
    """Why the source text was kept (the LLM's answer had no line for it, or an empty one, ...)."""
    fallback: TranslationFallback | None = None
    """``reason`` as a fixed code."""


class TranslationBatch(_Schema):
    """What one translation call of the LLM stage answers: a translation per segment sent, in order."""

    segments: list[SegmentTranslation]
    tokens_in: int = 0
    tokens_out: int = 0


class TranslatedSegment(_Schema):
    """A segment in the language asked for, with its source segment's id, times and speaker."""

    id: int
    """The source segment's id in the document."""
    start: float
    end: float
    text: str
    """The translation; the source text when not translated (``translated`` false, with ``reason``)."""
    translated: bool
    speaker: str | None = None
    reason: str | None = None
    """Why the source text was kept."""
    fallback: TranslationFallback | None = None
    """``reason`` as a fixed code."""


class TranslationResult(_Schema):
    """The transcript in another language, segment by segment, with the source's timing."""

    language: str
    """The language translated into (a code, as ``language``)."""
    text: str
    """The translated segments' text joined."""
    segments: list[TranslatedSegment]
    """One per segment of the document, in its order; a segment that could not be translated is
    there with its source text, marked (never dropped)."""
    untranslated: int = 0
    """How many segments kept their source text."""
