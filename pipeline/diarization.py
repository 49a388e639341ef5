"""Who spoke when: a file's speaker embeddings clustered into speakers, then into speaker turns.

Why two steps, both on the shared fixtures' evidence. The *count* (when not given) comes from
agglomerative clustering (SciPy; cosine distance, average linkage) cut at a distance threshold,
counting only groups with enough speech to be a voice: GE2E embeddings of one voice stay within a
fixed cosine distance of each other whatever the number of speakers, while the stray groups of a
window or two (a laugh, a word across a change) would otherwise each count as a speaker. The
*split* into that many speakers is spectral clustering (scikit-learn) of the refined similarity
graph of Wang et al. (2018): with the count known, it beat agglomerative clustering (which cuts
off an outlier instead of a voice: 44% DER on the shared sample against 5%), k-means and Ward's
method, and an eigengap estimate of the count was unstable on files of 20-40 s (neighbouring
windows overlap, so the nearest-neighbour graph breaks along time, not voices). A voice with less
than :attr:`DiarizationOptions.min_speaker_windows` of speech, or on a long file less than
:attr:`DiarizationOptions.min_speaker_share` of it, is found only when the count is given
(``num_speakers`` or ``min_speakers``).

Why turns are voted frame by frame: an embedding window is 1.6 s long and overlaps its
neighbours, so a speaker change falls inside several windows. Each 50 ms frame takes the speaker
whose voice print (the cluster's mean) the windows over it resemble most, which puts a change
where the windows' votes cross instead of at a window edge. Short flickers are then smoothed out
with a majority filter, turns too short to be a turn of their own join their neighbour, and the
turns never reach beyond the windows, which cover only speech.

Known speakers (``name_speakers``) are matched to clusters one to one with the Hungarian
algorithm on cosine similarity (SciPy), so two clusters never get the same name.
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from pipeline.errors import InvalidParameter
from pipeline.schemas import SpeakerTurn


@dataclass(frozen=True)
class SpeakerEmbedding:
    """One embedding window's voice print (``pipeline.speaker_encoder``): absolute times in
    seconds and a unit-norm vector (float32). Here, apart from the encoder, so that the ingress,
    which passes them from the stage's replicas to its clustering, never imports torch."""

    start_s: float
    end_s: float
    vector: np.ndarray


#: The most speakers a request may ask for.
MAX_SPEAKERS = 20


@dataclass(frozen=True)
class SpeakerCount:
    """How many speakers to find: exactly ``num_speakers``, or between ``min_speakers`` and
    ``max_speakers`` (either may be left out), or as many as the data shows."""

    num_speakers: int | None = None
    min_speakers: int | None = None
    max_speakers: int | None = None

    def __post_init__(self) -> None:
        for name in ("num_speakers", "min_speakers", "max_speakers"):
            value = getattr(self, name)
            if value is not None and not 1 <= value <= MAX_SPEAKERS:
                raise InvalidParameter(f"{name} must be between 1 and {MAX_SPEAKERS}, got {value}.", name)
        low, high = self.min_speakers, self.max_speakers
        if low is not None and high is not None and low > high:
            raise InvalidParameter(
                f"min_speakers ({low}) must not be more than max_speakers ({high}).", "min_speakers"
            )
        n = self.num_speakers
        if n is not None and ((low is not None and n < low) or (high is not None and n > high)):
            raise InvalidParameter(
                f"num_speakers ({n}) is outside min_speakers..max_speakers ({low}..{high}).", "num_speakers"
            )

    def clamp(self, found: int, most: int) -> int:
        """The count to use when the data shows ``found`` and there are ``most`` embeddings."""
        if self.num_speakers is not None:
            return min(self.num_speakers, most)
        low, high = self.min_speakers or 1, self.max_speakers or MAX_SPEAKERS
        return min(max(found, low), high, most)


@dataclass(frozen=True)
class DiarizationOptions:
    """How embeddings become speakers, and speakers turns (tuned on the shared fixtures)."""

    threshold: float = 0.3
    """Cosine distance (average linkage) beyond which two groups of embeddings are different
    speakers, when the count is found from the data."""
    min_speaker_windows: int = 8
    """Fewest embeddings a speaker found from the data needs (3.2 s of speech at the 0.4 s hop)."""
    min_speaker_share: float = 0.02
    """Least share of a file's embeddings a speaker found from the data needs, when that is more
    than ``min_speaker_windows`` (files of over about 3 minutes of speech). The windows that are
    not quite one voice (a changeover, a laugh, a bad line) add up over a long file into groups
    big enough to pass for speakers: a 4-person conversation gave 6 speakers at 15 minutes and 7
    at 60 (DER 15% and 42%) with the fixed minimum, 5 and 5 (12% and 14%) with 2%. A speaker heard
    for less than about a minute of an hour is then found only when the count is given."""
    frame_s: float = 0.05
    """Resolution of turn boundaries."""
    smooth_s: float = 0.5
    """Width of the majority filter over frame labels."""
    min_turn_s: float = 0.3
    """A turn shorter than this joins the turn next to it (when it has one)."""
    merge_gap_s: float = 0.3
    """Two turns of one speaker with a pause shorter than this are one turn."""
    max_clustered: int = 2000
    """Most embeddings clustered at once (about 13 minutes of speech): a longer file's are
    clustered on an even subsample in time order, and every embedding then votes by its likeness
    to the voices found. Spectral clustering's memory grows with the square of the count and its
    time with the cube: an hour's 9,000 took minutes and 2 GB before this cap."""


