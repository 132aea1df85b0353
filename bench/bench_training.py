"""Training benchmarks (issue 3) on generated data; each run is a separate process. Prints tables.

  memory: peak RSS of one epoch (+ validation, test) on 10 vs 100 training games, 15-minute halves
  speed:  seconds per epoch on 20 games, concat NetVLAD k=512, 20 s windows; input-pipeline share
  zoo:    validation / test mAP of video, audio, concat, gmu, cmga, transformer, bottleneck

Run: `.venv/bin/python bench/bench_training.py all --out bench/out/training`.
`--code DIR` runs the children on another checkout (e.g. a `git worktree` of an older commit, for a side-by-side
baseline); `--dtypes` and `--micro` choose the speed cells, `--games` its training games (20 by default). Each speed row gives the load average (1 minute) when
the epoch ended and the child's CPU seconds per window (user + system, the whole run: less sensitive to other jobs
on a shared machine than the wall time).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def child(argv: list[str]) -> None:
    """Run the CLI in this process and report its peak RSS (MiB) on the last line."""
    from soccer_highlights.commands import train as cmb

    cmb.main(argv)
    print(f"maxrss_mib {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f}")


CODE: Path | None = None  # --code: the checkout the children import


def run_cli(argv: list[str]) -> tuple[float, float]:
    """(peak RSS MiB, wall seconds) of one CLI run in a fresh process."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    if CODE is not None:
        env["PYTHONPATH"] = str(CODE)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, "_child", *argv], cwd=CODE or ROOT, env=env, capture_output=True, text=True
    )
    wall = time.perf_counter() - t0
    if proc.returncode:
        sys.exit(f"run failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return float(proc.stdout.strip().splitlines()[-1].split()[1]), wall


def make_data(root: Path, n_games: int, half_minutes: float, seed: int, event_rate: float = 1.0):
    from soccer_highlights import synthetic

    if not (root / "done").exists():
        synthetic.generate_dataset(
            root,
            n_games=n_games,
            half_minutes=half_minutes,
            seed=seed,
            splits=(1, 0, 0),
            event_rate=event_rate,
            progress=False,
        )
        (root / "done").touch()
    return root / f"listgame_Train_{n_games}.npy"


def sub_list(src: Path, n: int, dst: Path) -> Path:
    np.save(dst, np.load(src)[:n])
    return dst


def common(train: Path, valid: Path, test: Path, tflog: Path, *extra: str) -> list[str]:
    return [
        "--training",
        str(train),
        "--validation",
        str(valid),
        "--testing",
        str(test),
        "--PCA",
        "--network",
        "VLAD",
        "--WindowSize",
        "20",
        "--tflog",
        str(tflog),
        "--cache_dir",
        str(tflog / "cache"),
        "--quiet",
        "--overwrite",
        *extra,
    ]


def bench_memory(out: Path) -> list[str]:
    big = make_data(out / "games15", 100, 15.0, seed=0)
    evalset = sub_list(big, 2, out / "games15" / "listgame_Eval_2.npy")
    rows = ["| training games | windows | peak RSS (MiB) | epoch wall (s) |", "|---:|---:|---:|---:|"]
    peaks = {}
    for n in (10, 100):
        train = big if n == 100 else sub_list(big, n, out / "games15" / f"listgame_Train_{n}.npy")
        tflog = out / f"memory_{n}"
        args = common(
            train,
            evalset,
            evalset,
            tflog,
            "--architecture",
            "concat",
            "--VLAD_k",
            "64",
            "--batch_windows",
            "256",
            "--LR",
            "0.001",
            "--max_epoch",
            "1",
        )
        peak, wall = run_cli([*args, "--formatdataset", "1"])
        summary = json.loads((tflog / "concat_summary.json").read_text())
        windows = sum(
            h["count"] for h in json.loads((tflog / "cache" / train.stem / "settings.json").read_text())["halves"]
        )
        peaks[n] = peak
        rows.append(
            f"| {n} | {windows} | {peak:.0f} | {wall:.0f} (train {summary['history'][0]['train_seconds']:.0f}) |"
        )
    rows.append(f"\nratio 100 / 10 games: **{peaks[100] / peaks[10]:.2f}** (target < 1.3)")
    return rows


def bench_speed(
    out: Path, dtypes: tuple[str, ...] = ("float32", "bfloat16"), micro: int | None = None, games: int = 20
) -> list[str]:
    big = make_data(out / "games15", 100, 15.0, seed=0)
    train = sub_list(big, games, out / "games15" / f"listgame_Train_{games}.npy")
    evalset = sub_list(big, 2, out / "games15" / "listgame_Eval_2.npy")
    rows = [
        "| model | batch | micro-batch | windows/epoch | epoch (s) | windows/s | input wait (s) | input share | "
        "load (1 min) | CPU ms / window (run) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for dtype in dtypes:
        tflog = out / f"speed_{dtype}"
        args = common(
            train,
            evalset,
            evalset,
            tflog,
            "--architecture",
            "concat",
            "--VLAD_k",
            "512",
            "--batch_windows",
            "256",
            "--LR",
            "0.001",
            "--max_epoch",
            "2",
            "--compute_dtype",
            dtype,
            "--formatdataset",
            "1",
            *(("--micro_batch_windows", str(micro)) if micro else ()),
        )
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        run_cli(args)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        load = os.getloadavg()[0]
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        summary = json.loads((tflog / "concat_summary.json").read_text())
        cached = sorted((tflog / "cache").glob(f"{train.stem}*/settings.json"), key=lambda p: p.stat().st_mtime)
        settings = json.loads(cached[-1].read_text())  # the newest (later versions add a recipe hash to the name)
        windows = sum(h["count"] for h in settings["halves"])
        h = summary["history"][-1]  # the second epoch: no tracing
        for big_file in (tflog / "concat_resume", tflog / "concat_best.keras"):  # ~7 GB at VLAD-512: disk
            if big_file.is_dir():
                shutil.rmtree(big_file)
            else:
                big_file.unlink(missing_ok=True)
        rows.append(
            f"| concat VLAD-512 {dtype} | 256 windows | {micro or 'default'} | {windows} | {h['train_seconds']:.1f} | "
            f"{windows / h['train_seconds']:.1f} | {h['input_wait_seconds']:.2f} | "
            f"{100 * h['input_wait_seconds'] / h['train_seconds']:.1f}% | {load:.1f} | {1000 * cpu / (2 * windows):.0f} |"
        )
    return rows


def bench_zoo(out: Path, epochs: int, vlad_k: int) -> list[str]:
    from soccer_highlights import synthetic

    root = out / "games_zoo"
    if not (root / "done").exists():
        synthetic.generate_dataset(root, n_games=60, half_minutes=8.0, seed=7, splits=(40, 10, 10), progress=False)
        (root / "done").touch()
    lists = {k: next(root.glob(f"listgame_{k}_*.npy")) for k in ("Train", "Valid", "Test")}
    rows = [
        "| architecture | valid mAP | test mAP | test AP kick / subs / card / goal | best epoch | wall (s) |",
        "|---|---:|---:|---|---:|---:|",
    ]
    first = True
    for arch in ("video", "audio", "concat", "gmu", "cmga", "transformer", "bottleneck"):
        tflog = out / "zoo"
        args = common(
            lists["Train"],
            lists["Valid"],
            lists["Test"],
            tflog,
            "--architecture",
            arch,
            "--VLAD_k",
            str(vlad_k),
            "--batch_windows",
            "64",
            "--LR",
            "0.001",
            "--max_epoch",
            str(epochs),
            "--formatdataset",
            "1" if first else "0",
        )
        first = False
        _, wall = run_cli(args)
        s = json.loads((tflog / f"{arch}_summary.json").read_text())
        ap = " / ".join(f"{s['test']['AP'][c]:.2f}" for c in ("kick", "subs", "card", "goal"))
        rows.append(
            f"| {arch} | {s['valid']['mAP']:.3f} | {s['test']['mAP']:.3f} | {ap} | {s['best_epoch']} | {wall:.0f} |"
        )
    return rows


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        child(sys.argv[2:])
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("which", choices=("memory", "speed", "zoo", "all"))
    p.add_argument("--out", default=str(ROOT / "bench" / "out" / "training"))
    p.add_argument("--zoo_epochs", type=int, default=10)
    p.add_argument("--zoo_vlad_k", type=int, default=16)
    p.add_argument("--code", type=Path, help="run the children on this checkout (a baseline)")
    p.add_argument("--dtypes", default="float32,bfloat16", help="speed: compute dtypes, comma-separated")
    p.add_argument("--micro", type=int, help="speed: --micro_batch_windows (default: the command's)")
    p.add_argument("--games", type=int, default=20, help="speed: training games (15-minute halves, ~92 windows each)")
    args = p.parse_args()
    global CODE
    CODE = args.code.resolve() if args.code else None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("memory", "speed", "zoo") if args.which == "all" else (args.which,):
        t0 = time.perf_counter()
        if name == "zoo":
            rows = bench_zoo(out, args.zoo_epochs, args.zoo_vlad_k)
        elif name == "speed":
            rows = bench_speed(out, tuple(args.dtypes.split(",")), args.micro, args.games)
        else:
            rows = bench_memory(out)
        print(f"\n## {name} ({time.perf_counter() - t0:.0f} s)\n" + "\n".join(rows), flush=True)


if __name__ == "__main__":
    main()
