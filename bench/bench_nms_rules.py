"""Benchmark: average-mAP of the two spotting NMS rules (V&D's and the symmetric one) on generated data.

Generates SoccerNet-layout games (synthetic.py), trains `concat` NetVLAD with ClassificationMinuteBased.py,
then spots the test list with ClassificationSecondBased.py once per rule (and threshold) and prints
loose / tight average-mAP and the share of true events that lie in a half's first or last 30 s, where
V&D's rule never spots.

    flock /tmp/bench.lock .venv/bin/python bench/bench_nms_rules.py --work /tmp/nms_bench
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


def train(args: argparse.Namespace, lists: dict[str, str]) -> Path:
    from soccer_highlights.commands import train as cmb

    model = Path(args.work) / "model" / "nms_best.keras"
    if not model.is_file():
        cmb.main(
            [
                "--architecture",
                "concat",
                "--training",
                lists["Train"],
                "--validation",
                lists["Valid"],
                "--testing",
                lists["Test"],
                "--PCA",
                "--network",
                "VLAD",
                "--VLAD_k",
                "64",
                "--WindowSize",
                "20",
                "--batch_windows",
                "64",
                "--LR",
                "0.001",
                "--max_epoch",
                str(args.epochs),
                "--seed",
                "0",
                "--tflog",
                str(model.parent),
                "--cache_dir",
                str(Path(args.work) / "cache"),
                "--outputPrefix",
                "nms",
                "--formatdataset",
                "1",
                "--quiet",
            ]
        )
    return model


def edge_share(data: Path, games: list[str]) -> float:
    """Share of labelled events within 30 s of either end of their half (half length from its features)."""
    import numpy as np

    from soccer_highlights import dataset

    near, total = 0, 0
    for game in games:
        seconds = {h: len(np.load(data / game / f"{h}_VGGish.npy", mmap_mode="r")) / 2 for h in (1, 2)}
        for e in dataset.read_labels(data / game):
            t = e.position_ms / 1000
            near += t <= 30 or t >= seconds[e.half] - 30
            total += 1
    return near / max(total, 1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", default="nms_bench", help="folder for the data, the model and the outputs")
    p.add_argument("--games", type=int, default=30)
    p.add_argument("--half_minutes", type=float, default=10.0)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--thresholds", default="0,0.5")
    args = p.parse_args()

    from soccer_highlights import synthetic
    from soccer_highlights.commands import spot as csb

    data = Path(args.work) / "data"
    if not any(data.glob("listgame_Test_*.npy")):
        synthetic.generate_dataset(data, n_games=args.games, half_minutes=args.half_minutes, seed=0, progress=False)
    lists = {s: str(next(data.glob(f"listgame_{s}_*.npy"))) for s in ("Train", "Valid", "Test")}
    model = train(args, lists)
    rows = []
    for rule in ("vd", "symmetric"):
        for threshold in args.thresholds.split(","):
            out = Path(args.work) / f"spots_{rule}_{threshold}"
            csb.main(
                [
                    "--testing",
                    lists["Test"],
                    "--model",
                    str(model),
                    "--output",
                    str(out),
                    "--nms_rule",
                    rule,
                    "--nms_threshold",
                    threshold,
                    "--quiet",
                ]
            )
            report = json.loads((out / "average_mAP.json").read_text())
            spots = sum(len(json.loads(f.read_text())["predictions"]) for f in out.rglob("results_spotting.json"))
            rows.append((rule, threshold, report["loose"]["a_mAP"], report["tight"]["a_mAP"], spots))
    from soccer_highlights import dataset

    games = [str(g.relative_to(data)) for g in dataset.read_game_list(lists["Test"])]
    print(
        f"\n{len(games)} test games, {args.half_minutes:g}-minute halves; "
        f"{100 * edge_share(data, games):.1f} % of their events lie in a half's first "
        f"or last 30 s\n"
    )
    print("| NMS rule | threshold | loose average-mAP | tight average-mAP | spots |\n|---|---|---|---|---|")
    for rule, threshold, loose, tight, spots in rows:
        print(f"| {rule} | {threshold} | {100 * loose:.1f} | {100 * tight:.1f} | {spots} |")


if __name__ == "__main__":
    main()
