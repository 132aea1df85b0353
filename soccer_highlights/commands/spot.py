"""V&D's spotting flow over a game list: per-second scores -> NMS spots -> SoccerNet results_spotting.json per game,
then average-mAP (loose and tight, official rules) when the games have labels.

    python ClassificationSecondBased.py --testing data/listgame_Test_100.npy --model Model/vlad_best.keras \\
        --output Outputs/vlad
    python ClassificationSecondBased.py --testing listgame_Test_100.npy --featuresVideo ResNET --featuresAudio VGGish \\
        --architecture AudioVideoArchi5 --network VLAD --VLAD_k 512 --WindowSize 20 --PCA \\
        --output VLAD-Archi5-20sec-Spotting      # V&D's command: the model is found in --tflog (default Model)
    python ClassificationSecondBased.py --testing listgame_Test_100.npy --model M.keras --output OUT \\
        --num_shards 4 --shard_index 0   # or, in a Slurm array task, no shard flags: the task's place
A shard spots only its games (round-robin over the sorted game names) and leaves the average-mAP to
`evaluate.py` once every shard is done.
Writes `OUTPUT/<league>/<season>/<game>/results_spotting.json` (the SoccerNet layout, as `evaluate.py` and the
official evaluator expect), V&D's per-second scores `OUTPUT/<game>/<name>_Half_N.npy` ([seconds, classes]
probabilities; name = OUTPUT's last part), `OUTPUT/class_map.json` (the model's class map, which `evaluate.py`
reads) and `OUTPUT/average_mAP.json`. Classes, class map, feature names and recipe come from the model file.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from soccer_highlights import dataset
from soccer_highlights.archis.names import architecture_pooling, canonical_architecture, canonical_pooling
from soccer_highlights.common.atomic import (
    OutputSet,
    check_replaceable,
    keep_aside,
    record_files,
    save_npy,
    write_json,
)
from soccer_highlights.common.cli import (
    SYSTEM_HELP,
    Parser,
    RawHelpFormatter,
    add_keep_old_flag,
    add_progress_flags,
    add_spotting_flags,
    check_spotting_flags,
    command_name,
)
from soccer_highlights.common.constants import CLASS_MAP_FILE
from soccer_highlights.common.errors import UserError, run_cli
from soccer_highlights.common.features import read_record
from soccer_highlights.common.modelfile import read_spec
from soccer_highlights.common.quiet import import_tensorflow
from soccer_highlights.common.shards import add_shard_flags, resolve_shard, take_shard
from soccer_highlights.core.match import Scoring
from soccer_highlights.core.pipeline import Pipeline
from soccer_highlights.evaluation.metrics import evaluate_games
from soccer_highlights.spotting.spots import nms_spots, write_results_spotting

if TYPE_CHECKING:
    from soccer_highlights.common.modelspec import ModelSpec
    from soccer_highlights.dataset import ClassMap
    from soccer_highlights.spotting.spots import Spot


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = Parser(
        command="soccer-spot",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=RawHelpFormatter,
    )
    games = p.add_argument_group("games")
    games.add_argument("--testing", required=True, help="game list .npy (paths relative to its folder)")
    games.add_argument("--dataset_root", help="folder the list's game paths are relative to (default: the list's)")
    games.add_argument("--featuresVideo", help="video feature name (default: the model's, e.g. ResNET_TF2_PCA512)")
    games.add_argument("--featuresAudio", help="audio feature name (default: the model's, e.g. VGGish)")
    games.add_argument("--PCA", action="store_true", help="with --featuresVideo: use its PCA512 variant")
    model = p.add_argument_group("model")
    model.add_argument(
        "--model",
        help=".keras model from ClassificationMinuteBased.py (default: the newest "
        "<tflog>/*_best.keras whose architecture, network, VLAD_k and WindowSize match the flags)",
    )
    model.add_argument(
        "--class_map",
        help="highlight | v1 | v2 | JSON (default: the map recorded in the model; a flag must agree with it)",
    )
    vd = p.add_argument_group("V&D's flags (with --model they are redundant: checked against the model file)")
    vd.add_argument("--architecture", help="architecture the model must be (canonical or original name)")
    vd.add_argument("--network", help="pooling the model must use (VLAD, RVLAD, ...)")
    vd.add_argument("--VLAD_k", type=int, help="clusters the model must have")
    vd.add_argument("--WindowSize", type=float, help="window seconds the model must use")
    vd.add_argument("--tflog", default="Model", help="folder searched for the model when --model is not given")
    vd.add_argument("--outputPrefix", help="with --tflog: take <tflog>/<outputPrefix>_best.keras")
    vd.add_argument("--GPU", type=int, default=-1, help="ID of the GPU to use (-1: every visible GPU)")
    vd.add_argument("--loglevel", default="WARNING", help="logging level")
    vd.add_argument("--system", default="linux", choices=("linux", "windows"), help=SYSTEM_HELP)
    vd.add_argument(
        "--FTP",
        action="store_true",
        help="accepted: V&D fetched the games from its FTP server first; here they are read where the list says",
    )
    vd.add_argument(
        "--pooling_rule",
        default="original",
        choices=("original", "network"),
        help="how --network maps to the model's pooling (as in training; see ClassificationMinuteBased.py)",
    )
    outputs = p.add_argument_group("outputs")
    outputs.add_argument("--output", help="output tree (default: Outputs/<model name>)")
    add_keep_old_flag(outputs)
    add_spotting_flags(p)
    add_shard_flags(p)
    add_progress_flags(p)
    return p.parse_args(argv)


def _output_name(list_path: Path, base: Path, game: Path) -> str:
    """The game's path below `base`, which is also its folder below the output root: refused when it would
    leave that root (`..`, an absolute path) or is empty."""
    rel = Path(os.path.relpath(game, base)) if game.is_absolute() == base.is_absolute() else game
    if rel.is_absolute() or ".." in rel.parts or str(rel) in ("", "."):
        raise UserError(
            f"{list_path}: game {str(game)!r} is not a folder below {base} (its outputs would go outside the output "
            "folder)"
        )
    return str(rel)


def spot_games(args: argparse.Namespace) -> tuple[Path, list[str], ClassMap]:
    """Write results_spotting.json for every game of the list; return (output root, game names, class map)."""

    list_path = Path(args.testing)
    games = dataset.read_game_list(list_path, args.dataset_root)
    base = Path(args.dataset_root) if args.dataset_root else list_path.parent
    names = [_output_name(list_path, base, g) for g in games]
    num_shards, index = resolve_shard(args.num_shards, args.shard_index)
    mine = take_shard(range(len(games)), num_shards, index, key=lambda i: names[i])
    games, names = [games[i] for i in mine], [names[i] for i in mine]
    check_spotting_flags(args)
    from tqdm import tqdm

    import_tensorflow(args.verbose)  # before anything imports Keras (finding the model may)
    model_path = find_model(args)
    out = Path(args.output) if args.output else Path("Outputs") / model_path.stem
    _check_ours(out, names, args.keep_old)  # before any work: a file of the user's is never replaced
    check_agrees(args, read_spec(model_path), model_path)  # before the weights are read

    scoring = Scoring(
        class_map=args.class_map, compute_dtype=args.compute_dtype, windows_per_call=args.windows_per_call
    )
    session = Pipeline(model_path, scoring=scoring, verbose=args.verbose)
    cmap = session.cmap
    if cmap is None:
        raise UserError(
            f"{model_path}: records no class map and its classes {list(session.spec.class_names)} match no "
            "built-in one: give --class_map"
        )
    for game, name in zip(tqdm(games, desc="games", unit="game", disable=args.quiet), names, strict=True):
        with OutputSet(out / name, _game_outputs(out)) as files:  # a game's files appear together, or none (Ctrl-C)
            spots = spot_game(args, session, game, name, files)
            write_results_spotting(files.path("results_spotting.json"), name, spots, cmap.index_to_label)
    write_json(out / CLASS_MAP_FILE, cmap.to_json())  # evaluate.py reads the classes from here
    record_files(out, [CLASS_MAP_FILE])
    return out, names, cmap


def _game_outputs(out: Path) -> list[str]:
    """The files spotting writes into each game's folder of the output tree."""
    return ["results_spotting.json", *(f"{out.resolve().name}_Half_{half}.npy" for half in (1, 2))]


