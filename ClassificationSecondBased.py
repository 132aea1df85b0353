"""V&D's spotting flow over a game list: per-second scores -> NMS spots -> SoccerNet results_spotting.json per game,
then average-mAP (loose and tight, official rules) when the games have labels.

    python ClassificationSecondBased.py --testing data/listgame_Test_100.npy --model Model/vlad_best.keras \
        --output Outputs/vlad
Writes `OUTPUT/<league>/<season>/<game>/results_spotting.json` (the SoccerNet layout, as `evaluate.py` and the
official evaluator expect) and `OUTPUT/average_mAP.json`.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from common.atomic import write_json
from common.errors import UserError, run_cli


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--testing", required=True, help="game list .npy (paths relative to its folder)")
    p.add_argument("--model", required=True, help=".keras model from ClassificationMinuteBased.py")
    p.add_argument("--dataset_root", help="folder the list's game paths are relative to (default: the list's)")
    p.add_argument("--output", help="output tree (default: Outputs/<model name>)")
    p.add_argument("--featuresVideo", help="video feature name (default: the model's, e.g. ResNET_TF2_PCA512)")
    p.add_argument("--featuresAudio", help="audio feature name (default: the model's, e.g. VGGish)")
    p.add_argument("--PCA", action="store_true", help="with --featuresVideo: use its PCA512 variant")
    p.add_argument("--class_map", help="highlight | v1 | v2 | JSON (default: the built-in map of the model's classes)")
    p.add_argument("--batch_size", type=int, default=256, help="windows per model call")
    p.add_argument("--stride", type=int, default=2, help="tokens between window centres (2 = one per second)")
    p.add_argument("--nms_window", type=float, default=60.0, help="NMS window, seconds (V&D: 60)")
    p.add_argument("--nms_threshold", type=float, default=0.0, help="NMS threshold on the probability")
    p.add_argument("--compute_dtype", choices=("float32", "bfloat16"), help="default: the model's")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p.parse_args(argv)


def spot_games(args: argparse.Namespace) -> tuple[Path, list[str], object]:
    """Write results_spotting.json for every game of the list; return (output root, game names, class map)."""
    import dataset
    from highlights import spotting

    list_path = Path(args.testing)
    games = dataset.read_game_list(list_path, args.dataset_root)
    base = Path(args.dataset_root) if args.dataset_root else list_path.parent
    names = [str(g.relative_to(base)) for g in games]
    model_path = Path(args.model)
    if not model_path.is_file():
        raise UserError(f"{model_path}: no such model file")
    if args.batch_size < 1 or args.stride < 1:
        raise UserError("--batch_size and --stride must be >= 1")
    spotting.check_nms(args.nms_window, args.nms_threshold)
    out = Path(args.output) if args.output else Path("Outputs") / model_path.stem

    from tqdm import tqdm

    import archis
    from highlights.spotting import Scorer, match_class_map, nms_spots, with_compute_dtype, write_results_spotting

    model = archis.load_model(model_path)
    info = archis.model_info(model)
    cmap = dataset.load_class_map(args.class_map) if args.class_map else match_class_map(info["class_names"])
    if cmap is None or list(cmap.classes) != list(info["class_names"]):
        raise UserError(f"{model_path}: classes {info['class_names']} need a matching --class_map")
    feature_video = args.featuresVideo or info["feature_names"]["video"]
    feature_audio = args.featuresAudio or info["feature_names"]["audio"]
    pca = args.PCA if args.featuresVideo else None
    scorer = Scorer(with_compute_dtype(model, args.compute_dtype), batch_size=args.batch_size)
    fps = info["frames_per_second"]
    for game, name in zip(tqdm(games, desc="games", unit="game", disable=args.quiet), names, strict=True):
        spots = []
        for half in (1, 2):
            video, audio = dataset.load_half(game, half, feature_video, feature_audio, pca=pca,
                                             feature_dim=info["feature_dim"])
            probs = scorer.score_half(video, audio, stride=args.stride, progress=not args.quiet,
                                      what=f"{name} half {half}")
            spots += nms_spots(probs, info["class_names"], half, fps=fps, window_sec=args.nms_window,
                               threshold=args.nms_threshold)
        write_results_spotting(out / name / "results_spotting.json", name, spots, cmap.index_to_label)
    return out, names, cmap


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    args = parse_args(argv)
    out, names, cmap = spot_games(args)
    print(f"{len(names)} games spotted: {out}/<game>/results_spotting.json")
    base = Path(args.dataset_root) if args.dataset_root else Path(args.testing).parent
    if not all(any((base / n / f).is_file() for f in ("Labels-v2.json", "Labels.json")) for n in names):
        print("some games have no labels: average-mAP skipped")
        return 0
    from highlights.metrics import evaluate_games

    report = {}
    for metric in ("loose", "tight"):
        scores = evaluate_games(base, out, names, cmap.classes, cmap.label_to_index, metric=metric)
        report[metric] = scores.to_json()
        per_class = ", ".join(f"{c} {100 * v:.1f}" for c, v in zip(scores.class_names, scores.a_mAP_per_class,
                                                                   strict=True))
        print(f"average-mAP {metric:<5} {100 * scores.a_mAP:5.1f}   ({per_class})")
    write_json(out / "average_mAP.json", report)
    return 0


if __name__ == "__main__":
    run_cli(main)
