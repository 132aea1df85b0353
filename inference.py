"""From match videos (or their features) to highlights: scores, spots, spans, a timeline and the reel.

    python inference.py --model M.keras --out DIR match.mp4 videos/ list.txt   # many matches, one process
    python inference.py --model M.keras --out DIR --video match.mp4
    python inference.py --model M.keras --out DIR --video match.mp4 --features_video 1_ResNET_TF2_PCA512.npy \
        --features_audio 1_VGGish.npy          # reuse features already extracted from that video
    python inference.py --model M.keras --out DIR --features_video F.npy --features_audio F.npy
    python inference.py --model M.keras --out DIR --game_dir ROOT/league/season/game   # both halves + labels

Inputs given without a flag (video files, folders of videos, .txt lists of videos) are scored in one process
with the networks built once; each video gets its own folder DIR/<video name>/, a failing video is reported
and the others go on. Features that `python -m extract_features --list` wrote for a video (`<stem>/1_*.npy`
beside it) are reused instead of extracted again. Window length, feature rate, classes, class map and feature
recipe come from the model file. Writes `spans.json`, `results_spotting.json` (SoccerNet labels),
`timeline.png`, `report.html` (player, timeline and spans in one page), and `highlights.mp4` + `.srt` when
there is a video, all renamed into place together when complete (files of an earlier run that this run does
not write are removed); a run over several videos adds `DIR/index.html` linking each report. Inputs are
checked before anything is computed or written.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from common.atomic import OutputSet, check_output_file, write_json
from common.cli import add_progress_flags, add_spotting_flags, check_spotting_flags
from common.constants import FEATURE_NAMES, LABEL_FILES
from common.errors import UserError, run_cli
from common.inputs import load_features

log = logging.getLogger("inference")

# Every file a run may write into --out: written together, and those a run does not write are removed.
OUTPUT_FILES = (
    "spans.json",
    "results_spotting.json",
    "timeline.png",
    "report.html",
    "highlights.mp4",
    "highlights.srt",
)
# Video and audio features of one input may differ by a few tokens (truncated); more means other inputs.
MAX_LENGTH_GAP_SEC = 5.0


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
    decoder: Any = None  # highlights.decoder.DecoderConfig
    stride: int = 2
    windows_per_call: int = 256
    compute_dtype: str | None = None
    nms_window_sec: float = 60.0
    nms_threshold: float = 0.0
    nms_rule: str = "vd"
    score_placement: str = "centre"
    weights: str = "imagenet"
    pca: Path | None = None
    fast: bool = False
    intro_sec: float = 15.0  # the seed's reel: the first and last 15 s of the match at its ends
    outro_sec: float = 15.0
    reel_repeat_overlaps: bool = False
    reel: bool = True
    progress: bool = True
    class_map: str | None = None  # --class_map: an override that must agree with the model's map
    verbose: bool = False


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
    info: dict
    halves: list[Half]
    outputs: dict[str, Path]
    timings: dict[str, float]
    random_weights: bool
    reel_seconds: float = 0.0
    cmap: Any = None  # dataset.ClassMap of the model, or None when its classes have no SoccerNet labels


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    p.add_argument("--model", required=True, help="a .keras model saved by training (or archis)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "inputs",
        nargs="*",
        metavar="INPUT",
        help="video files, folders of videos, .txt lists of videos (one output folder each)",
    )
    src = p.add_argument_group("single input (instead of INPUTs; outputs go straight into --out)")
    src.add_argument("--video", help="match video (one half or a whole match)")
    src.add_argument("--features_video", help="video features [T, D] .npy (with --features_audio)")
    src.add_argument("--features_audio", help="audio features [T, D] .npy (with --features_video)")
    src.add_argument("--game_dir", help="SoccerNet game folder: both halves; its labels go on the timeline")
    p.add_argument("--ground_truth", help="game folder whose labels (of --half) are shown for a video/features input")
    p.add_argument("--half", type=int, default=1, choices=(1, 2), help="half number written for a video/features")
    dec = p.add_argument_group("decoder")
    dec.add_argument("--decoder_config", help="JSON of decoder figures (seed defaults otherwise)")
    dec.add_argument("--max_total_sec", type=float, help="total reel length budget (best spans kept)")
    dec.add_argument(
        "--merge_classes",
        action="store_true",
        help="join clips of different classes at most --min_gap_sec apart (the seed never did)",
    )
    dec.add_argument(
        "--merge_beyond_max",
        action="store_true",
        help="with --merge_classes: a joined clip may outgrow its classes' max_length",
    )
    dec.add_argument("--min_gap_sec", type=float, help="with --merge_classes: join clips closer than this")
    dec.add_argument("--threshold", type=float, help="peak threshold for every class")
    dec.add_argument(
        "--score_placement",
        choices=("centre", "first"),
        default="centre",
        help="decode scores of windows centred on each token, or (the seed) starting at it",
    )
    add_spotting_flags(p)
    ext = p.add_argument_group("feature extraction (--video without features)")
    ext.add_argument("--weights", default="imagenet", help="imagenet | random (smoke tests only)")
    ext.add_argument("--pca", help="PCA .npz (mean, components) fitted on training features")
    reel = p.add_argument_group("reel")
    reel.add_argument("--fast", action="store_true", help="stream copy: cuts snap to keyframes")
    reel.add_argument(
        "--intro_sec", type=float, default=15.0, help="seconds of the start to open with, as the seed did (0: none)"
    )
    reel.add_argument(
        "--outro_sec", type=float, default=15.0, help="seconds of the end to close with, as the seed did (0: none)"
    )
    reel.add_argument(
        "--reel_repeat_overlaps",
        action="store_true",
        help="cut overlapping spans separately, footage repeated (the seed); default: join them",
    )
    reel.add_argument("--no_reel", action="store_true", help="skip the MP4")
    p.add_argument("--class_map", help="highlight | v1 | v2 | JSON: must agree with the map the model records")
    add_progress_flags(p)
    return p.parse_args(argv)


def build_config(args: argparse.Namespace) -> Config:
    """Check the arguments and the one input of the flags without TensorFlow; UserError on the first problem."""
    feats = [args.features_video, args.features_audio]
    base = _shared_config(args)
    if any(feats) and not all(feats):
        raise UserError("--features_video and --features_audio go together")
    if args.game_dir and (args.video or any(feats)):
        raise UserError("--game_dir cannot be combined with --video or --features_*")
    if not (args.game_dir or args.video or all(feats)):
        raise UserError("give one input: INPUT..., --video, --features_video + --features_audio, or --game_dir")
    for f in feats:
        if f and not Path(f).is_file():
            raise UserError(f"{f}: no such feature file")
    if args.game_dir and not Path(args.game_dir).is_dir():
        raise UserError(f"{args.game_dir}: no such game folder")
    config = dataclasses.replace(
        base,
        video=_path(args.video),
        features_video=_path(args.features_video),
        features_audio=_path(args.features_audio),
        game_dir=_path(args.game_dir),
    )
    check_match(config)
    return config


def build_configs(args: argparse.Namespace) -> list[Config]:
    """One Config per video named by the INPUTs, each with its own folder under --out (a repeated name gets a
    `_`); features already extracted beside a video are reused. The videos themselves are checked one by one
    (`check_match`), so one bad file costs only its own result."""
    from extract_features.batch import expand_inputs

    if args.video or args.features_video or args.features_audio or args.game_dir:
        raise UserError("give INPUTs or one of --video / --features_* / --game_dir, not both")
    from common.modelfile import read_spec

    videos = expand_inputs(args.inputs)
    base = _shared_config(args)
    try:
        names = read_spec(base.model)["feature_names"]
    except (UserError, KeyError):  # a bad model file is reported when it is loaded, after the videos are checked
        names = FEATURE_NAMES
    configs, used = [], set()
    for video in videos:
        name = video.stem
        while name in used:
            name += "_"
        used.add(name)
        configs.append(dataclasses.replace(base, video=video, out=base.out / name, **_features_beside(video, names)))
    return configs


def _features_beside(video: Path, names: dict) -> dict[str, Path]:
    """The features of `video` where `python -m extract_features --list` puts them (see `feature_home`), as
    Config fields, when both files are there; else nothing (they are extracted)."""
    from extract_features.batch import feature_home

    folder, prefix = feature_home(video)
    files = {f"features_{m}": folder / f"{prefix}_{names[m]}.npy" for m in ("video", "audio")}
    return files if all(f.is_file() for f in files.values()) else {}


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


def _shared_config(args: argparse.Namespace) -> Config:
    """The settings every input shares, checked (model file, numbers, decoder, ground truth, PCA file)."""
    from highlights.decoder import DecoderConfig

    model = Path(args.model)
    if not model.is_file():
        raise UserError(f"{model}: no such model file")
    check_spotting_flags(args)
    for flag in ("intro_sec", "outro_sec"):
        if getattr(args, flag) < 0:
            raise UserError(f"--{flag} must be >= 0, got {getattr(args, flag)}")
    decoder = DecoderConfig.from_json(args.decoder_config) if args.decoder_config else DecoderConfig()
    decoder = _override_decoder(decoder, args)
    if args.ground_truth and not Path(args.ground_truth).is_dir():
        raise UserError(f"{args.ground_truth}: no such game folder")
    if args.pca and not Path(args.pca).is_file():
        raise UserError(f"{args.pca}: no such PCA file")
    return Config(
        model=model,
        out=Path(args.out),
        ground_truth=_path(args.ground_truth),
        half=args.half,
        decoder=decoder,
        stride=args.stride,
        windows_per_call=args.windows_per_call,
        compute_dtype=args.compute_dtype,
        nms_window_sec=args.nms_window,
        nms_threshold=args.nms_threshold,
        weights=args.weights,
        nms_rule=args.nms_rule,
        score_placement=args.score_placement,
        pca=_path(args.pca),
        fast=args.fast,
        intro_sec=args.intro_sec,
        outro_sec=args.outro_sec,
        reel=not args.no_reel,
        reel_repeat_overlaps=args.reel_repeat_overlaps,
        progress=not args.quiet,
        class_map=args.class_map,
        verbose=args.verbose,
    )


def check_match(config: Config) -> None:
    """The checks of one input that need no network: its video, the extraction settings when its features are to
    be extracted, and that its output folder can be written."""
    if config.video:
        if not config.video.is_file():
            raise UserError(f"{config.video}: no such file")
        _check_video(config.video)
    if config.video and not config.features_video:
        from extract_features import ExtractConfig

        ExtractConfig(weights=config.weights, pca=str(config.pca) if config.pca else None)  # checked before loading
    _check_writable(config.out)


def _override_decoder(decoder: Any, args: argparse.Namespace) -> Any:
    from highlights.decoder import DecoderConfig

    data = decoder.to_dict()
    if args.threshold is not None:
        if not 0 <= args.threshold <= 1:
            raise UserError(f"--threshold must be in [0, 1], got {args.threshold}")
        data["default"]["threshold"] = args.threshold
        for rule in data["rules"].values():
            rule["threshold"] = args.threshold
    for key in ("max_total_sec", "min_gap_sec"):
        if getattr(args, key) is not None:
            data[key] = getattr(args, key)
    for key in ("merge_classes", "merge_beyond_max"):
        data[key] = data[key] or getattr(args, key)
    return dataclasses.replace(DecoderConfig.from_dict(data, "decoder flags"), named=decoder.named)


def _check_video(video: Path) -> None:
    from common.ffmpeg import probe

    if video.is_file() and video.stat().st_size == 0:
        raise UserError(f"{video}: empty file (zero-length video)")
    info = probe(video)
    if not info.has_video:
        raise UserError(f"{video}: no video stream")
    if not info.has_audio:
        raise UserError(f"{video}: no audio stream (the model needs video and audio)")
    if info.duration <= 0:
        raise UserError(f"{video}: zero-length video")


def _check_writable(out: Path) -> None:
    """The output folder can be written, or made: checked without creating it, so a run stopped before its
    outputs (an error, Ctrl-C) leaves no empty folder behind; the output set makes it when it writes."""
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder")
    parent = out.absolute()
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"{out}: cannot create the output folder ({parent} is not a folder)")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(
            f"{parent}: output folder is not writable"
            if parent == out.absolute()
            else f"{out}: cannot create the output folder ({parent} is not writable)"
        )
    for name in OUTPUT_FILES:
        check_output_file(out / name)


# ----------------------------------------------------------------------------------------------------------------
# The pipeline


class Session:
    """What every match shares, built once: the model and its scorer, class map, feature recipe check, and the
    feature extractor (built on the first video that needs it)."""

    def __init__(self, config: Config):
        from common.quiet import import_tensorflow

        import_tensorflow(config.verbose)
        import archis
        from common.features import RecipeCheck
        from highlights.spotting import Scorer, model_class_map, with_compute_dtype

        t0 = time.perf_counter()
        model = archis.load_model(config.model)
        self.info = archis.model_info(model)
        self.cmap = model_class_map(self.info, config.class_map, str(config.model))
        self.scorer = Scorer(with_compute_dtype(model, config.compute_dtype), batch_size=config.windows_per_call)
        self.check_recipe = RecipeCheck(self.info["feature_recipe"], config.model.name)
        self.load_seconds = time.perf_counter() - t0
        self._extractor: Any = None
        self._extract_settings: tuple | None = None

    def extractor(self, config: Config) -> Any:
        """The feature extractor for `config`'s extraction settings (built once)."""
        settings = (config.weights, str(config.pca) if config.pca else None)
        if self._extractor is None or settings != self._extract_settings:
            from extract_features.pipeline import ExtractConfig, Extractor

            self._extractor = Extractor(ExtractConfig(weights=settings[0], pca=settings[1]))
            self._extract_settings = settings
        return self._extractor


