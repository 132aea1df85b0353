"""The values of the core: a match to score (`Match`, one tagged input), how to score it (`Scoring`), and what comes
back (`Result`: per half its score curves, spots and spans, with the class map and the timings).

Nothing here runs a network or writes a file: `core.pipeline.Pipeline` turns a Match into a Result, and the
writers (`soccer_highlights.writers`) turn a Result into files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from soccer_highlights.highlights.decoder import DecoderConfig, Span
from soccer_highlights.spotting.spots import Spot

if TYPE_CHECKING:
    from soccer_highlights.common.modelspec import ModelSpec
    from soccer_highlights.dataset import ClassMap
    from soccer_highlights.extract_features import ExtractConfig

MatchKind = Literal["video", "features", "game", "recording"]
PathLike = str | os.PathLike[str]


def _path(value: PathLike | None) -> Path | None:
    return None if value is None else Path(value)


@dataclass(frozen=True)
class Match:
    """One input, tagged by its kind:

    - `video`: a match video; its features are extracted from it.
    - `features`: a pair of feature files (`[T, 512]` video and audio tokens); `video`, when given, is the video they
      were extracted from (for the reel and the report's player).
    - `game`: a SoccerNet game folder: both halves' feature files, and its labels when it has them.
    - `recording`: a live stream's recording (an HLS playlist), scored as it was recorded.

    `labels`: a SoccerNet game folder whose labels of `half` are the ground truth shown beside the spots.
    Build one with `Match.video(...)`, `Match.features(...)`, `Match.game(...)` or `Match.recording(...)`; the
    video file, when there is one, is `video_file`."""

    kind: MatchKind
    video_file: Path | None = None
    features_video: Path | None = None
    features_audio: Path | None = None
    game_dir: Path | None = None
    labels: Path | None = None
    half: int = 1

    @classmethod
    def video(cls, path: PathLike, *, labels: PathLike | None = None, half: int = 1) -> Match:
        return cls("video", video_file=Path(path), labels=_path(labels), half=half)

    @classmethod
    def features(
        cls,
        video_features: PathLike,
        audio_features: PathLike,
        *,
        video: PathLike | None = None,
        labels: PathLike | None = None,
        half: int = 1,
    ) -> Match:
        return cls(
            "features",
            video_file=_path(video),
            features_video=Path(video_features),
            features_audio=Path(audio_features),
            labels=_path(labels),
            half=half,
        )

    @classmethod
    def game(cls, folder: PathLike) -> Match:
        return cls("game", game_dir=Path(folder))  # its own labels are the ground truth, when it has them

    @classmethod
    def recording(cls, playlist: PathLike, *, half: int = 1) -> Match:
        return cls("recording", video_file=Path(playlist), half=half)

    @property
    def source(self) -> Path:
        """The file or folder that names this match (its report's title)."""
        found = self.game_dir or self.video_file or self.features_video
        assert found is not None  # every constructor sets one
        return found

    def inputs(self) -> list[Path]:
        """The files this match reads: none may be one of its outputs."""
        return [p for p in (self.video_file, self.features_video, self.features_audio) if p]

    def paths(self) -> dict[str, str]:
        """The match's inputs that were given, by name (spans.json and report.html record them)."""
        named = {
            "video": self.video_file,
            "features_video": self.features_video,
            "features_audio": self.features_audio,
            "game_dir": self.game_dir,
        }
        return {k: str(v) for k, v in named.items() if v is not None}


@dataclass(frozen=True)
class Scoring:
    """How a match is scored and decoded: the windows slid over each half (`stride` tokens apart, `windows_per_call`
    per model call, at `compute_dtype`), V&D's NMS for spots, and the seed's decoder for spans."""

    stride: int = 2
    windows_per_call: int = 256
    compute_dtype: str | None = None
    score_placement: str = "centre"  # centre (each window's scores at its centre) or first (V&D's first token)
    nms_window_sec: float = 60.0
    nms_threshold: float = 0.0
    nms_rule: str = "vd"
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    class_map: str | None = None  # an override that must agree with the model's own map

    def record(self) -> dict[str, float]:
        return {"stride": self.stride, "nms_window_sec": self.nms_window_sec, "nms_threshold": self.nms_threshold}


@dataclass
class Half:
    """One stream of tokens scored: a half of a game, or a whole video. `probs` is the score curve of every class
    ([tokens, classes], `tokens_per_second` rows a second); `events` the ground truth (seconds, class name)."""

    number: int
    video: np.ndarray
    audio: np.ndarray
    events: list[tuple[float, str]] = field(default_factory=list)
    duration: float = 0.0
    probs: np.ndarray | None = None
    spans: list[Span] = field(default_factory=list)
    spots: list[Spot] = field(default_factory=list)


@dataclass
class Result:
    """What the core returns for one match: per half its score curves, spots (V&D's NMS) and spans (the seed's
    decoder); the model's spec and class map; how it was scored; seconds per stage."""

    match: Match
    model: Path
    spec: ModelSpec
    halves: list[Half]
    scoring: Scoring
    timings: dict[str, float] = field(default_factory=dict)
    random_weights: bool = False
    cmap: ClassMap | None = None  # the model's, or None when its classes have no SoccerNet labels
    extraction: ExtractConfig | None = None  # how the features were extracted, when they were

    @property
    def class_names(self) -> list[str]:
        """The model's classes, background first: the columns of every score curve."""
        return list(self.spec.class_names)

    def curves(self, half: int = 1) -> np.ndarray:
        """The score curve of every class in half `half`: [tokens, classes]."""
        for h in self.halves:
            if h.number == half:
                assert h.probs is not None  # every half of a Result is scored
                return h.probs
        raise KeyError(f"no half {half} in this result (halves: {[h.number for h in self.halves]})")

    def spans(self) -> list[tuple[int, Span]]:
        """(half, span) of every highlight span, in time order."""
        return [(h.number, s) for h in self.halves for s in h.spans]

    def spots(self) -> list[Spot]:
        """Every spot (class, time, confidence) of every half."""
        return [s for h in self.halves for s in h.spots]

    def covered(self) -> tuple[int, int]:
        """(true events inside some span of their half, true events)."""
        hits = sum(any(s.start <= t <= s.end for s in h.spans) for h in self.halves for t, _ in h.events)
        return hits, sum(len(h.events) for h in self.halves)
