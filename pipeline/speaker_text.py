"""A diarized transcript as the LLM sees it: one ``speaker: text`` line per turn, cut into chunks.

Kept apart from :mod:`pipeline.postprocess` so that module stays readable: it calls the LLM; this
one holds how speaker turns are put to the LLM and read back (the prompts, the lines, the chunks,
the answer's lines matched to those sent and made into turns again, the speaker points checked).
The word check is :mod:`pipeline.postprocess`'s, passed in since that module imports this one.

A punctuated line is taken only when it comes back with its speaker label and its words
unchanged. The answer's lines are matched to those sent by position, so none of a chunk is taken
when its lines do not come back in the same number. A line not taken keeps its raw text in its
turn while the others are punctuated, and the result says which turns.

Chunks are cut at turn boundaries. A turn too long for a chunk of its own is cut at spaces into
pieces that each keep the speaker. A chunk after the first starts with one context line: the
last ``chunk_overlap_words`` words of the line before it, with that line's speaker. The LLM
punctuates it with the rest, and it is then dropped (unchecked, as nothing of it is kept; a word
the LLM moves from it into the next line fails that line's check). Only the words just before a
chunk are given as context, not whole earlier turns: the end of the line before is what
punctuating the chunk's first line depends on, and a whole turn can be as long as a chunk.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass

from pipeline.llm_results import PunctuationResult, SpeakerPoint, SpeakerText
from pipeline.schemas import Segment

WordCheck = Callable[[str, str], str | None]
"""``(original, candidate)`` -> ``None`` when both have the same words, else the first difference."""

_TURNS = "Each line of the transcript is one turn: the speaker's label, a colon, and what they said."
PUNCTUATE_TURNS_PROMPT = (
    "You restore punctuation and capitalization in speech transcripts of several speakers. "
    f"{_TURNS} Return every line, in the same order, with its speaker label unchanged and "
    "punctuation and capital letters added to what was said. Do not add, remove, merge or split "
    "lines, do not change a label, and do not add, remove, reorder or change any word. Answer "
    "with the corrected lines only."
)
_SHAPE = (
    '{"abstract": "<two or three sentences>", "bullets": ["<main point>", "..."], "speaker_points": '
    '[{"speaker": "<label>", "point": "<what that speaker said or proposed>"}, '
    '{"speaker": "<label>", "point": "<another point>"}]}'
)
SPEAKER_SUMMARY_PROMPT = (
    f"You summarize speech transcripts of several speakers. {_TURNS} Answer with one JSON object "
    f"and nothing else, of the form {_SHAPE}. In speaker_points, say who said or proposed what, "
    "writing each speaker's label exactly as in the transcript."
)
SPEAKER_REDUCE_PROMPT = (
    "You combine the summaries of consecutive parts of one conversation into one summary of the "
    'whole. Each part gives its main points and, under "Speaker points", what each speaker, by '
    f"label, said or proposed. Answer with one JSON object and nothing else, of the form {_SHAPE}. "
    "Keep the speaker labels exactly as written."
)


def speaker_texts(segments: Iterable[Segment]) -> list[SpeakerText] | None:
    """The transcript as speaker turns: each segment's text under its speaker, with consecutive
    segments of one speaker merged. ``None`` when no segment has a speaker (not diarized). A
    segment without one joins the turn before it (the first speaker's, at the start), so that
    the turns hold every word of the transcript."""
    segments = list(segments)
    first = next((s.speaker for s in segments if s.speaker), None)
    if first is None:
        return None
    speakers: list[str] = []
    texts: list[list[str]] = []
    for segment in segments:
        if not segment.text.strip():  # no turn of its own, nor a break in one speaker's turn
            continue
        speaker = segment.speaker or (speakers[-1] if speakers else first)
        if not speakers or speakers[-1] != speaker:
            speakers.append(speaker)
            texts.append([])
        texts[-1].append(segment.text)
    return [
        SpeakerText(speaker=s, text=" ".join("".join(t).split()))
        for s, t in zip(speakers, texts, strict=True)
    ]


@dataclass(frozen=True)
class Line:
    """A line sent to the LLM: a turn, or a piece of one, under its speaker's label."""

    turn: int
    """Index of the turn it belongs to."""
    speaker: str
    text: str
    """The words, on one line."""

    def render(self) -> str:
        return f"{self.speaker}: {self.text}"


def turn_lines(turns: Sequence[SpeakerText]) -> list[Line]:
    """One line per turn that has text, its whitespace (newlines included) made single spaces."""
    lines = [Line(i, t.speaker, " ".join(t.text.split())) for i, t in enumerate(turns)]
    return [line for line in lines if line.text]


def render_turns(turns: Sequence[SpeakerText]) -> str:
    """The turns as ``speaker: text`` lines joined with newlines."""
    return "\n".join(f"{t.speaker}: {t.text}" for t in turns)


@dataclass(frozen=True)
class SpeakerChunk:
    """Consecutive lines for one LLM call, and the line before them given as context."""

    lines: tuple[Line, ...]
    context: Line | None = None

    @property
    def body(self) -> str:
        return "\n".join(line.render() for line in self.lines)

    @property
    def text(self) -> str:
        return f"{self.context.render()}\n{self.body}" if self.context else self.body

    @property
    def sent(self) -> list[Line]:
        """Every line the LLM sees, the context line first."""
        return [self.context, *self.lines] if self.context else list(self.lines)


def speaker_chunks(
    lines: Sequence[Line], count_tokens: Callable[[str], int], limit: int, overlap: int
) -> list[SpeakerChunk]:
    """``lines`` cut at line boundaries into chunks whose text (context included) fits ``limit``
    tokens; a line that does not fit a chunk alone is cut at spaces. A chunk's size is the sum of
    its lines' token counts plus one per line break, so each line is counted once."""
    if count_tokens("\n".join(line.render() for line in lines)) <= limit:
        return [SpeakerChunk(tuple(lines))]
    chunks: list[SpeakerChunk] = []
    pending = list(reversed(lines))
    body: list[Line] = []
    context: Line | None = None
    used = 0
    while pending:
        line = pending.pop()
        cost = count_tokens(line.render()) + 1
        if used + cost <= limit:
            body.append(line)
            used += cost
            continue
        if not body:  # too long alone: the chunk is the piece of it that fits
            line, rest = _split(line, limit - used - 1, count_tokens)
            body.append(line)
            if rest:
                pending.append(rest)
        else:
            pending.append(line)
        chunks.append(SpeakerChunk(tuple(body), context))
        context = _tail(body[-1], overlap)
        body = []
        used = count_tokens(context.render()) + 1 if context else 0
    if body:
        chunks.append(SpeakerChunk(tuple(body), context))
    return chunks


def _split(line: Line, budget: int, count_tokens: Callable[[str], int]) -> tuple[Line, Line | None]:
    """The longest head of ``line`` (one word at least) within ``budget`` tokens, and the rest."""
    words = line.text.split()
    n = max(1, int(budget * 0.9 * len(words) / count_tokens(line.render())))  # from the mean word size
    n = min(n, len(words))
    while n > 1 and count_tokens(Line(line.turn, line.speaker, " ".join(words[:n])).render()) > budget:
        n = max(1, n * 3 // 4)
    head = Line(line.turn, line.speaker, " ".join(words[:n]))
    rest = Line(line.turn, line.speaker, " ".join(words[n:])) if n < len(words) else None
    return head, rest


def _tail(line: Line, words: int) -> Line | None:
    """The last ``words`` words of ``line`` under its speaker, as context for the next chunk."""
    if words <= 0:
        return None
    return Line(line.turn, line.speaker, " ".join(line.text.split()[-words:]))


def checked_lines(chunk: SpeakerChunk, answer: str, check: WordCheck) -> list[tuple[Line, str, str | None]]:
    """Each line of ``chunk`` (the context line aside) with the text the LLM gave it and
    ``None``, or with its own text and why the LLM's was not taken."""
    back = [line.strip() for line in answer.splitlines() if line.strip()]
    sent = chunk.sent
    if len(back) != len(sent):
        turns = f"{chunk.lines[0].turn + 1}-{chunk.lines[-1].turn + 1}"
        why = f"turns {turns}: {len(back)} line(s) came back for {len(sent)}"
        return [(line, line.text, why) for line in chunk.lines]
    out: list[tuple[Line, str, str | None]] = []
    for line, answered in list(zip(sent, back, strict=True))[len(sent) - len(chunk.lines) :]:
        label = f"{line.speaker}:"  # compared whole, so a name that holds a colon is read right
        if not answered.startswith(label):
            found = f"came back as {answered.partition(':')[0]!r}" if ":" in answered else "missing"
            out.append((line, line.text, f"turn {line.turn + 1}: label {line.speaker!r} {found}"))
            continue
        text = answered[len(label) :].strip()
        difference = check(line.text, text)
        out.append(
            (line, line.text, f"turn {line.turn + 1}: {difference}") if difference else (line, text, None)
        )
    return out


def punctuated_turns(
    turns: Sequence[SpeakerText], chunks: Sequence[SpeakerChunk], answers: Sequence[str], check: WordCheck
) -> PunctuationResult:
    """The turns punctuated from the LLM's answer per chunk, where its lines passed the checks."""
    pieces: list[list[str]] = [[] for _ in turns]  # a turn longer than a chunk comes in pieces
    problems: dict[int, str] = {}  # turn index -> its first problem
    for chunk, answer in zip(chunks, answers, strict=True):
        for line, text, problem in checked_lines(chunk, answer, check):
            pieces[line.turn].append(text)
            if problem:
                problems.setdefault(line.turn, problem)
    sent = sum(1 for p in pieces if p)
    listed = "; ".join(list(dict.fromkeys(problems.values()))[:3])
    if len(problems) == sent:
        return PunctuationResult(
            applied=False,
            fallback="words_changed",
            reason=f"the LLM changed the words or speaker labels ({listed}); kept the raw text",
        )
    out = [SpeakerText(speaker=t.speaker, text=" ".join(p)) for t, p in zip(turns, pieces, strict=True)]
    if not problems:
        return PunctuationResult(applied=True, text=render_turns(out), turns=out)
    return PunctuationResult(
        applied=True,
        text=render_turns(out),
        turns=out,
        fallback="some_chunks_changed",
        reason=f"the LLM changed the words or speaker labels of {len(problems)} of {sent} turns "
        f"({listed}); those turns are raw",
    )


def speaker_points_problem(points: list[SpeakerPoint] | None, speakers: Collection[str] | None) -> str | None:
    """Why a summary's speaker points do not fit the transcript's speakers, if they do not: with
    speakers there must be points, each by one of them; without, none."""
    if speakers is None:
        return (
            "the LLM's JSON has speaker_points, but the transcript has no speakers"
            if points is not None
            else None
        )
    if points is None:
        return "the LLM's JSON has no speaker_points"
    unknown = list(dict.fromkeys(p.speaker for p in points if p.speaker not in speakers))
    if unknown:
        return (
            f"the LLM's speaker_points name {', '.join(map(repr, unknown))}, not a speaker of the "
            f"transcript ({', '.join(map(repr, speakers))})"
        )
    return None


def speaker_points_text(points: Sequence[SpeakerPoint]) -> str:
    """A summary's speaker points as the reduce prompt shows them."""
    return "Speaker points:\n" + "\n".join(f"- {p.speaker}: {p.point}" for p in points)