def run(config: Config, session: Session | None = None) -> Result:
    """Score, spot, decode and write every output of one input (the model loaded now unless a session is given)."""
    timings: dict[str, float] = {}
    if session is None:
        session = Session(config)
        timings["load model"] = session.load_seconds
    info = session.info
    config.decoder.check_classes(info["class_names"])

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
    _decode(config, info, halves)
    timings["spans"] = time.perf_counter() - t0
    result = Result(config, info, halves, {}, timings, random_weights, cmap=session.cmap)
    _write_outputs(result)
    return result


def _load_inputs(config: Config, session: Session) -> tuple[list[Half], bool]:
    """Feature streams to score (with ground truth when labels are known) and whether weights were random."""
    import dataset
    from common.features import random_weights as made_randomly
    from common.features import read_record

    info = session.info
    names = info["feature_names"]
    if config.game_dir:
        record = read_record(config.game_dir)
        _check_record(session, record, str(config.game_dir))
        halves = []
        for number in (1, 2):
            video, audio = dataset.load_half(
                config.game_dir,
                number,
                features_video=names["video"],
                features_audio=names["audio"],
                pca=None,
                feature_dim=info["feature_dim"],
            )
            halves.append(Half(number, video, audio))
        _check_width(halves[0], info, str(config.game_dir))
        return _with_truth(halves, config.game_dir, session.cmap, info["frames_per_second"]), made_randomly(record)
    if config.features_video:
        video, audio = load_features(config.features_video), load_features(config.features_audio)
        _check_lengths(video, audio, config, info["frames_per_second"])
        records = [read_record(Path(f).parent) for f in (config.features_video, config.features_audio)]
        for record, f in zip(records, (config.features_video, config.features_audio), strict=True):
            _check_record(session, record, str(f))
        random_weights = any(made_randomly(r) for r in records)
    else:
        extracted = session.extractor(config).run(config.video, progress=config.progress)
        video, audio = extracted.video, extracted.audio
        _check_record(session, extracted.info, str(config.video))
        random_weights = made_randomly(extracted.info)
    if random_weights:
        warn_random()
    half = Half(config.half, video, audio)
    _check_width(half, info, str(config.features_video or config.video))
    if config.video:
        half.duration = _check_duration(config.video, min(len(video), len(audio)) / info["frames_per_second"])
    return _with_truth([half], config.ground_truth, session.cmap, info["frames_per_second"]), random_weights


