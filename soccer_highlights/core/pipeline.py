"""One match through the core: features (extracted or read), scores, spots and spans, returned as values.

`Pipeline` loads the model once (and builds the feature networks on the first match that needs them) and scores
any number of matches: `pipeline(match) -> Result`, nothing written. The writers (`soccer_highlights.writers`) turn
a Result into files; the commands (`inference.py`, `ClassificationSecondBased.py`) and live mode stand on this.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from soccer_highlights import (
    archis,  # light: its names load on first use
    dataset,
)
from soccer_highlights.common.errors import UserError
from soccer_highlights.common.features import RecipeCheck, frame_rate_problem, read_record, recipe_of
from soccer_highlights.common.features import random_weights as made_randomly
from soccer_highlights.common.ffmpeg import probe
from soccer_highlights.common.inputs import check_length_gap, load_features
from soccer_highlights.common.quiet import import_tensorflow
from soccer_highlights.core.match import Half, Match, Result, Scoring
from soccer_highlights.extract_features import ExtractConfig
from soccer_highlights.extract_features.pipeline import Extractor
from soccer_highlights.highlights.decoder import decode, first_token_placement
from soccer_highlights.spotting.spots import Scorer, model_class_map, nms_spots, with_compute_dtype

if TYPE_CHECKING:
    from soccer_highlights.common.modelspec import ModelSpec
    from soccer_highlights.dataset import ClassMap

log = logging.getLogger("inference")


def check_match(match: Match) -> None:
    """The checks of one match that need no network (its output folder is the writers' to check:
    `writers.outputs.check_outputs`; extraction settings are checked when an ExtractConfig is made)."""
    if match.video_file and match.kind != "recording":
        video = match.video_file
        if video.is_dir():
            raise UserError(f"{video}: is a folder, expected a video file")
        if not video.is_file():
            raise UserError(f"{video}: no such file")
        _check_video(video)


def _check_video(video: Path) -> None:
    if video.is_file() and video.stat().st_size == 0:
        raise UserError(f"{video}: empty file (zero-length video)")
    info = probe(video)
    if not info.has_video:
        raise UserError(f"{video}: no video stream")
    if not info.has_audio:
        raise UserError(f"{video}: no audio stream (the model needs video and audio)")
    if info.duration <= 0:
        raise UserError(f"{video}: zero-length video")


class Pipeline:
    """A model and the feature networks, loaded once, scoring many matches: `pipeline(match) -> Result`.

    `scoring`: how matches are scored and decoded; `extraction`: how features are extracted from a video (the
    networks are built on the first match that needs them). The one load sequence of every command that scores
    matches (`inference.py`, `ClassificationSecondBased.py`, live mode)."""

    def __init__(
        self,
        model: str | os.PathLike[str],
        *,
        scoring: Scoring | None = None,
        extraction: ExtractConfig | None = None,
        progress: bool = False,
        verbose: bool = False,
    ):
        import_tensorflow(verbose)

        self.model = Path(model)
        self.scoring = scoring or Scoring()
        self.extraction = extraction  # None: ExtractConfig's defaults, when a video first needs them
        self.progress = progress
        t0 = time.perf_counter()
        loaded = archis.load_model(self.model, shared=True)  # one object per file in the process: scoring only
        self.spec: ModelSpec = archis.model_info(loaded)
        self.cmap: ClassMap | None = model_class_map(self.spec, self.scoring.class_map, str(self.model))
        self.scorer = Scorer(
            with_compute_dtype(loaded, self.scoring.compute_dtype), batch_size=self.scoring.windows_per_call
        )
        self.check_recipe = RecipeCheck(self.spec.feature_recipe, self.model.name)
        self.load_seconds = time.perf_counter() - t0
        self.scoring.decoder.check_classes(self.spec.class_names)
        self._extractor: Extractor | None = None
        self._scored = 0  # matches scored so far

    def check_record(self, record: dict | None, what: str) -> None:
        """Features at another token rate than the model's: error; made with another recipe: one warning per run."""
        problem = frame_rate_problem(record, self.spec.tokens_per_second)
        if problem:
            raise UserError(f"{what}: {problem}")
        self.check_recipe(recipe_of(record), what, record)

    def extractor(self) -> Extractor:
        """The feature extractor (built once, on first need)."""
        if self._extractor is None:
            self.extraction = self.extraction or ExtractConfig()
            self._extractor = Extractor(self.extraction)
        return self._extractor

    def __call__(self, match: Match) -> Result:
        """Score, spot and decode one match; nothing is written. The first match's timings include the model's load."""
        timings: dict[str, float] = {} if self._scored else {"load model": self.load_seconds}
        self._scored += 1
        t0 = time.perf_counter()
        halves, random_weights = self._load(match)
        timings["features"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        for h in halves:
            h.probs = self.scorer.score_half(
                h.video, h.audio, stride=self.scoring.stride, progress=self.progress, what=f"scoring half {h.number}"
            )
        timings["scores"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        decode_halves(self.scoring, self.spec, halves)
        timings["spans"] = time.perf_counter() - t0
        extracted = match.kind in ("video", "recording")  # features from the video itself
        return Result(
            match,
            self.model,
            self.spec,
            halves,
            self.scoring,
            timings,
            random_weights,
            cmap=self.cmap,
            extraction=self.extraction if extracted else None,
        )

    def _load(self, match: Match) -> tuple[list[Half], bool]:
        """The token streams to score (with ground truth when labels are known) and whether weights were random."""
        spec = self.spec
        if match.game_dir:
            return self._load_game(match.game_dir)
        if match.features_video and match.features_audio:
            video, audio = load_features(match.features_video), load_features(match.features_audio)
            for path, rows in ((match.features_video, video), (match.features_audio, audio)):
                _check_rows(path, rows)
            _check_lengths(match, video, audio, spec.tokens_per_second)
            files = (match.features_video, match.features_audio)
            records = [read_record(f.parent) for f in files]
            for record, f in zip(records, files, strict=True):
                self.check_record(record, str(f))
            random_weights = any(made_randomly(r) for r in records)
        else:
            assert match.video_file is not None  # a video or a recording
            extracted = self.extractor().run(match.video_file, progress=self.progress)
            video, audio = extracted.video, extracted.audio
            self.check_record(extracted.info, str(match.video_file))
            random_weights = made_randomly(extracted.info)
        if random_weights:
            warn_random()
        half = Half(match.half, video, audio)
        _check_width(half, spec, str(match.features_video or match.video_file))
        if match.video_file:
            covered = min(len(video), len(audio)) / spec.tokens_per_second
            half.duration = _check_duration(match.video_file, covered, extracted=match.features_video is None)
        return _with_truth([half], match.labels, self.cmap, spec.tokens_per_second), random_weights

    def _load_game(self, game_dir: Path) -> tuple[list[Half], bool]:
        spec = self.spec
        names = spec.feature_names
        record = read_record(game_dir)
        self.check_record(record, str(game_dir))
        halves = []
        for number in (1, 2):
            video, audio = dataset.load_half(
                game_dir,
                number,
                features_video=names["video"],
                features_audio=names["audio"],
                pca=None,
                feature_dim=spec.feature_dim,
                fps=spec.tokens_per_second,
            )
            for kind, rows in (("video", video), ("audio", audio)):
                _check_rows(game_dir / f"{number}_{names[kind]}.npy", rows)
            halves.append(Half(number, video, audio))
        _check_width(halves[0], spec, str(game_dir))
        return _with_truth(halves, game_dir, self.cmap, spec.tokens_per_second), made_randomly(record)


def _check_rows(path: Path, rows: np.ndarray) -> None:
    """A feature file with no rows (no token) is one line naming it (it reached the scorer, which could not)."""
    if len(rows) == 0:
        raise UserError(f"{path}: an empty feature file (shape {rows.shape}): nothing to score")


def _check_lengths(match: Match, video: np.ndarray, audio: np.ndarray, tokens_per_second: float) -> None:
    """Refuse video and audio features of different inputs (lengths apart by more than MAX_LENGTH_GAP_SEC)."""
    assert match.features_video and match.features_audio
    check_length_gap(match.features_video, len(video), match.features_audio, len(audio), tokens_per_second)
    if len(video) != len(audio):
        log.warning(
            "%s has %d rows, %s %d: scoring the first %d",
            match.features_video,
            len(video),
            match.features_audio,
            len(audio),
            min(len(video), len(audio)),
        )


def _check_duration(video: Path, covered_sec: float, extracted: bool = False) -> float:
    """The video's duration; a warning when the features cover a clearly different length. Features extracted
    from the video just now that fall short mean the file decodes shorter than its container says (truncated or
    damaged): then the decoded length is the duration (the reel and its subtitles never reach past it)."""

    duration = probe(video).duration
    if extracted and duration - covered_sec > max(5.0, 0.02 * duration):
        log.warning(
            "%s: its container says %.1f s but only %.1f s decode (a truncated or damaged file?): using %.1f s",
            video,
            duration,
            covered_sec,
            covered_sec,
        )
        return covered_sec
    if abs(covered_sec - duration) > max(5.0, 0.02 * duration):
        log.warning(
            "%s lasts %.0f s but the features cover %.0f s: are they from this video?", video, duration, covered_sec
        )
    return duration


def _check_width(half: Half, spec: ModelSpec, what: str) -> None:
    for name, arr in (("video", half.video), ("audio", half.audio)):
        if arr.shape[1] != spec.feature_dim:
            raise UserError(
                f"{what}: {name} features are {arr.shape[1]} wide but the model expects "
                f"{spec.feature_dim} ({spec.feature_names[name]})"
            )


def _with_truth(
    halves: list[Half], game_dir: Path | None, cmap: ClassMap | None, tokens_per_second: float
) -> list[Half]:
    """Attach the labelled events (mapped to the model's classes) of each half, when the folder has labels."""
    prefer = dataset.labels_version(cmap.label_to_index) if cmap is not None else None  # v1 map: Labels.json
    labels = dataset.labels_path(game_dir, prefer) if game_dir is not None else None
    if game_dir is None or labels is None or cmap is None:
        return halves
    events = dataset.usable_events(
        dataset.read_labels(game_dir, prefer),
        labels,
        cmap,
        {h.number: h.duration or min(len(h.video), len(h.audio)) / tokens_per_second for h in halves},
    )
    for h in halves:
        h.events = sorted(
            (e.position_ms / 1000, cmap.classes[cmap.label_to_index[e.label]])
            for e in events
            if e.half == h.number and cmap.label_to_index.get(e.label, 0) != 0
        )
    return halves


def decode_halves(scoring: Scoring, spec: ModelSpec, halves: list[Half]) -> None:
    """Spans (the seed's decoder) and spots (V&D's NMS) of each scored half, in place."""
    tokens_per_second = spec.tokens_per_second
    for h in halves:
        assert h.probs is not None  # scored before it is decoded
        h.duration = h.duration or len(h.probs) / tokens_per_second
        placed = first_token_placement(h.probs, spec.window_frames) if scoring.score_placement == "first" else h.probs
        h.spans = decode(placed, spec.class_names, h.duration, scoring.decoder, tokens_per_second=tokens_per_second)
        h.spots = nms_spots(
            h.probs,
            spec.class_names,
            h.number,
            tokens_per_second=tokens_per_second,
            window_sec=scoring.nms_window_sec,
            threshold=scoring.nms_threshold,
            rule=scoring.nms_rule,
        )


def warn_random() -> None:
    bar = "!" * 78
    print(
        f"{bar}\n!! WARNING: features were extracted with RANDOM network weights (test mode).\n"
        f"!! Scores, spans and the reel below say nothing about the match.\n{bar}",
        file=sys.stderr,
    )