@dataclass(frozen=True)
class Diarization:
    """A file's speaker turns in order, and each speaker's voice print (unit-norm mean embedding)."""

    turns: list[SpeakerTurn]
    voices: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def speakers(self) -> list[str]:
        """Labels in order of first appearance."""
        return list(dict.fromkeys(turn.speaker for turn in self.turns))


def speaker_label(index: int) -> str:
    """``A``, ``B``, … ``Z``, ``AA``, ``AB``, …"""
    letters = string.ascii_uppercase
    label = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        label = letters[rest] + label
    return label


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.maximum(np.linalg.norm(rows, axis=-1, keepdims=True), 1e-12)


def _affinity(vectors: np.ndarray) -> np.ndarray:
    """The refined similarity graph of Wang et al., "Speaker diarization with LSTM" (2018): each
    window's self-similarity replaced by its best neighbour's, blurred along time (neighbouring
    windows are mostly one speaker), each row's weaker half damped, symmetrised, and diffused
    (squared) so that windows with the same neighbours end up alike."""
    from scipy.ndimage import gaussian_filter

    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, 0.0)
    np.fill_diagonal(similarity, similarity.max(axis=1))
    blurred = gaussian_filter(similarity, sigma=1.0)
    strong = blurred >= np.median(blurred, axis=1, keepdims=True)
    pruned = np.where(strong, blurred, 0.01 * blurred)
    pruned = np.maximum(pruned, pruned.T)
    diffused = pruned @ pruned.T
    diffused /= diffused.max(axis=1, keepdims=True)
    return (diffused + diffused.T) / 2


def count_speakers(vectors: np.ndarray, threshold: float, min_windows: int) -> int:
    """Speakers in the data: groups of embeddings further apart than ``threshold`` (cosine
    distance, average linkage), counting only groups of at least ``min_windows`` embeddings; the
    small ones are a window's worth of noise, laughter or a word across a change, not a voice."""
    from scipy.cluster.hierarchy import fcluster, linkage

    if len(vectors) < 2:
        return len(vectors)
    groups = fcluster(linkage(vectors, method="average", metric="cosine"), threshold, criterion="distance")
    return max(1, int((np.bincount(groups) >= min_windows).sum()))


def cluster_embeddings(
    vectors: np.ndarray, count: SpeakerCount, threshold: float = 0.3, min_windows: int = 8
) -> np.ndarray:
    """A speaker index per embedding (unit-norm rows of ``vectors``, in time order), numbered in
    order of first appearance: the count from ``count`` or else :func:`count_speakers`, then the
    embeddings split into that many speakers by spectral clustering of :func:`_affinity`."""
    n = len(vectors)
    speakers = count.clamp(count_speakers(vectors, threshold, min_windows), n) if n else 0
    if speakers <= 1:
        return np.zeros(n, np.int64)
    from sklearn.cluster import SpectralClustering

    model = SpectralClustering(n_clusters=speakers, affinity="precomputed", random_state=0)
    labels = np.asarray(model.fit_predict(_affinity(vectors)))
    order = {old: new for new, old in enumerate(dict.fromkeys(labels.tolist()))}
    return np.array([order[label] for label in labels.tolist()], np.int64)


def _majority(labels: np.ndarray, width: int, speakers: int) -> np.ndarray:
    """Each frame's most frequent label among the ``width`` frames around it (-1 is no speech and
    stays so)."""
    if width <= 1:
        return labels
    votes = np.zeros((speakers, labels.size + 1))
    for k in range(speakers):
        votes[k, 1:] = np.cumsum(labels == k)
    half = width // 2
    idx = np.arange(labels.size)
    lo, hi = np.clip(idx - half, 0, labels.size), np.clip(idx + half + 1, 0, labels.size)
    counts = votes[:, hi] - votes[:, lo]
    smoothed = counts.argmax(axis=0)
    return np.where(labels < 0, -1, smoothed)


def _runs(labels: np.ndarray) -> list[list[int]]:
    """[label, first frame, end frame] for each run of equal labels, -1 runs left out."""
    runs: list[list[int]] = []
    for i, label in enumerate(labels.tolist()):
        if runs and runs[-1][0] == label and runs[-1][2] == i:
            runs[-1][2] = i + 1
        else:
            runs.append([label, i, i + 1])
    return [run for run in runs if run[0] >= 0]