def _check_lengths(video: np.ndarray, audio: np.ndarray, config: Config, fps: float) -> None:
    """Refuse video and audio features of different inputs (lengths apart by more than MAX_LENGTH_GAP_SEC)."""
    gap = abs(len(video) - len(audio))
    if gap > MAX_LENGTH_GAP_SEC * fps:
        raise UserError(
            f"{config.features_video} has {len(video)} rows ({len(video) / fps:.1f} s) but "
            f"{config.features_audio} has {len(audio)} ({len(audio) / fps:.1f} s): features of "
            f"different videos? (at most {MAX_LENGTH_GAP_SEC:g} s apart)"
        )
    if gap:
        log.warning(
            "%s has %d rows, %s %d: scoring the first %d",
            config.features_video,
            len(video),
            config.features_audio,
            len(audio),
            min(len(video), len(audio)),
        )


def _check_record(session: Session, record: dict | None, what: str) -> None:
    """Features at another token rate than the model's: error; made with another recipe: one warning per run."""
    from common.features import frame_rate_problem, recipe_of

    problem = frame_rate_problem(record, session.info["frames_per_second"])
    if problem:
        raise UserError(f"{what}: {problem}")
    session.check_recipe(recipe_of(record), what)


def _check_duration(video: Path, covered_sec: float) -> float:
    """The video's duration; a warning when the features cover a clearly different length."""
    from common.ffmpeg import probe

    duration = probe(video).duration
    if abs(covered_sec - duration) > max(5.0, 0.02 * duration):
        log.warning(
            "%s lasts %.0f s but the features cover %.0f s: are they from this video?", video, duration, covered_sec
        )
    return duration


