"""Cost of whole-step batch-norm: seconds per optimiser step of 128 windows in one micro-batch (Keras' batch-norm),
in micro-batches with whole-step statistics (extra passes), and in micro-batches with per-micro-batch statistics
(the earlier behaviour). Wall and CPU seconds (the CPU time of the process: less sensitive to other jobs on a
shared machine), median over the steps after one tracing step. Prints a markdown table.

    .venv/bin/python bench/bench_wholestep.py [--vlad_k 64] [--steps 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

N, D, C, STEP = 40, 512, 5, 128


def seconds_per_step(vlad_k: int, micro: int, exact: bool, steps: int) -> tuple[float, float]:
    import tensorflow as tf

    from soccer_highlights import archis
    from soccer_highlights.training import step as ts

    model = archis.build_model("concat", pooling="NetVLAD", vlad_k=vlad_k, window_seconds=20, seed=0)
    optimizer = ts.make_adam(1e-3)
    optimizer.build(model.trainable_variables)
    stepper = ts.AccumulatingStep(model, optimizer, np.ones(C, np.float32), tf.distribute.get_strategy(), (N, D))
    if not exact:
        stepper.norm = None
    rng = np.random.default_rng(0)
    video, audio = (rng.standard_normal((STEP, N, D), np.float32) for _ in range(2))
    labels = (rng.random((STEP, C)) < 0.2).astype(np.float32)
    plan = ts.split_step(np.arange(STEP), 1, micro)
    times, cpu = [], []
    for _ in range(steps + 1):  # the first step traces
        t0, c0 = time.perf_counter(), time.process_time()
        for p in range(stepper.passes(len(plan))):
            for j, part in enumerate(plan):
                rows = part[0]
                stepper.micro({0: (video[rows], audio[rows], labels[rows])}, j, len(plan), STEP, p)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return float(np.median(times[1:])), float(np.median(cpu[1:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vlad_k", type=int, default=64)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    whole = seconds_per_step(args.vlad_k, STEP, True, args.steps)
    exact = seconds_per_step(args.vlad_k, 32, True, args.steps)
    per_micro = seconds_per_step(args.vlad_k, 32, False, args.steps)
    print(f"concat, NetVLAD-{args.vlad_k}, {STEP} windows of {N} frames a step; load average {os.getloadavg()}\n")
    print("| step | wall s / step | × one micro-batch | CPU s / step | × one micro-batch |\n|---|---|---|---|---|")
    for name, (t, c) in (
        (f"one micro-batch of {STEP} (Keras' batch-norm)", whole),
        ("4 micro-batches of 32, whole-step statistics (extra passes)", exact),
        ("4 micro-batches of 32, per-micro-batch statistics", per_micro),
    ):
        print(f"| {name} | {t:.2f} | {t / whole[0]:.2f} | {c:.2f} | {c / whole[1]:.2f} |")


if __name__ == "__main__":
    main()