def _absorb_short(runs: list[list[int]], min_frames: int) -> list[list[int]]:
    """Give each run shorter than ``min_frames`` to a neighbour it touches (the longer one),
    shortest first, then join touching runs of one label."""
    runs = [list(run) for run in runs]
    while True:
        short = [
            i
            for i, run in enumerate(runs)
            if run[2] - run[1] < min_frames
            and ((i > 0 and runs[i - 1][2] == run[1]) or (i + 1 < len(runs) and runs[i + 1][1] == run[2]))
        ]
        if not short:
            break
        i = min(short, key=lambda j: runs[j][2] - runs[j][1])
        before = runs[i - 1] if i > 0 and runs[i - 1][2] == runs[i][1] else None
        after = runs[i + 1] if i + 1 < len(runs) and runs[i + 1][1] == runs[i][2] else None
        longest = max((r for r in (before, after) if r), key=lambda r: r[2] - r[1])
        runs[i][0] = longest[0]
        joined: list[list[int]] = []
        for run in runs:
            if joined and joined[-1][0] == run[0] and joined[-1][2] == run[1]:
                joined[-1][2] = run[2]
            else:
                joined.append(run)
        runs = joined
    return runs


def diarize(
    embeddings: Sequence[SpeakerEmbedding],
    count: SpeakerCount | None = None,
    options: DiarizationOptions | None = None,
) -> Diarization:
    """Speaker turns from a whole file's embeddings (any order; each window's times absolute)."""
    count, options = count or SpeakerCount(), options or DiarizationOptions()
    embeddings = sorted(embeddings, key=lambda e: (e.start_s, e.end_s))
    if not embeddings:
        return Diarization([])
    vectors = _unit(np.stack([e.vector for e in embeddings]).astype(np.float64))
    step = -(-len(vectors) // options.max_clustered)  # 1 up to the cap
    clustered = vectors[::step]
    fewest = max(options.min_speaker_windows, int(np.ceil(options.min_speaker_share * len(vectors))))
    min_windows = max(1, -(-fewest // step))
    labels = cluster_embeddings(clustered, count, options.threshold, min_windows)
    speakers = int(labels.max()) + 1
    voices = _unit(np.stack([clustered[labels == k].mean(axis=0) for k in range(speakers)]))

    frame = options.frame_s
    origin = embeddings[0].start_s
    frames = int(np.ceil((max(e.end_s for e in embeddings) - origin) / frame))
    scores = np.zeros((speakers, frames))
    covered = np.zeros(frames)
    similarity = vectors @ voices.T
    for e, sims in zip(embeddings, similarity, strict=True):
        a = int(np.floor((e.start_s - origin) / frame + 1e-6))
        b = max(a + 1, int(np.ceil((e.end_s - origin) / frame - 1e-6)))
        scores[:, a:b] += sims[:, None]
        covered[a:b] += 1
    frame_labels = np.where(covered > 0, scores.argmax(axis=0), -1)
    frame_labels = _majority(frame_labels, round(options.smooth_s / frame) | 1, speakers)
    runs = _absorb_short(_runs(frame_labels), round(options.min_turn_s / frame))
    merged: list[list[int]] = []
    gap = round(options.merge_gap_s / frame)
    for run in runs:
        if merged and merged[-1][0] == run[0] and run[1] - merged[-1][2] < gap:
            merged[-1][2] = run[2]
        else:
            merged.append(run)

    order = {old: new for new, old in enumerate(dict.fromkeys(run[0] for run in merged))}
    turns = [
        SpeakerTurn(
            start=round(origin + a * frame, 3),
            end=round(origin + b * frame, 3),
            speaker=speaker_label(order[k]),
        )
        for k, a, b in merged
    ]
    return Diarization(turns, {speaker_label(new): voices[old] for old, new in order.items()})


def name_speakers(
    diarization: Diarization, references: Mapping[str, np.ndarray], min_similarity: float = 0.0
) -> Diarization:
    """The same turns with speakers renamed after the known speakers their voices match (one
    name per speaker, the pairs that are most alike overall, each at least ``min_similarity``);
    speakers left unmatched keep their letters."""
    labels = list(diarization.voices)
    names = list(references)
    if not labels or not names:
        return diarization
    from scipy.optimize import linear_sum_assignment

    voices = _unit(np.stack([diarization.voices[label] for label in labels]).astype(np.float64))
    known = _unit(np.stack([np.asarray(references[name], np.float64) for name in names]))
    similarity = voices @ known.T
    rows, cols = linear_sum_assignment(similarity, maximize=True)
    rename = {
        labels[r]: names[c] for r, c in zip(rows, cols, strict=True) if similarity[r, c] >= min_similarity
    }
    turns = [
        turn.model_copy(update={"speaker": rename.get(turn.speaker, turn.speaker)})
        for turn in diarization.turns
    ]
    return Diarization(
        turns, {rename.get(label, label): voice for label, voice in diarization.voices.items()}
    )