def _check_width(half: Half, info: dict, what: str) -> None:
    for name, arr in (("video", half.video), ("audio", half.audio)):
        if arr.shape[1] != info["feature_dim"]:
            raise UserError(
                f"{what}: {name} features are {arr.shape[1]} wide but the model expects "
                f"{info['feature_dim']} ({info['feature_names'][name]})"
            )


def _with_truth(halves: list[Half], game_dir: Path | None, cmap: Any, fps: float) -> list[Half]:
    """Attach the labelled events (mapped to the model's classes) of each half, when the folder has labels."""
    if game_dir is None or cmap is None or not any((game_dir / n).is_file() for n in LABEL_FILES):
        return halves
    import dataset

    events = dataset.usable_events(
        dataset.read_labels(game_dir),
        dataset.labels_path(game_dir),
        cmap,
        {h.number: h.duration or min(len(h.video), len(h.audio)) / fps for h in halves},
    )
    for h in halves:
        h.events = sorted(
            (e.position_ms / 1000, cmap.classes[cmap.label_to_index[e.label]])
            for e in events
            if e.half == h.number and cmap.label_to_index.get(e.label, 0) != 0
        )
    return halves


def _decode(config: Config, info: dict, halves: list[Half]) -> None:
    from highlights.decoder import decode, first_token_placement
    from highlights.spotting import nms_spots

    fps = info["frames_per_second"]
    for h in halves:
        h.duration = h.duration or len(h.probs) / fps
        probs = first_token_placement(h.probs, info["window_frames"]) if config.score_placement == "first" else h.probs
        h.spans = decode(probs, info["class_names"], h.duration, config.decoder, fps=fps)
        h.spots = nms_spots(
            h.probs,
            info["class_names"],
            h.number,
            fps=fps,
            window_sec=config.nms_window_sec,
            threshold=config.nms_threshold,
            rule=config.nms_rule,
        )


