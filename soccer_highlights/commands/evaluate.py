"""Score a folder tree of SoccerNet `results_spotting.json` files: average-mAP as the official evaluator.

    python evaluate.py --labels ROOT --predictions DIR --game_list listgame_Test_100.npy \\
        [--metric loose|tight] [--model M.keras | --class_map highlight|v1|v2|FILE.json] [--out OUT.json] \\
        [--plot OUT.png]

Labels: ROOT/<game>/Labels-v2.json (else Labels.json); predictions: DIR/<game>/results_spotting.json, for
each <game> of the list. A game without a prediction file is scored as one with no predictions (warning).
Prints per-class and overall average-mAP (percent); the JSON holds the official keys (`a_mAP`,
`a_mAP_per_class`, visibility variants) as fractions, plus the mAP(delta) curve.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from soccer_highlights import dataset
from soccer_highlights.common import cli
from soccer_highlights.common.atomic import check_apart, check_output_file, read_json, write_json
from soccer_highlights.common.constants import CLASS_MAP_FILE, LABEL_FILES
from soccer_highlights.common.errors import UserError, run_cli
from soccer_highlights.common.modelfile import read_spec
from soccer_highlights.evaluation.metrics import evaluate_games
from soccer_highlights.spotting.spots import model_class_map

RENAMED = {"--list": "--game_list", "--json": "--out"}  # earlier spellings, accepted until the next release


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = cli.Parser(
        command="soccer-evaluate",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=cli.RawHelpFormatter,
    )
    inputs = ap.add_argument_group("inputs")
    inputs.add_argument("--labels", required=True, type=Path, help="SoccerNet root with the label files")
    inputs.add_argument("--predictions", required=True, type=Path, help="root of the results_spotting.json tree")
    inputs.add_argument("--game_list", required=True, type=Path, help="game list file (listgame_*.npy or a text file)")
    inputs.add_argument(
        "--allow_missing",
        action="store_true",
        help="score a game of the list without predictions as a game with none (default: an error)",
    )
    classes = ap.add_argument_group("classes")
    classes.add_argument("--model", type=Path, help="a .keras model: its recorded class map is used")
    classes.add_argument(
        "--class_map",
        help="highlight | v1 | v2 | FILE.json (default: the map of --model, else the "
        "class_map.json that ClassificationSecondBased.py wrote into --predictions, else highlight; "
        "a flag must agree with those)",
    )
    metric = ap.add_argument_group("metric")
    metric.add_argument(
        "--metric", default="loose", choices=["loose", "tight"], help="loose: delta 5..60 s; tight: delta 1..5 s"
    )
    metric.add_argument(
        "--framerate", type=float, default=2.0, help="frames per second of the binning, the official evaluator's"
    )
    outputs = ap.add_argument_group("outputs")
    outputs.add_argument("--out", type=Path, help="write the scores here (.json)")
    outputs.add_argument("--plot", type=Path, help="write a PNG of mAP against tolerance here")
    return cli.parse_args(ap, argv, RENAMED)


def format_table(scores) -> str:
    """Per-class and overall average-mAP, in percent."""
    lo, hi = scores.deltas[0], scores.deltas[-1]
    width = max(12, *(len(n) for n in scores.class_names))
    lines = [
        f"{scores.metric} average-mAP (tolerance {lo:g}-{hi:g} s) over {scores.n_games} games",
        f"{'class':<{width}} {'events':>7} {'preds':>7} {'a-mAP':>7} {'visible':>8} {'unshown':>8}",
    ]
    rows = zip(
        scores.class_names,
        scores.n_events,
        scores.n_predictions,
        scores.a_mAP_per_class,
        scores.a_mAP_per_class_visible,
        scores.a_mAP_per_class_unshown,
        strict=True,
    )
    lines += [
        f"{n:<{width}} {e:>7} {p:>7} {a * 100:>7.2f} {v * 100:>8.2f} {u * 100:>8.2f}" for n, e, p, a, v, u in rows
    ]
    lines.append(
        f"{'mean':<{width}} {sum(scores.n_events):>7} {sum(scores.n_predictions):>7} "
        f"{scores.a_mAP * 100:>7.2f} {scores.a_mAP_visible * 100:>8.2f} {scores.a_mAP_unshown * 100:>8.2f}"
    )
    return "\n".join(lines)


def game_names(list_path: Path, labels_root: Path) -> list[str]:
    """The list's games as paths relative to the labels root (the same relative path under predictions)."""

    names = []
    for game in dataset.read_game_list(list_path, labels_root):
        try:
            names.append(str(game.relative_to(labels_root)))
        except ValueError as exc:
            raise UserError(f"{list_path}: game {game} is not inside --labels {labels_root}") from exc
    return names


def choose_class_map(args: argparse.Namespace):
    """The class map of the model (--model) or of the predictions tree; --class_map must agree with it."""

    if args.model:
        cmap = model_class_map(read_spec(args.model), args.class_map, str(args.model))
        if cmap is None:
            raise UserError(
                f"{args.model}: records no class map and its classes match no built-in map; give --class_map"
            )
        return cmap
    recorded, source = None, None
    if (args.predictions / CLASS_MAP_FILE).is_file():
        path = args.predictions / CLASS_MAP_FILE
        recorded, source = dataset.class_map_from_json(read_json(path), str(path)), str(path)
    if args.class_map is None:
        return recorded or dataset.load_class_map("highlight")
    cmap = dataset.load_class_map(args.class_map)
    if recorded is not None and (cmap.classes != recorded.classes or cmap.label_to_index != recorded.label_to_index):
        raise UserError(f"--class_map {args.class_map}: disagrees with the class map {recorded.name!r} of {source}")
    return cmap


def _check_outputs_apart(args: argparse.Namespace, games: Sequence[str]) -> None:
    """--out and --plot must not be a file this run reads (the list, a label or prediction file, the class map
    of the predictions, the model): writing them would replace it."""

    read = [args.game_list, args.model, args.predictions / CLASS_MAP_FILE]
    for game in games:
        read += [args.labels / game / name for name in LABEL_FILES]
        read.append(args.predictions / game / "results_spotting.json")
    for path in (args.out, args.plot):
        if path is not None:
            check_apart(path.parent, [path.name], read)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.framerate > 0:
        raise UserError(f"--framerate must be > 0 frames per second, got {args.framerate}")
    for flag, folder in (("--labels", args.labels), ("--predictions", args.predictions)):
        if not folder.is_dir():
            raise UserError(f"{folder}: {flag} folder not found")

    for path in (args.out, args.plot):
        if path is not None:
            check_output_file(path)  # before the scoring, not after

    cmap = choose_class_map(args)
    games = game_names(args.game_list, args.labels)
    _check_outputs_apart(args, games)
    scores = evaluate_games(
        args.labels,
        args.predictions,
        games,
        cmap.classes,
        cmap.label_to_index,
        metric=args.metric,
        tokens_per_second=args.framerate,
        allow_missing=args.allow_missing,
    )
    print(format_table(scores))
    if args.out:
        write_json(
            args.out,
            {
                **scores.to_json(),
                "class_map": cmap.name,
                "labels": str(args.labels),
                "predictions": str(args.predictions),
                "list": str(args.game_list),
            },
        )
        print(f"scores -> {args.out}")
    if args.plot:
        from soccer_highlights.evaluation.plots import plot_map_vs_tolerance  # deferred: loads matplotlib (start-up)

        plot_map_vs_tolerance(args.plot, scores)
        print(f"plot -> {args.plot}")
    return 0


if __name__ == "__main__":
    run_cli(main)
