"""From match videos (or their features) to highlights: scores, spots, spans, a timeline and the reel.

    python inference.py --model M.keras --out DIR match.mp4 videos/ list.txt   # many matches, one process
    python inference.py --model M.keras --out DIR --video match.mp4
    python inference.py --model M.keras --out DIR --video match.mp4 --features_video 1_ResNET_TF2_PCA512.npy \
        --features_audio 1_VGGish.npy          # reuse features already extracted from that video
    python inference.py --model M.keras --out DIR --features_video F.npy --features_audio F.npy
    python inference.py --model M.keras --out DIR --game_dir ROOT/league/season/game   # both halves + labels
    python inference.py --model M.keras --out DIR --live udp://127.0.0.1:5000   # a live stream (soccer_highlights.live)

Inputs given without a flag (video files, folders of videos, .txt lists of videos) are scored in one process
with the networks built once; each video gets its own folder DIR/<video name>/, a failing video is reported
and the others go on. Features that `python -m extract_features --video_list` wrote for a video (`<stem>/1_*.npy`
beside it) are reused instead of extracted again when the extraction.json beside them describes both (their
token count, their size and SHA-256) and was made with the model's recipe; else the video is
extracted again, with one line saying why. Window length, feature rate, classes, class map and feature
recipe come from the model file. Writes `spans.json`, `results_spotting.json` (SoccerNet labels),
`timeline.png`, `report.html` (player, timeline and spans in one page), and `highlights.mp4` + `.srt` when
there is a video, all renamed into place together when complete (files an earlier run recorded in
`.outputs.json`, unchanged since, that this run does not write are removed; a file of yours with an output's
name refuses the run before any work, or is kept as NAME.old-N.EXT with --keep_old); a run over several videos
adds `DIR/index.html`
linking each report. Inputs are checked before anything is computed or written; an input that would be one
of the outputs is refused. `--num_shards N --shard_index i` (or, in a Slurm array task, the task's place) does
only shard i's videos; its index.html links every report already in DIR.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from soccer_highlights.common.atomic import fingerprint
from soccer_highlights.common.cli import (
    Parser,
    RawHelpFormatter,
    add_extraction_flags,
    add_keep_old_flag,
    add_progress_flags,
    add_spotting_flags,
    check_spotting_flags,
)
from soccer_highlights.common.constants import FEATURE_NAMES
from soccer_highlights.common.errors import UserError, run_cli
from soccer_highlights.common.features import read_record, recipe_mismatch, recipe_of
from soccer_highlights.common.modelfile import read_spec
from soccer_highlights.common.names import unique_names
from soccer_highlights.common.shards import add_shard_flags, resolve_shard, take_shard
from soccer_highlights.core.match import Match, Scoring
from soccer_highlights.core.pipeline import Pipeline
from soccer_highlights.extract_features import ExtractConfig
from soccer_highlights.extract_features.batch import expand_inputs, feature_home
from soccer_highlights.highlights.decoder import DecoderConfig
from soccer_highlights.live.runner import LiveSettings, run_live
from soccer_highlights.writers.batch import Job, check_job, run_and_write, run_many
from soccer_highlights.writers.outputs import Output, summary


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = Parser(
        command="soccer-highlights",
        description=__doc__.split("\n\n")[0],
        formatter_class=RawHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    model = p.add_argument_group("model")
    model.add_argument("--model", required=True, help="a .keras model saved by training (or archis)")
    model.add_argument("--class_map", help="highlight | v1 | v2 | JSON: must agree with the map the model records")
    io = p.add_argument_group("inputs and outputs")
    io.add_argument(
        "inputs",
        nargs="*",
        metavar="INPUT",
        help="video files, folders of videos, .txt lists of videos (one output folder each)",
    )
    io.add_argument("--out", required=True, help="output folder (with INPUTs: one folder per video inside it)")
    add_keep_old_flag(io)
    src = p.add_argument_group("single input (instead of INPUTs; outputs go straight into --out)")
    src.add_argument("--video", help="match video (one half or a whole match)")
    src.add_argument("--features_video", help="video features [T, D] .npy (with --features_audio)")
    src.add_argument("--features_audio", help="audio features [T, D] .npy (with --features_video)")
    src.add_argument("--game_dir", help="SoccerNet game folder: both halves; its labels go on the timeline")
    src.add_argument("--live", metavar="SOURCE", help="a live stream (udp://, srt://, rtmp://, .m3u8, a growing file)")
    src.add_argument("--ground_truth", help="game folder whose labels (of --half) are shown for a video/features input")
    src.add_argument("--half", type=int, default=1, choices=(1, 2), help="half number written for a video/features")
    _decoder_flags(p)
    add_spotting_flags(p)
    _extract_flags(p)
    _reel_flags(p)
    add_shard_flags(p, "INPUT videos (one folder each under --out)")
    _live_flags(p)
    add_progress_flags(p)
    return p.parse_args(argv)


def _decoder_flags(p: argparse.ArgumentParser) -> None:
    """How class scores become spans (the seed's peak-picking decoder)."""
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


def _extract_flags(p: Parser) -> None:
    """How a --video without features is turned into features: the extraction flags this command passes on (the
    same declaration as soccer-extract's; its --compute_dtype is the spotting model's, see add_spotting_flags)."""
    flags = ("weights", "pca", "feature_runtime", "feature_dtype", "int8_model")
    add_extraction_flags(p, flags, title="feature extraction (INPUT videos or --video without features)")


def _reel_flags(p: argparse.ArgumentParser) -> None:
    """How spans become the MP4 reel."""
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


def _live_flags(p: argparse.ArgumentParser) -> None:
    """How a live stream (--live) is recorded."""
    live = p.add_argument_group("live (--live)")
    live.add_argument("--live_segment", type=float, default=1.0, help="seconds per recorded segment (at keyframes)")
    live.add_argument("--live_stall", type=float, default=3.0, help="seconds without data before reconnecting")
    live.add_argument("--live_end_after", type=float, default=30.0, help="seconds without data that end the stream")
    live.add_argument("--live_format", help="ffmpeg input format of SOURCE (a capture device: v4l2, alsa, ...)")
    live.add_argument(
        "--live_reencode",
        action="store_true",
        help="record H.264 + AAC (sources that MPEG-TS cannot carry as they are)",
    )


@dataclass(frozen=True)
class Plan:
    """One run of the command: what every match shares (the model, how it scores, how features are extracted,
    where and how files are written) and its matches, each with its own output folder."""

    model: Path
    scoring: Scoring
    extraction: Callable[[], ExtractConfig]  # checked when a match needs its features extracted
    output: Output
    labels: Path | None
    half: int
    verbose: bool
    jobs: tuple[Job, ...] = ()

    def check_job(self, job: Job) -> None:
        """One job's checks before anything loads: its match and output folder, and the extraction settings when
        its features are to be extracted (so a bad setting fails each such video, and the others go on)."""
        check_job(job)
        if job.match.kind == "video":
            self.extraction()

    def pipeline(self, *, extract: bool = False) -> Pipeline:
        """The model loaded, with the extraction settings when a match (or the stream: `extract`) needs them."""
        extract = extract or any(j.match.kind == "video" for j in self.jobs)
        return Pipeline(
            self.model,
            scoring=self.scoring,
            extraction=self.extraction() if extract else None,
            progress=self.output.progress,
            verbose=self.verbose,
        )


def build_config(args: argparse.Namespace) -> Plan:
    """Check the arguments and the one input of the flags without TensorFlow; UserError on the first problem."""
    feats = [args.features_video, args.features_audio]
    plan = _shared_plan(args)
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
    if args.game_dir:
        match = Match.game(args.game_dir)
    elif all(feats):
        match = Match.features(*feats, video=args.video, labels=plan.labels, half=plan.half)
    else:
        match = Match.video(args.video, labels=plan.labels, half=plan.half)
    job = Job(match, plan.output)
    plan.check_job(job)  # its settings checked before anything loads
    return dataclasses.replace(plan, jobs=(job,))


def build_configs(args: argparse.Namespace) -> Plan:
    """One match per video named by the INPUTs, each with its own folder under --out named after the video
    (`common.names.unique_names`: safe, and the same whatever the order of the inputs); features already extracted
    beside a video are reused. The videos themselves are checked one by one (`writers.batch.check_job`), so one bad
    file costs only its own result."""
    if args.video or args.features_video or args.features_audio or args.game_dir:
        raise UserError("give INPUTs or one of --video / --features_* / --game_dir, not both")
    videos = _distinct(expand_inputs(args.inputs))  # the inputs first: a missing video is the first error
    plan = _shared_plan(args)
    try:
        spec = read_spec(plan.model)
        names, recipe = spec.feature_names, spec.feature_recipe
    except UserError:  # a bad model file is reported when it is loaded, after the videos are checked
        names, recipe = FEATURE_NAMES, None
    matches = [_video_match(video, names, recipe, plan) for video in videos]
    read = tuple(p for m in matches for p in m.inputs())
    output = dataclasses.replace(plan.output, root=plan.output.out, protected=(*plan.output.protected, *read))
    folders = unique_names(videos, reserved=("index.html",))
    jobs = tuple(
        Job(m, dataclasses.replace(output, out=plan.output.out / name))
        for m, name in zip(matches, folders, strict=True)
    )
    return dataclasses.replace(plan, jobs=jobs)


def _video_match(video: Path, names: Mapping[str, str], recipe: Mapping[str, str] | None, plan: Plan) -> Match:
    """A video of the INPUTs, with the features that `python -m extract_features --video_list` wrote for it (see
    `feature_home`) when both files are there and `unusable_features` finds nothing wrong with them (else they
    are extracted again, with one line saying why)."""
    folder, prefix = feature_home(video)
    files = [folder / f"{prefix}_{names[m]}.npy" for m in ("video", "audio")]
    if all(f.is_file() for f in files):
        problem = unusable_features(folder, prefix, files, recipe)
        if problem is None:
            return Match.features(*files, video=video, labels=plan.labels, half=plan.half)
        logging.getLogger("inference").warning(
            "%s: the features beside it are not used (%s): extracted again", video, problem
        )
    return Match.video(video, labels=plan.labels, half=plan.half)


def unusable_features(folder: Path, prefix: str, files: Sequence[Path], recipe: Mapping[str, str] | None) -> str | None:
    """Why the feature files `files` of half `prefix` in `folder` must not be used for the video beside them, or
    None: extraction.json there must describe both (listed as that half's files, each with the half's token count
    and the size and SHA-256 the extraction recorded; in a record of an earlier version without them, neither
    written after the record) and the model's `recipe`. A pair from two different extractions, a file
    replaced since, or features of another recipe would give scores of something else."""
    record = read_record(folder)
    half = (record or {}).get("halves", {}).get(prefix) if isinstance(record, dict) else None
    if not isinstance(half, dict):
        return f"{folder / 'extraction.json'} does not describe half {prefix}"
    listed = half.get("files", {})
    listed = set(listed.values()) if isinstance(listed, dict) else set()
    prints = half.get("fingerprints")
    prints = prints if isinstance(prints, dict) else {}
    record_time = (folder / "extraction.json").stat().st_mtime
    for f in files:
        if f.name not in listed:
            return f"{f.name} is not among the files extraction.json lists"
        recorded = prints.get(f.name)
        if isinstance(recorded, dict):  # size, then SHA-256, as the extraction recorded them
            if f.stat().st_size != recorded.get("size"):
                return f"{f.name} is {f.stat().st_size} bytes, extraction.json recorded {recorded.get('size')}"
            if fingerprint(f).get("sha256") != recorded.get("sha256"):
                return f"{f.name} is not the file extraction.json recorded (its SHA-256 differs)"
        elif f.stat().st_mtime > record_time + 1:  # an extraction.json of an earlier version: no fingerprints
            return f"{f.name} was written after extraction.json"
        try:
            rows = np.load(f, mmap_mode="r", allow_pickle=False).shape[0]
        except (OSError, ValueError, IndexError) as exc:
            return f"{f.name}: not a feature array ({exc})"
        if rows != half.get("tokens"):
            return f"{f.name} has {rows} rows, extraction.json says {half.get('tokens')} tokens"
    problem = recipe_mismatch(recipe, recipe_of(record))
    return f"made with another recipe: {problem}" if problem else None


def _distinct(videos: list[Path]) -> list[Path]:
    """The videos, each once (a video named twice, e.g. by a folder and a list, is done once, with a warning)."""
    seen, out = set(), []
    for video in videos:
        key = video.resolve()
        if key in seen:
            logging.getLogger("inference").warning("%s: given more than once, done once", video)
            continue
        seen.add(key)
        out.append(video)
    return out


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


def _shared_plan(args: argparse.Namespace) -> Plan:
    """The settings every input shares, checked (model file, numbers, decoder, ground truth, PCA file, extraction)."""
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
    scoring = Scoring(
        stride=args.stride,
        windows_per_call=args.windows_per_call,
        compute_dtype=args.compute_dtype,
        score_placement=args.score_placement,
        nms_window_sec=args.nms_window,
        nms_threshold=args.nms_threshold,
        nms_rule=args.nms_rule,
        decoder=decoder,
        class_map=args.class_map,
    )
    extraction = functools.partial(
        ExtractConfig,
        weights=args.weights,
        pca=args.pca or None,
        runtime=args.feature_runtime,
        compute_dtype=args.feature_dtype,
        int8_model=args.int8_model,
    )
    output = Output(
        Path(args.out),
        reel=not args.no_reel,
        fast=args.fast,
        intro_sec=args.intro_sec,
        outro_sec=args.outro_sec,
        reel_repeat_overlaps=args.reel_repeat_overlaps,
        progress=not args.quiet,
        protected=tuple(p for p in (model, _path(args.pca)) if p),
        keep_old=args.keep_old,
    )
    return Plan(model, scoring, extraction, output, _path(args.ground_truth), args.half, args.verbose)


def _override_decoder(decoder: Any, args: argparse.Namespace) -> Any:
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


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    args = parse_args(argv)
    if args.live:
        return _run_live(args)
    if args.inputs:
        plan = build_configs(args)
        num_shards, index = resolve_shard(args.num_shards, args.shard_index)
        mine = take_shard(list(plan.jobs), num_shards, index, key=lambda j: j.output.out)
        if not mine:
            print(f"shard {index}/{num_shards}: no videos (fewer videos than shards)", file=sys.stderr)
            return 0
        return run_many(mine, plan.pipeline, index_of=plan.jobs if num_shards > 1 else None, check=plan.check_job)
    if args.num_shards is not None or args.shard_index is not None:
        raise UserError("--num_shards / --shard_index split INPUTs (videos, folders, lists); give INPUTs")
    existed = Path(args.out).exists()
    try:
        plan = build_config(args)
        result, written = run_and_write(plan.pipeline(), plan.jobs[0])
    except BaseException:
        if not existed and Path(args.out).is_dir() and not any(Path(args.out).iterdir()):
            Path(args.out).rmdir()  # leave nothing behind, not even the folder we made
        raise
    print(summary(result, written))
    return 0


def _run_live(args: argparse.Namespace) -> int:
    if args.inputs or args.video or args.features_video or args.features_audio or args.game_dir:
        raise UserError("--live is the one input: no INPUTs, --video, --features_* or --game_dir with it")
    if args.num_shards is not None or args.shard_index is not None:
        raise UserError("--num_shards / --shard_index split INPUTs; a --live stream is one input")
    plan = _shared_plan(args)
    if plan.scoring.score_placement != "centre":
        raise UserError("--live decodes the scores of centred windows: --score_placement first is offline only")
    live = LiveSettings(
        args.live, args.live_segment, args.live_stall, args.live_end_after, args.live_format, args.live_reencode
    )
    plan.extraction()  # checked before anything loads
    result, written = run_live(
        functools.partial(plan.pipeline, extract=True), live, plan.output, half=plan.half, model=plan.model
    )
    print(summary(result, written))
    return 0


if __name__ == "__main__":
    run_cli(main)