def spans_json(result: Result) -> dict:
    from common.timefmt import game_time
    from highlights.spotting import class_labels

    cfg, info = result.config, result.info
    labels = class_labels(result.cmap, info["class_names"])
    names = list(info["class_names"])
    return {
        "source": {
            k: str(v)
            for k, v in (
                ("video", cfg.video),
                ("features_video", cfg.features_video),
                ("features_audio", cfg.features_audio),
                ("game_dir", cfg.game_dir),
            )
            if v is not None
        },
        "model": {
            "path": str(cfg.model),
            **{k: info[k] for k in ("architecture", "pooling", "window_seconds", "frames_per_second", "class_names")},
        },
        "decoder": cfg.decoder.to_dict(),
        "spans": [
            {
                "half": h.number,
                "start": round(s.start, 3),
                "end": round(s.end, 3),
                "class": s.label,
                "label": labels.get(names.index(s.label), s.label),
                "score": round(s.score, 6),
                "peak": round(s.peak, 3),
                "match_time": game_time(h.number, s.peak),
                "classes": list(s.labels),
                "events": [
                    {
                        "class": e.label,
                        "label": labels.get(names.index(e.label), e.label),
                        "peak": round(e.peak, 3),
                        "score": round(e.score, 6),
                        "match_time": game_time(h.number, e.peak),
                    }
                    for e in s.all_events()
                ],
            }
            for h in result.halves
            for s in h.spans
        ],
    }