def _check_ours(out: Path, names: list[str], keep_old: bool) -> None:
    """UserError before any work when a file the run writes is there and no run of this project wrote it as it is
    (`common.atomic.check_replaceable`); with `keep_old` each such file is renamed to NAME.old-N.EXT at once."""
    folders = [(out / name, _game_outputs(out)) for name in names] + [(out, [CLASS_MAP_FILE, "average_mAP.json"])]
    for folder, files in folders:
        for other in check_replaceable(folder, files, keep_old):
            keep_aside(folder / other)


def spot_game(args: argparse.Namespace, session: Pipeline, game: Path, name: str, files: OutputSet) -> list[Spot]:
    """The spots of both halves of one game; V&D's per-second scores of each half written into `files` (the game's
    outputs under `OUTPUT/name`)."""

    spec = session.spec
    session.check_record(read_record(game), str(game))
    features = (args.featuresVideo or spec.feature_names["video"], args.featuresAudio or spec.feature_names["audio"])
    spots = []
    for half in (1, 2):
        video, audio = dataset.load_half(
            game, half, *features, pca=args.PCA if args.featuresVideo else None, feature_dim=spec.feature_dim
        )
        probs = session.scorer.score_half(
            video, audio, stride=args.stride, progress=not args.quiet, what=f"{name} half {half}"
        )
        scores = files.path(files.names[half])  # <OUTPUT name>_Half_<half>.npy (`_game_outputs`)
        save_npy(scores, per_second(probs, spec.tokens_per_second))
        spots += nms_spots(
            probs,
            spec.class_names,
            half,
            tokens_per_second=spec.tokens_per_second,
            window_sec=args.nms_window,
            threshold=args.nms_threshold,
            rule=args.nms_rule,
        )
    return spots


