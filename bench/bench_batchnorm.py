"""Batch-norm statistics at evaluation (issue 28, item 1): which `--bn_eval` to default to, by measurement.

Four modes (batch: V&D's statistics of the half in hand; moving: the running averages; population: the training
windows' moments after each epoch; corrected: bias-corrected running averages) x two families (`concat`, V&D's
AudioVideoArchi5, with V&D's preset; `gmu`, the seed's GMU, with the seed's) x short and long training x seeds, on
generated games (soccer_highlights.synthetic). Per run: the best epoch's validation and test window mAP (what
training selects by) and the test average-mAP of the spots (ClassificationSecondBased.py + evaluate.py, loose).

Small on purpose, to run on 2 cores: 4-minute halves, 20 s windows, VLAD_k 8, batches of 4 halves; every run
reuses one window cache per family. Everything runs in this one process (the commands' `main`).

    .venv/bin/python bench/bench_batchnorm.py --out /tmp/hbn_bench  # results_batchnorm.md
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

MODES = ("batch", "moving", "population", "corrected")
FAMILIES = {"concat": "V&D (AudioVideoArchi5)", "gmu": "seed (GMU)"}
DEFAULT = {"concat": "batch", "gmu": "moving"}  # the original's


def make_data(root: Path, games: int, half_minutes: float) -> dict[str, Path]:
    from soccer_highlights import synthetic

    if not (root / "done").exists():
        synthetic.generate_dataset(
            root, n_games=games, half_minutes=half_minutes, seed=11, splits=(0.6, 0.2, 0.2), progress=False
        )
        (root / "done").touch()
    return {k: next(root.glob(f"listgame_{k}_*.npy")) for k in ("Train", "Valid", "Test")}


def run_one(lists: dict[str, Path], out: Path, arch: str, mode: str, epochs: int, seed: int) -> dict[str, float]:
    from soccer_highlights.commands import evaluate, spot
    from soccer_highlights.commands import train as cmb

    tflog = out / f"{arch}_{mode}_{epochs}_{seed}"
    cache = out / f"cache_{arch}"
    fresh = not (cache / "done").exists()
    argv = [
        "--training",
        str(lists["Train"]),
        "--validation",
        str(lists["Valid"]),
        "--testing",
        str(lists["Test"]),
        "--PCA",
        "--architecture",
        arch,
        "--WindowSize",
        "20",
        "--VLAD_k",
        "8",
        "--batch_size",
        "4",
        "--max_epoch",
        str(epochs),
        "--bn_eval",
        mode,
        "--seed",
        str(seed),
        "--tflog",
        str(tflog),
        "--cache_dir",
        str(cache),
        "--formatdataset",
        "1" if fresh else "0",
        "--quiet",
        "--overwrite",
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        cmb.main(argv)
    (cache / "done").touch()
    summary = json.loads((tflog / f"{arch}_summary.json").read_text())
    model = tflog / f"{arch}_best.keras"
    preds = tflog / "spots"
    with contextlib.redirect_stdout(io.StringIO()):
        spot.main(["--testing", str(lists["Test"]), "--model", str(model), "--output", str(preds), "--quiet"])
        evaluate.main(
            [
                "--labels",
                str(lists["Test"].parent),
                "--predictions",
                str(preds),
                "--game_list",
                str(lists["Test"]),
                "--model",
                str(model),
                "--out",
                str(tflog / "spotting.json"),
            ]
        )
    spotting = json.loads((tflog / "spotting.json").read_text())
    return {
        "valid": float(summary["valid"]["mAP"]),
        "test": float(summary["test"]["mAP"]),
        "amap": float(spotting["a_mAP"]),
        "epoch": float(summary["best_epoch"]),
    }


def fmt(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("bench/out/batchnorm"))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--short", type=int, default=4, help="epochs of the short training")
    ap.add_argument("--long", type=int, default=20, help="epochs of the long training (at most)")
    ap.add_argument("--games", type=int, default=40)
    ap.add_argument("--half_minutes", type=float, default=4.0)
    ap.add_argument("--families", default=",".join(FAMILIES))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    lists = make_data(args.out / "games", args.games, args.half_minutes)
    results_path = args.out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    t0 = time.perf_counter()
    for arch in args.families.split(","):
        for epochs in (args.short, args.long):
            for mode in MODES:
                for seed in range(args.seeds):
                    key = f"{arch}/{mode}/{epochs}/{seed}"
                    if key in results:
                        continue
                    t = time.perf_counter()
                    results[key] = run_one(lists, args.out, arch, mode, epochs, seed)
                    results[key]["seconds"] = time.perf_counter() - t
                    results_path.write_text(json.dumps(results, indent=1))
                    print(key, results[key], f"{time.perf_counter() - t0:.0f}s", flush=True)
    rows = [
        "| family | training | bn_eval | valid mAP | test mAP | test average-mAP (spots) | best epoch |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for arch in args.families.split(","):
        for epochs, name in ((args.short, f"short ({args.short} epochs)"), (args.long, f"long (≤ {args.long})")):
            for mode in MODES:
                runs = [results[f"{arch}/{mode}/{epochs}/{s}"] for s in range(args.seeds)]
                mark = " (original)" if DEFAULT[arch] == mode else ""
                rows.append(
                    f"| {FAMILIES[arch]} | {name} | {mode}{mark} | {fmt([r['valid'] for r in runs])} | "
                    f"{fmt([r['test'] for r in runs])} | {fmt([r['amap'] for r in runs])} | "
                    f"{statistics.mean(r['epoch'] for r in runs):.1f} |"
                )
    print("\n".join(rows))
    print(f"load average: {os.getloadavg()}")


if __name__ == "__main__":
    main()
