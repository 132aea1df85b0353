"""From a match video (or its features) to highlights: scores, spots, spans, a timeline and the reel.

    python inference.py --model M.keras --out DIR --video match.mp4
    python inference.py --model M.keras --out DIR --video match.mp4 --features_video 1_ResNET_TF2_PCA512.npy \
        --features_audio 1_VGGish.npy          # reuse features already extracted from that video
    python inference.py --model M.keras --out DIR --features_video F.npy --features_audio F.npy
    python inference.py --model M.keras --out DIR --game_dir ROOT/league/season/game   # both halves + labels

Window length, feature rate, classes and feature names come from the model file. Writes into DIR:
`spans.json`, `results_spotting.json` (SoccerNet), `timeline.png`, `report.html` (player, timeline and
spans in one page), and `highlights.mp4` + `.srt` when there is a video, all renamed into place together
when complete (files of an earlier run that this run does not write are removed). Inputs are checked before
anything is computed or written.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
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
from common.errors import UserError, run_cli
from common.inputs import load_features

log = logging.getLogger("inference")

# Every file a run may write into --out: written together, and those a run does not write are removed.
OUTPUT_FILES = ("spans.json", "results_spotting.json", "timeline.png", "report.html", "highlights.mp4",
                "highlights.srt")
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
    batch_size: int = 256
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


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--model", required=True, help="a .keras model saved by training (or archis)")
    p.add_argument("--out", required=True, help="output folder")
    src = p.add_argument_group("input (one of)")
    src.add_argument("--video", help="match video (one half or a whole match)")
    src.add_argument("--features_video", help="video features [T, D] .npy (with --features_audio)")
    src.add_argument("--features_audio", help="audio features [T, D] .npy (with --features_video)")
    src.add_argument("--game_dir", help="SoccerNet game folder: both halves; its labels go on the timeline")
    p.add_argument("--ground_truth", help="game folder whose labels (of --half) are shown for a video/features input")
    p.add_argument("--half", type=int, default=1, choices=(1, 2), help="half number written for a video/features")
    dec = p.add_argument_group("decoder")
    dec.add_argument("--decoder_config", help="JSON of decoder figures (seed defaults otherwise)")
    dec.add_argument("--max_total_sec", type=float, help="total reel length budget (best spans kept)")
    dec.add_argument("--merge_classes", action="store_true",
                     help="join clips of different classes at most --min_gap_sec apart (the seed never did)")
    dec.add_argument("--merge_beyond_max", action="store_true",
                     help="with --merge_classes: a joined clip may outgrow its classes' max_length")
    dec.add_argument("--min_gap_sec", type=float, help="with --merge_classes: join clips closer than this")
    dec.add_argument("--threshold", type=float, help="peak threshold for every class")
    dec.add_argument("--score_placement", choices=("centre", "first"), default="centre",
                     help="decode scores of windows centred on each token, or (the seed) starting at it")
    spot = p.add_argument_group("scoring and spotting")
    spot.add_argument("--stride", type=int, default=2, help="tokens between window centres (2 = one per second)")
    spot.add_argument("--batch_size", type=int, default=256, help="windows per model call")
    spot.add_argument("--compute_dtype", choices=("float32", "bfloat16"), help="default: the model's")
    spot.add_argument("--nms_window", type=float, default=60.0, help="spotting NMS window, seconds")
    spot.add_argument("--nms_threshold", type=float, default=0.0, help="spotting NMS threshold")
    spot.add_argument("--nms_rule", choices=("vd", "symmetric"), default="vd",
                      help="vd: V&D's (no spot in a half's first or last 30 s); symmetric: +-30 s to the edges")
    ext = p.add_argument_group("feature extraction (--video without features)")
    ext.add_argument("--weights", default="imagenet", help="imagenet | random (smoke tests only)")
    ext.add_argument("--pca", help="PCA .npz (mean, components) fitted on training features")
    reel = p.add_argument_group("reel")
    reel.add_argument("--fast", action="store_true", help="stream copy: cuts snap to keyframes")
    reel.add_argument("--intro_sec", type=float, default=15.0, help="seconds of the start to open with, as the "
                      "seed did (0: none)")
    reel.add_argument("--outro_sec", type=float, default=15.0, help="seconds of the end to close with, as the "
                      "seed did (0: none)")
    reel.add_argument("--reel_repeat_overlaps", action="store_true",
                      help="cut overlapping spans separately, footage repeated (the seed); default: join them")
    reel.add_argument("--no_reel", action="store_true", help="skip the MP4")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p.parse_args(argv)


def build_config(args: argparse.Namespace) -> Config:
    """Check the arguments and the input files without TensorFlow; UserError on the first problem."""
    from highlights.decoder import DecoderConfig

    def path(value: str | None) -> Path | None:
        return Path(value) if value else None

    model = Path(args.model)
    if not model.is_file():
        raise UserError(f"{model}: no such model file")
    feats = [args.features_video, args.features_audio]
    if any(feats) and not all(feats):
        raise UserError("--features_video and --features_audio go together")
    if args.game_dir and (args.video or any(feats)):
        raise UserError("--game_dir cannot be combined with --video or --features_*")
    if not (args.game_dir or args.video or all(feats)):
        raise UserError("give one input: --video, --features_video + --features_audio, or --game_dir")
    for flag in ("stride", "batch_size"):
        if getattr(args, flag) < 1:
            raise UserError(f"--{flag} must be >= 1, got {getattr(args, flag)}")
    for flag in ("intro_sec", "outro_sec"):
        if getattr(args, flag) < 0:
            raise UserError(f"--{flag} must be >= 0, got {getattr(args, flag)}")
    decoder = DecoderConfig.from_json(args.decoder_config) if args.decoder_config else DecoderConfig()
    decoder = _override_decoder(decoder, args)
    from highlights.spotting import check_nms

    check_nms(args.nms_window, args.nms_threshold)
    for f in feats:
        if f and not Path(f).is_file():
            raise UserError(f"{f}: no such feature file")
    for d in (args.game_dir, args.ground_truth):
        if d and not Path(d).is_dir():
            raise UserError(f"{d}: no such game folder")
    if args.video:
        _check_video(Path(args.video))
    if args.pca and not Path(args.pca).is_file():
        raise UserError(f"{args.pca}: no such PCA file")
    if args.video and not any(feats):
        from extract_features import ExtractConfig

        ExtractConfig(weights=args.weights, pca=args.pca)  # extraction settings checked now, not after loading
    out = Path(args.out)
    _check_writable(out)
    return Config(model=model, out=out, video=path(args.video), features_video=path(args.features_video),
                  features_audio=path(args.features_audio), game_dir=path(args.game_dir),
                  ground_truth=path(args.ground_truth), half=args.half, decoder=decoder, stride=args.stride,
                  batch_size=args.batch_size, compute_dtype=args.compute_dtype, nms_window_sec=args.nms_window,
                  nms_threshold=args.nms_threshold, nms_rule=args.nms_rule,
                  score_placement=args.score_placement, weights=args.weights, pca=path(args.pca), fast=args.fast,
                  intro_sec=args.intro_sec, outro_sec=args.outro_sec, reel=not args.no_reel,
                  reel_repeat_overlaps=args.reel_repeat_overlaps,
                  progress=not args.quiet)


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
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{out}: cannot create the output folder ({exc.strerror or exc})") from exc
    if not os.access(out, os.W_OK | os.X_OK):
        raise UserError(f"{out}: output folder is not writable")
    for name in OUTPUT_FILES:
        check_output_file(out / name)


# ----------------------------------------------------------------------------------------------------------------
# The pipeline


def run(config: Config) -> Result:
    """Score, spot, decode and write every output of one input."""
    import archis
    from highlights.spotting import Scorer, with_compute_dtype

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    model = archis.load_model(config.model)
    info = archis.model_info(model)
    config.decoder.check_classes(info["class_names"])
    model = with_compute_dtype(model, config.compute_dtype)
    timings["load model"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    halves, random_weights = _load_inputs(config, info)
    timings["features"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    scorer = Scorer(model, batch_size=config.batch_size)
    for h in halves:
        h.probs = scorer.score_half(h.video, h.audio, stride=config.stride, progress=config.progress,
                                    what=f"scoring half {h.number}")
    timings["scores"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    _decode(config, info, halves)
    timings["spans"] = time.perf_counter() - t0
    result = Result(config, info, halves, {}, timings, random_weights)
    _write_outputs(result)
    return result


def _load_inputs(config: Config, info: dict) -> tuple[list[Half], bool]:
    """Feature streams to score (with ground truth when labels are known) and whether weights were random."""
    import dataset
    from common.ffmpeg import probe

    names = info["feature_names"]
    if config.game_dir:
        halves = []
        for number in (1, 2):
            video, audio = dataset.load_half(config.game_dir, number, features_video=names["video"],
                                             features_audio=names["audio"], pca=None,
                                             feature_dim=info["feature_dim"])
            halves.append(Half(number, video, audio))
        _check_width(halves[0], info, str(config.game_dir))
        return _with_truth(halves, config.game_dir, info), _random_in(config.game_dir / "extraction.json")
    if config.features_video:
        video = load_features(config.features_video)
        audio = load_features(config.features_audio)
        _check_lengths(video, audio, config, info["frames_per_second"])
        random_weights = any(_random_in(Path(f).parent / "extraction.json")
                             for f in (config.features_video, config.features_audio))
    else:
        from extract_features import extract_file

        extracted = extract_file(config.video, weights=config.weights, pca=config.pca, progress=config.progress)
        video, audio = extracted.video, extracted.audio
        random_weights = extracted.info.get("weights") == "random"
    if random_weights:
        warn_random()
    half = Half(config.half, video, audio)
    _check_width(half, info, str(config.features_video or config.video))
    if config.video:
        duration = probe(config.video).duration
        tokens = min(len(video), len(audio)) / info["frames_per_second"]
        if abs(tokens - duration) > max(5.0, 0.02 * duration):
            log.warning("%s lasts %.0f s but the features cover %.0f s: are they from this video?",
                        config.video, duration, tokens)
        half.duration = duration
    return _with_truth([half], config.ground_truth, info), random_weights


def _check_lengths(video: np.ndarray, audio: np.ndarray, config: Config, fps: float) -> None:
    """Refuse video and audio features of different inputs (lengths apart by more than MAX_LENGTH_GAP_SEC)."""
    gap = abs(len(video) - len(audio))
    if gap > MAX_LENGTH_GAP_SEC * fps:
        raise UserError(f"{config.features_video} has {len(video)} rows ({len(video) / fps:.1f} s) but "
                        f"{config.features_audio} has {len(audio)} ({len(audio) / fps:.1f} s): features of "
                        f"different videos? (at most {MAX_LENGTH_GAP_SEC:g} s apart)")
    if gap:
        log.warning("%s has %d rows, %s %d: scoring the first %d", config.features_video, len(video),
                    config.features_audio, len(audio), min(len(video), len(audio)))


def _check_width(half: Half, info: dict, what: str) -> None:
    for name, arr in (("video", half.video), ("audio", half.audio)):
        if arr.shape[1] != info["feature_dim"]:
            raise UserError(f"{what}: {name} features are {arr.shape[1]} wide but the model expects "
                            f"{info['feature_dim']} ({info['feature_names'][name]})")


def _random_in(extraction_json: Path) -> bool:
    try:
        return json.loads(extraction_json.read_text()).get("weights") == "random"
    except (OSError, ValueError, AttributeError):
        return False


def _with_truth(halves: list[Half], game_dir: Path | None, info: dict) -> list[Half]:
    """Attach the labelled events (mapped to the model's classes) of each half, when the folder has labels."""
    from highlights.spotting import match_class_map

    cmap = match_class_map(info["class_names"])
    if game_dir is None or cmap is None or not any((game_dir / n).is_file() for n in ("Labels-v2.json", "Labels.json")):
        return halves
    import dataset

    fps = info["frames_per_second"]
    events = dataset.usable_events(dataset.read_labels(game_dir), dataset.labels_path(game_dir), cmap,
                                   {h.number: h.duration or min(len(h.video), len(h.audio)) / fps for h in halves})
    for h in halves:
        h.events = sorted((e.position_ms / 1000, cmap.classes[cmap.label_to_index[e.label]]) for e in events
                          if e.half == h.number and cmap.label_to_index.get(e.label, 0) != 0)
    return halves


def _decode(config: Config, info: dict, halves: list[Half]) -> None:
    from highlights.decoder import decode, first_token_placement
    from highlights.spotting import nms_spots

    fps = info["frames_per_second"]
    for h in halves:
        h.duration = h.duration or len(h.probs) / fps
        probs = first_token_placement(h.probs, info["window_frames"]) if config.score_placement == "first" \
            else h.probs
        h.spans = decode(probs, info["class_names"], h.duration, config.decoder, fps=fps)
        h.spots = nms_spots(h.probs, info["class_names"], h.number, fps=fps, window_sec=config.nms_window_sec,
                            threshold=config.nms_threshold, rule=config.nms_rule)


def match_time(half: int, seconds: float) -> str:
    from highlights.spotting import game_time

    return game_time(half, seconds)


def spans_json(result: Result) -> dict:
    from highlights.spotting import soccernet_labels

    cfg, info = result.config, result.info
    labels = soccernet_labels(info["class_names"])
    names = list(info["class_names"])
    return {
        "source": {k: str(v) for k, v in (("video", cfg.video), ("features_video", cfg.features_video),
                                          ("features_audio", cfg.features_audio), ("game_dir", cfg.game_dir))
                   if v is not None},
        "model": {"path": str(cfg.model), **{k: info[k] for k in ("architecture", "pooling", "window_seconds",
                                                                  "frames_per_second", "class_names")}},
        "decoder": cfg.decoder.to_dict(),
        "spans": [{"half": h.number, "start": round(s.start, 3), "end": round(s.end, 3), "class": s.label,
                   "label": labels.get(names.index(s.label), s.label), "score": round(s.score, 6),
                   "peak": round(s.peak, 3), "match_time": match_time(h.number, s.peak), "classes": list(s.labels),
                   "events": [{"class": e.label, "label": labels.get(names.index(e.label), e.label),
                               "peak": round(e.peak, 3), "score": round(e.score, 6),
                               "match_time": match_time(h.number, e.peak)} for e in s.all_events()]}
                  for h in result.halves for s in h.spans],
    }


def _write_outputs(result: Result) -> None:
    """Every output of the run, made visible together (the reel first: the step most likely to fail). Files
    of an earlier run that this one does not write (a reel, when this run makes none) are removed."""
    from highlights.plots import plot_timeline
    from highlights.report import write_report
    from highlights.spotting import soccernet_labels, write_results_spotting

    cfg, out = result.config, result.config.out
    with OutputSet(out, OUTPUT_FILES) as files:
        t0 = time.perf_counter()
        _write_reel(result, files)
        result.timings["reel"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        write_json(files.path("spans.json"), spans_json(result))
        game = str(cfg.game_dir or cfg.video or cfg.features_video)
        write_results_spotting(files.path("results_spotting.json"), game,
                               [s for h in result.halves for s in h.spots], soccernet_labels(result.info["class_names"]))
        fps = result.info["frames_per_second"]
        probs, spans, truth = _joined_halves(result.halves, fps)
        plot_timeline(files.path("timeline.png"), probs, result.info["class_names"], fps, spans, truth,
                      title=f"{Path(game).name}: class scores, spans (shaded), ground truth (v)"
                      + (" - halves end to end" if len(result.halves) > 1 else ""))
        result.outputs.update(spans=out / "spans.json", spotting=out / "results_spotting.json",
                              timeline=out / "timeline.png", report=out / "report.html")
        write_report(files.path("report.html"), result, folder=out)
    result.timings["write"] = time.perf_counter() - t0


def _write_reel(result: Result, files: OutputSet) -> None:
    """The reel and its subtitles, when there is a video and something to show."""
    from highlights.reel import make_reel, plan_clips

    cfg = result.config
    if not (cfg.video and cfg.reel and (any(h.spans for h in result.halves) or cfg.intro_sec or cfg.outro_sec)):
        return
    h = result.halves[0]
    clips = plan_clips(h.spans, h.duration, intro_sec=cfg.intro_sec, outro_sec=cfg.outro_sec,
                       title=lambda s: " + ".join(f"{e.label} {match_time(h.number, e.peak)} ({e.score:.2f})"
                                                  for e in s.all_events()),
                       join_overlaps=not cfg.reel_repeat_overlaps)
    reel = make_reel(cfg.video, clips, files.path("highlights.mp4"), fast=cfg.fast, progress=cfg.progress,
                     srt_out=files.path("highlights.srt"))
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
    cfg, info = result.config, result.info
    lines = [f"model   {cfg.model} ({info['architecture']}, {info['pooling']}, {info['window_seconds']:g} s windows, "
             f"classes {', '.join(info['class_names'][1:])})"]
    for h in result.halves:
        lines.append(f"half {h.number}  {h.duration / 60:.1f} min, {len(h.probs)} tokens, {len(h.spots)} spots, "
                     f"{len(h.spans)} spans")
    spans = [(h.number, s) for h in result.halves for s in h.spans]
    for number, s in spans[:12]:
        lines.append(f"  {match_time(number, s.peak)}  {s.label:<10} {s.start:7.1f}-{s.end:7.1f} s  score {s.score:.2f}")
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
    print(f"{bar}\n!! WARNING: features were extracted with RANDOM network weights (test mode).\n"
          f"!! Scores, spans and the reel below say nothing about the match.\n{bar}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    args = parse_args(argv)
    existed = Path(args.out).exists()
    try:
        result = run(build_config(args))
    except BaseException:
        if not existed and Path(args.out).is_dir() and not any(Path(args.out).iterdir()):
            Path(args.out).rmdir()  # leave nothing behind, not even the folder we made
        raise
    print(summary(result))
    return 0


if __name__ == "__main__":
    run_cli(main)
