"""One match through the pipeline: features (extracted or read), scores, spots and spans, returned as values.

`Session` loads the model once (and builds the feature extractor on first need); `run(config, session)` scores one
input and returns its `Result` without writing anything; the writers (`soccer_highlights.writers`) turn a Result
into files. The commands `inference.py` (videos, folders, lists, features) and `ClassificationSecondBased.py` (game
lists) parse flags into a `Config` and call these; live mode decodes its recording with `decode_halves`.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from soccer_highlights import dataset
from soccer_highlights.common.errors import UserError
from soccer_highlights.common.features import RecipeCheck, frame_rate_problem, read_record, recipe_of
from soccer_highlights.common.features import random_weights as made_randomly
from soccer_highlights.common.ffmpeg import probe
from soccer_highlights.common.inputs import MAX_LENGTH_GAP_SEC, check_length_gap, load_features  # noqa: F401 - re-exported
from soccer_highlights.common.quiet import import_tensorflow
from soccer_highlights.extract_features import ExtractConfig
from soccer_highlights.extract_features.pipeline import Extractor
from soccer_highlights.highlights.decoder import DecoderConfig, decode, first_token_placement
from soccer_highlights.spotting.spots import Scorer, model_class_map, nms_spots, with_compute_dtype

if TYPE_CHECKING:
    from soccer_highlights.common.modelspec import ModelSpec
    from soccer_highlights.dataset import ClassMap
    from soccer_highlights.extract_features.pipeline import ExtractConfig, Extractor

log = logging.getLogger("inference")


@dataclass
class Config:
    model: Path
    out: Path
    video: Path | None = None
    features_video: Path | None = None
    features_audio: Path | None = None
    game_dir: Path | None = None
    ground_truth: Path | None = None  # a SoccerNet game folder whose labels of `half` go on the timeline
    half: int = 1
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    stride: int = 2
    windows_per_call: int = 256
    compute_dtype: str | None = None
    nms_window_sec: float = 60.0
    nms_threshold: float = 0.0
    nms_rule: str = "vd"
    score_placement: str = "centre"
    weights: str = "imagenet"
    pca: Path | None = None
    feature_runtime: str | None = None  # the feature networks' runtime (None: OpenVINO on a CPU)
    feature_dtype: str = "float32"
    int8_model: str | None = None
    fast: bool = False
    intro_sec: float = 15.0  # the seed's reel: the first and last 15 s of the match at its ends
    outro_sec: float = 15.0
    reel_repeat_overlaps: bool = False
    reel: bool = True
    progress: bool = True
    class_map: str | None = None  # --class_map: an override that must agree with the model's map
    verbose: bool = False
    root: Path | None = None  # --out of a run over many inputs (`out` is a folder in it); every output stays inside
    other_inputs: tuple[Path, ...] = ()  # the files the other inputs of the same run read

    def inputs(self) -> list[Path]:
        """The files this run (and the other inputs of the same run) read: none may be one of its outputs."""
        own = (self.video, self.features_video, self.features_audio, self.model, self.pca)
        return [p for p in (*own, *self.other_inputs) if p]


@dataclass
class Half:
    """One stream of features to score: a half of a game, or a whole video."""

    number: int
    video: np.ndarray
    audio: np.ndarray
    events: list[tuple[float, str]] = field(default_factory=list)  # ground truth (seconds, class name)
    duration: float = 0.0
    probs: np.ndarray | None = None
    spans: list = field(default_factory=list)
    spots: list = field(default_factory=list)


@dataclass
class Result:
    config: Config
    spec: ModelSpec
    halves: list[Half]
    outputs: dict[str, Path]
    timings: dict[str, float]
    random_weights: bool
    reel_seconds: float = 0.0
    cmap: ClassMap | None = None  # the model's, or None when its classes have no SoccerNet labels


def check_match(config: Config) -> None:
    """The checks of one input that need no network: its video, and the extraction settings when its features
    are to be extracted (its output folder is checked by `writers.outputs.check_outputs`)."""
    if config.video:
        if config.video.is_dir():
            raise UserError(f"{config.video}: is a folder, expected a video file")
        if not config.video.is_file():
            raise UserError(f"{config.video}: no such file")
        _check_video(config.video)
    if config.video and not config.features_video:
        extract_config(config)  # checked before loading


def extract_config(config: Config) -> ExtractConfig:
    """The feature extraction settings of `config`."""

    return ExtractConfig(
        weights=config.weights,
        pca=str(config.pca) if config.pca else None,
        runtime=config.feature_runtime,
        compute_dtype=config.feature_dtype,
        int8_model=config.int8_model,
    )


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


class Session:
    """What every match shares, built once: the model (its spec) and its scorer, class map, feature recipe check,
    and the feature extractor (built on the first video that needs it). The one load sequence of every command
    that scores matches (`inference.py`, `ClassificationSecondBased.py`)."""

    def __init__(
        self,
        model: Path,
        *,
        class_map: str | None = None,
        compute_dtype: str | None = None,
        windows_per_call: int = 256,
        verbose: bool = False,
    ):
        import_tensorflow(verbose)
        from soccer_highlights import archis  # deferred: loads TensorFlow (start-up)

        t0 = time.perf_counter()
        loaded = archis.load_model(model)
        self.spec: ModelSpec = archis.model_info(loaded)
        self.cmap: ClassMap | None = model_class_map(self.spec, class_map, str(model))
        self.scorer = Scorer(with_compute_dtype(loaded, compute_dtype), batch_size=windows_per_call)
        self.check_recipe = RecipeCheck(self.spec.feature_recipe, Path(model).name)
        self.load_seconds = time.perf_counter() - t0
        self._extractor: Extractor | None = None
        self._extract_settings: ExtractConfig | None = None

    @classmethod
    def for_config(cls, config: Config) -> Session:
        return cls(
            config.model,
            class_map=config.class_map,
            compute_dtype=config.compute_dtype,
            windows_per_call=config.windows_per_call,
            verbose=config.verbose,
        )

    def check_record(self, record: dict | None, what: str) -> None:
        """Features at another token rate than the model's: error; made with another recipe: one warning per run."""

        problem = frame_rate_problem(record, self.spec.tokens_per_second)
        if problem:
            raise UserError(f"{what}: {problem}")
        self.check_recipe(recipe_of(record), what, record)

    def extractor(self, config: Config) -> Extractor:
        """The feature extractor for `config`'s extraction settings (built once)."""
        settings = extract_config(config)
        if self._extractor is None or settings != self._extract_settings:
            self._extractor = Extractor(settings)
            self._extract_settings = settings
        return self._extractor


