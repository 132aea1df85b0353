"""Peak memory and speed of one training step at SoccerNet scale (issues 9, 29): 45-minute halves (135 windows of
20 s), `--batch_size` 2, 12, 60 halves, whole-step (how training ran before micro-batches) vs micro-batched.

Each cell is a fresh process that builds the model and the optimiser as training does (`training.step.make_adam`,
built over the trainable variables), then runs optimiser steps on random features of the step's size: "whole"
computes the step in one call with Keras' Adam (the former training step); "micro" is
`training.step.AccumulatingStep` at the micro-batch training uses by default (`training.memory.FIXED_MICRO`, the
same on every machine), every pass of whole-step batch-norm included; "budget" the same at the micro-batch the
memory plan picks for `--budget` (`--micro_batch_windows 0`). Each micro-batch's features are drawn again in
every pass from a seed of (step, micro-batch), as training reads them again from its cache, so the step's
features are never all in memory. Peak RSS is the process's ru_maxrss, also given after the model, after the
optimiser and after the first step; windows/s is measured on the steps after the first (tracing) for steps of
up to 2 halves, else on the one step run (tracing included). The parent kills a child above `--kill_gb`.

  python bench/bench_memory.py concat:512:12:micro concat:512:2:whole gmu:512:2:budget ... [--budget 6.5]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
WINDOWS_PER_HALF, N, D, C = 135, 40, 512, 5


def rss_mib() -> float:
    """The process's peak RSS so far (MiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(arch: str, vlad_k: int, halves: int, how: str, budget: float, steps: int) -> None:
    import keras
    import tensorflow as tf

    from soccer_highlights import archis
    from soccer_highlights.training import memory
    from soccer_highlights.training import step as ts

    model = archis.build_model(arch, pooling="NetVLAD", vlad_k=vlad_k, window_seconds=20, seed=0)
    after_model = rss_mib()
    step_windows = halves * WINDOWS_PER_HALF if halves else 256
    optimizer = keras.optimizers.Adam(1e-3) if how == "whole" else ts.make_adam(1e-3)
    optimizer.build(model.trainable_variables)
    after_optimizer = rss_mib()
    stepper = ts.AccumulatingStep(model, optimizer, np.full(C, 1 / C, np.float32), tf.distribute.get_strategy(), (N, D))
    if how == "whole":
        micro = step_windows
    else:
        # "micro": the command's default (no budget given, the fixed micro-batch); "budget": what `budget` fits
        given, flag = (None, None) if how == "micro" else (budget, 0)
        micro = memory.plan_memory(model, N, D, given, micro_windows=flag, step_windows=step_windows).micro_windows
    times, after_first = [], 0.0
    for s in range(steps):
        plan = ts.split_step(np.arange(step_windows), 1, micro)
        t0 = time.perf_counter()
        for p in range(stepper.passes(len(plan))):
            for j, parts in enumerate(plan):
                m = len(parts[0])
                rng = np.random.default_rng((s, j))  # the same features in every pass, drawn again as read again
                batch = {
                    0: (
                        rng.standard_normal((m, N, D), np.float32),
                        rng.standard_normal((m, N, D), np.float32),
                        (rng.random((m, C)) < 0.2).astype(np.float32),
                    )
                }
                stepper.micro(batch, j, len(plan), step_windows, p)
        times.append(time.perf_counter() - t0)
        after_first = after_first or rss_mib()
    timed = times[1:] or times
    print(
        json.dumps(
            {
                "micro": micro,
                "step_windows": step_windows,
                "passes": stepper.passes(len(plan)),
                "windows_per_s": step_windows * len(timed) / sum(timed),
                "after_model_mib": after_model,
                "after_optimizer_mib": after_optimizer,
                "after_first_step_mib": after_first,
                "peak_mib": rss_mib(),
            }
        )
    )


def available_gb() -> float:
    line = next(ln for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemAvailable"))
    return int(line.split()[1]) / (1 << 20)


def run(cell: str, budget: float, kill_gb: float) -> dict:
    """One cell in a fresh process, started once the machine has `kill_gb` + 1 GiB available (shared machine)."""
    while available_gb() < kill_gb + 1:
        time.sleep(5)
    arch, vlad_k, halves, how = cell.split(":")
    steps = 2 if int(halves) <= 2 else 1
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.Popen(
        [sys.executable, __file__, "_child", arch, vlad_k, halves, how, str(budget), str(steps)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    peak = 0.0
    while proc.poll() is None:
        try:
            rss = (
                int(
                    next(
                        ln for ln in Path(f"/proc/{proc.pid}/status").read_text().splitlines() if ln.startswith("VmRSS")
                    ).split()[1]
                )
                / 1024
            )
        except (OSError, StopIteration):
            rss = 0.0
        peak = max(peak, rss)
        if rss > kill_gb * 1024:
            proc.kill()
            proc.communicate()
            return {"cell": cell, "killed_mib": rss}
        time.sleep(0.2)
    out, err = proc.communicate()
    if proc.returncode:
        return {"cell": cell, "error": f"exit {proc.returncode}: " + " ".join(err.split()[-30:])}
    return {"cell": cell, **json.loads(out.strip().splitlines()[-1])}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        a = sys.argv[2:]
        child(a[0], int(a[1]), int(a[2]), a[3], float(a[4]), int(a[5]))
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("cells", nargs="+", help="arch:VLAD_k:halves:whole|micro|budget (halves 0: 256-window steps)")
    p.add_argument("--budget", type=float, default=6.5, help="memory budget of the `budget` cells, GiB")
    p.add_argument("--kill_gb", type=float, default=8.0)
    args = p.parse_args()
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(
        "| model | step | how | micro-batch | passes | RSS after model / optimiser / first step (MiB) | peak RSS (MiB) "
        "| windows/s |\n|---|---|---|---:|---:|---|---:|---:|",
        flush=True,
    )
    for cell in args.cells:
        r = run(cell, args.budget, args.kill_gb)
        arch, k, halves, how = cell.split(":")
        step = f"{halves} halves" if int(halves) else "256 windows"
        if "killed_mib" in r or "error" in r:
            print(
                f"| {arch} VLAD-{k} | {step} | {how} | | | | {r.get('killed_mib', 'error')} | {r.get('error', 'killed')} |",
                flush=True,
            )
            continue
        print(
            f"| {arch} VLAD-{k} | {step} ({r['step_windows']} windows) | {how} | {r['micro']} | {r['passes']} | "
            f"{r['after_model_mib']:.0f} / {r['after_optimizer_mib']:.0f} / {r['after_first_step_mib']:.0f} | "
            f"{r['peak_mib']:.0f} | {r['windows_per_s']:.1f} |",
            flush=True,
        )

    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