def _write_outputs(result: Result) -> None:
    """Every output of the run, made visible together (the reel first: the step most likely to fail). Files
    of an earlier run that this one does not write (a reel, when this run makes none) are removed."""
    from highlights.plots import plot_timeline
    from highlights.report import write_report
    from highlights.spotting import class_labels, write_results_spotting

    cfg, out = result.config, result.config.out
    with OutputSet(out, OUTPUT_FILES) as files:
        t0 = time.perf_counter()
        _write_reel(result, files)
        result.timings["reel"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        write_json(files.path("spans.json"), spans_json(result))
        game = str(cfg.game_dir or cfg.video or cfg.features_video)
        write_results_spotting(
            files.path("results_spotting.json"),
            game,
            [s for h in result.halves for s in h.spots],
            class_labels(result.cmap, result.info["class_names"]),
        )
        fps = result.info["frames_per_second"]
        probs, spans, truth = _joined_halves(result.halves, fps)
        plot_timeline(
            files.path("timeline.png"),
            probs,
            result.info["class_names"],
            fps,
            spans,
            truth,
            title=f"{Path(game).name}: class scores, spans (shaded), ground truth (v)"
            + (" - halves end to end" if len(result.halves) > 1 else ""),
        )
        result.outputs.update(
            spans=out / "spans.json",
            spotting=out / "results_spotting.json",
            timeline=out / "timeline.png",
            report=out / "report.html",
        )
        write_report(files.path("report.html"), result, folder=out)
    result.timings["write"] = time.perf_counter() - t0


def _write_reel(result: Result, files: OutputSet) -> None:
    """The reel and its subtitles, when there is a video and something to show."""
    from common.timefmt import game_time
    from highlights.reel import make_reel, plan_clips

    cfg = result.config
    if not (cfg.video and cfg.reel and (any(h.spans for h in result.halves) or cfg.intro_sec or cfg.outro_sec)):
        return
    h = result.halves[0]
    clips = plan_clips(
        h.spans,
        h.duration,
        intro_sec=cfg.intro_sec,
        outro_sec=cfg.outro_sec,
        title=lambda s: " + ".join(f"{e.label} {game_time(h.number, e.peak)} ({e.score:.2f})" for e in s.all_events()),
        join_overlaps=not cfg.reel_repeat_overlaps,
    )
    reel = make_reel(
        cfg.video,
        clips,
        files.path("highlights.mp4"),
        fast=cfg.fast,
        progress=cfg.progress,
        srt_out=files.path("highlights.srt"),
    )
    result.outputs["reel"] = cfg.out / "highlights.mp4"
    result.outputs["subtitles"] = cfg.out / "highlights.srt"
    result.reel_seconds = reel.duration


def _joined_halves(halves: Sequence[Half], fps: float) -> tuple[np.ndarray, list, list]:
    """(probs, spans, ground truth) of the halves laid end to end, for one timeline."""
    from highlights.decoder import Span

    offset, spans, truth = 0.0, [], []
    for h in halves:
        spans += [Span(s.start + offset, s.end + offset, s.label, s.score, s.peak + offset) for s in h.spans]
        truth += [(t + offset, c) for t, c in h.events]
        offset += len(h.probs) / fps
    return np.concatenate([h.probs for h in halves]), spans, truth


def covered(halves: Sequence[Half]) -> tuple[int, int]:
    """(true events inside some span of their half, true events)."""
    hits = sum(any(s.start <= t <= s.end for s in h.spans) for h in halves for t, _ in h.events)
    return hits, sum(len(h.events) for h in halves)


def summary(result: Result) -> str:
    """One screen: input, model, spans, coverage, outputs, time per stage."""
    from common.timefmt import game_time

    cfg, info = result.config, result.info
    lines = [
        f"model   {cfg.model} ({info['architecture']}, {info['pooling']}, {info['window_seconds']:g} s windows, "
        f"classes {', '.join(info['class_names'][1:])})"
    ]
    for h in result.halves:
        lines.append(
            f"half {h.number}  {h.duration / 60:.1f} min, {len(h.probs)} tokens, {len(h.spots)} spots, "
            f"{len(h.spans)} spans"
        )
    spans = [(h.number, s) for h in result.halves for s in h.spans]
    for number, s in spans[:12]:
        lines.append(f"  {game_time(number, s.peak)}  {s.label:<10} {s.start:7.1f}-{s.end:7.1f} s  score {s.score:.2f}")
    if len(spans) > 12:
        lines.append(f"  ... {len(spans) - 12} more in spans.json")
    lines += [f"{k:<9} {v}" for k, v in result.outputs.items()]
    lines.append("time    " + ", ".join(f"{k} {v:.1f} s" for k, v in result.timings.items()))
    if result.random_weights:
        lines.append("WARNING: features came from RANDOM extraction weights: these highlights mean nothing")
    text = f"{len(spans)} highlights ({sum(s.duration for _, s in spans):.0f} s)"
    hits, events = covered(result.halves)
    if events:
        text += f", {hits} of {events} true events covered"
    lines.append(text)
    return "\n".join(lines)


def warn_random() -> None:
    bar = "!" * 78
    print(
        f"{bar}\n!! WARNING: features were extracted with RANDOM network weights (test mode).\n"
        f"!! Scores, spans and the reel below say nothing about the match.\n{bar}",
        file=sys.stderr,
    )


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    args = parse_args(argv)
    if args.inputs:
        return run_many(build_configs(args))
    existed = Path(args.out).exists()
    try:
        result = run(build_config(args))
    except BaseException:
        if not existed and Path(args.out).is_dir() and not any(Path(args.out).iterdir()):
            Path(args.out).rmdir()  # leave nothing behind, not even the folder we made
        raise
    print(summary(result))
    return 0


def run_many(configs: Sequence[Config]) -> int:
    """Every video in one process, the model loaded and the extractor built once. All videos are checked first
    (so a run of bad files never loads the model); a video that fails is reported on one line and the others
    go on; a model that cannot be loaded stops the run (UserError). Returns 0 when all were done, else 1."""
    failed: list[str] = []

    def attempt(config: Config, step) -> bool:
        existed = config.out.exists()
        try:
            step()
            return True
        except UserError as exc:
            print(f"error: {' '.join(str(exc).split())}", file=sys.stderr, flush=True)
            failed.append(str(config.video))
            if not existed and config.out.is_dir() and not any(config.out.iterdir()):
                config.out.rmdir()  # nothing half-made is left for a failed video
            return False

    made = [c.out for c in configs if not c.out.exists()]
    ready = [c for c in configs if attempt(c, lambda c=c: check_match(c))]
    try:
        session = Session(ready[0]) if ready else None
    except BaseException:
        for out in made:
            if out.is_dir() and not any(out.iterdir()):
                out.rmdir()
        raise
    reports: list[Path] = []
    for config in ready:
        print(f"== {config.video} -> {config.out}/", file=sys.stderr, flush=True)
        if attempt(config, lambda c=config: print(summary(run(c, session)), flush=True)):
            reports.append(config.out / "report.html")
    root = configs[0].out.parent
    if reports:  # one page linking every match's report.html
        from highlights.report import write_index

        write_index(root / "index.html", reports)
    print(
        f"{len(reports)} of {len(configs)} videos done: {root}/" + (f" (open {root}/index.html)" if reports else ""),
        file=sys.stderr,
    )
    if failed:
        print("failed: " + ", ".join(failed), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    run_cli(main)