def run(config: Config, session: Session | None = None) -> Result:
    """Score, spot and decode one input (the model loaded now unless a session is given); nothing is written."""
    timings: dict[str, float] = {}
    if session is None:
        session = Session.for_config(config)
        timings["load model"] = session.load_seconds
    spec = session.spec
    config.decoder.check_classes(spec.class_names)

    t0 = time.perf_counter()
    halves, random_weights = _load_inputs(config, session)
    timings["features"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    for h in halves:
        h.probs = session.scorer.score_half(
            h.video, h.audio, stride=config.stride, progress=config.progress, what=f"scoring half {h.number}"
        )
    timings["scores"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    decode_halves(config, spec, halves)
    timings["spans"] = time.perf_counter() - t0
    return Result(config, spec, halves, {}, timings, random_weights, cmap=session.cmap)


def _load_inputs(config: Config, session: Session) -> tuple[list[Half], bool]:
    """Feature streams to score (with ground truth when labels are known) and whether weights were random."""

    spec = session.spec
    names = spec.feature_names
    if config.game_dir:
        record = read_record(config.game_dir)
        session.check_record(record, str(config.game_dir))
        halves = []
        for number in (1, 2):
            video, audio = dataset.load_half(
                config.game_dir,
                number,
                features_video=names["video"],
                features_audio=names["audio"],
                pca=None,
                feature_dim=spec.feature_dim,
                fps=spec.tokens_per_second,
            )
            halves.append(Half(number, video, audio))
        _check_width(halves[0], spec, str(config.game_dir))
        return _with_truth(halves, config.game_dir, session.cmap, spec.tokens_per_second), made_randomly(record)
    if config.features_video:
        video, audio = load_features(config.features_video), load_features(config.features_audio)
        _check_lengths(video, audio, config, spec.tokens_per_second)
        records = [read_record(Path(f).parent) for f in (config.features_video, config.features_audio)]
        for record, f in zip(records, (config.features_video, config.features_audio), strict=True):
            session.check_record(record, str(f))
        random_weights = any(made_randomly(r) for r in records)
    else:
        extracted = session.extractor(config).run(config.video, progress=config.progress)
        video, audio = extracted.video, extracted.audio
        session.check_record(extracted.info, str(config.video))
        random_weights = made_randomly(extracted.info)
    if random_weights:
        warn_random()
    half = Half(config.half, video, audio)
    _check_width(half, spec, str(config.features_video or config.video))
    if config.video:
        covered = min(len(video), len(audio)) / spec.tokens_per_second
        half.duration = _check_duration(config.video, covered, extracted=not config.features_video)
    return _with_truth([half], config.ground_truth, session.cmap, spec.tokens_per_second), random_weights


def _check_lengths(video: np.ndarray, audio: np.ndarray, config: Config, tokens_per_second: float) -> None:
    """Refuse video and audio features of different inputs (lengths apart by more than MAX_LENGTH_GAP_SEC)."""
    check_length_gap(config.features_video, len(video), config.features_audio, len(audio), tokens_per_second)
    if len(video) != len(audio):
        log.warning(
            "%s has %d rows, %s %d: scoring the first %d",
            config.features_video,
            len(video),
            config.features_audio,
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

    if game_dir is None or cmap is None or dataset.labels_path(game_dir) is None:
        return halves

    events = dataset.usable_events(
        dataset.read_labels(game_dir),
        dataset.labels_path(game_dir),
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


def decode_halves(config: Config, spec: ModelSpec, halves: list[Half]) -> None:
    """Spans (the seed's decoder) and spots (V&D's NMS) of each scored half, in place."""

    tokens_per_second = spec.tokens_per_second
    for h in halves:
        h.duration = h.duration or len(h.probs) / tokens_per_second
        probs = first_token_placement(h.probs, spec.window_frames) if config.score_placement == "first" else h.probs
        h.spans = decode(probs, spec.class_names, h.duration, config.decoder, tokens_per_second=tokens_per_second)
        h.spots = nms_spots(
            h.probs,
            spec.class_names,
            h.number,
            tokens_per_second=tokens_per_second,
            window_sec=config.nms_window_sec,
            threshold=config.nms_threshold,
            rule=config.nms_rule,
        )


def warn_random() -> None:
    bar = "!" * 78
    print(
        f"{bar}\n!! WARNING: features were extracted with RANDOM network weights (test mode).\n"
        f"!! Scores, spans and the reel below say nothing about the match.\n{bar}",
        file=sys.stderr,
    )