def _spec_of(path: Path) -> ModelSpec | None:
    """The archis spec stored in a .keras file (no weights loaded), or None for a file that is not one."""
    try:
        return read_spec(path)
    except UserError:
        return None


def _wanted(args: argparse.Namespace) -> dict:
    """The model settings V&D's flags ask for (canonical names), only those given."""

    pooling = args.network and (
        architecture_pooling(args.architecture, args.network, args.pooling_rule)
        if args.architecture
        else canonical_pooling(args.network)
    )
    wanted = {
        "architecture": args.architecture and canonical_architecture(args.architecture),
        "pooling": pooling,
        "vlad_k": args.VLAD_k,
        "window_seconds": args.WindowSize and float(args.WindowSize),
    }
    return {k: v for k, v in wanted.items() if v is not None}


def find_model(args: argparse.Namespace) -> Path:
    """--model; else, as V&D did, the training run's model in --tflog: <outputPrefix>_best.keras, or the newest
    *_best.keras whose spec matches --architecture, --network, --VLAD_k and --WindowSize."""
    if args.model:
        path = Path(args.model)
        if not path.is_file():
            raise UserError(f"{path}: no such model file")
        return path
    tflog = Path(args.tflog)
    if args.outputPrefix:
        path = tflog / f"{args.outputPrefix}_best.keras"
        if not path.is_file():
            raise UserError(
                f"{path}: no such model file (train with --tflog {tflog} --outputPrefix "
                f"{args.outputPrefix}, or give --model)"
            )
        return path
    wanted = _wanted(args)
    found = [
        p
        for p in tflog.glob("*_best.keras")
        if (spec := _spec_of(p)) is not None and all(getattr(spec, k) == v for k, v in wanted.items())
    ]
    if not found:
        asked = ", ".join(f"{k} {v}" for k, v in wanted.items()) or "any model"
        raise UserError(f"{tflog}: no trained model (*_best.keras) with {asked}; give --model or --tflog")
    path = max(found, key=lambda p: p.stat().st_mtime)
    if len(found) > 1:
        logging.warning("%d models in %s match; using the newest, %s", len(found), tflog, path.name)
    print(f"model: {path}")
    return path


def check_agrees(args: argparse.Namespace, spec: ModelSpec, model_path: Path) -> None:
    """V&D's model flags, when given, must describe the model file (they cannot change it)."""
    diff = [f"{k} {v} (model: {getattr(spec, k)})" for k, v in _wanted(args).items() if getattr(spec, k) != v]
    if diff:
        raise UserError(f"{model_path}: the flags ask for {', '.join(diff)}")


def per_second(probs: np.ndarray, tokens_per_second: float) -> np.ndarray:
    """One row per whole second of the half (its first token), as V&D saved its scores: int(T / rate) rows."""
    seconds = int(len(probs) // tokens_per_second)
    return np.ascontiguousarray(probs[(np.arange(seconds) * tokens_per_second).astype(np.int64)], dtype=np.float32)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    level = getattr(logging, args.loglevel.upper(), None)
    if not isinstance(level, int):
        raise UserError(f"--loglevel {args.loglevel!r} is not a logging level")
    logging.basicConfig(level=level, format="%(levelname)s: %(message)s")
    if args.GPU >= 0:  # before TensorFlow is imported
        os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
        os.environ["CUDA_VISIBLE_DEVICES"] = str(args.GPU)
    out, names, cmap = spot_games(args)
    print(f"{len(names)} games spotted: {out}/<game>/results_spotting.json")
    base = Path(args.dataset_root) if args.dataset_root else Path(args.testing).parent
    num_shards, index = resolve_shard(args.num_shards, args.shard_index)
    if num_shards > 1:
        print(
            f"shard {index}/{num_shards}: average-mAP skipped (it needs every game); once all shards are done: "
            f"{command_name('soccer-evaluate')} --labels {base} --predictions {out} --game_list {args.testing}"
        )
        return 0

    if not all(dataset.labels_path(base / n) for n in names):
        print("some games have no labels: average-mAP skipped")
        return 0

    report = {}
    for metric in ("loose", "tight"):
        scores = evaluate_games(base, out, names, cmap.classes, cmap.label_to_index, metric=metric)
        report[metric] = scores.to_json()
        per_class = ", ".join(
            f"{c} {100 * v:.1f}" for c, v in zip(scores.class_names, scores.a_mAP_per_class, strict=True)
        )
        print(f"average-mAP {metric:<5} {100 * scores.a_mAP:5.1f}   ({per_class})")
    write_json(out / "average_mAP.json", report)
    record_files(out, ["average_mAP.json"])
    return 0


if __name__ == "__main__":
    run_cli(main)
