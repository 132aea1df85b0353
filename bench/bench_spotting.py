"""Benchmark: one half of features -> per-token scores (highlights.spotting.Scorer) against plain Keras paths.

Default: a 45-minute half (5,400 tokens), `concat` NetVLAD K=512, 20 s windows, one window per second.
Rows: the Scorer (compiled call, strided views) at each batch size and compute dtype, `model.predict` on
materialised windows at batch 256, and one window per call (timed on a few windows, extrapolated).

    flock /tmp/bench.lock .venv/bin/python bench/bench_spotting.py
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


def roofline(args: argparse.Namespace) -> None:
    """The projection alone (most of the FLOPs): GFLOP/s here, and the seconds it needs per half."""
    import tensorflow as tf

    windows = len(range(0, args.tokens, args.stride))
    rows = args.vlad_k * 512
    print(
        "| dtype | batch | ms per matmul | GFLOP/s | projection floor per half (2 branches), s |\n|---|---|---|---|---|"
    )
    for dtype in args.dtypes.split(","):
        for bs in (int(b) for b in args.windows_per_call.split(",")):
            x = tf.cast(tf.random.normal((bs, rows)), dtype)
            w = tf.cast(tf.random.normal((rows, 512)), dtype)
            f = tf.function(tf.matmul)
            f(x, w).numpy()
            t0 = time.perf_counter()
            for _ in range(3):
                f(x, w).numpy()
            sec = (time.perf_counter() - t0) / 3
            print(
                f"| {dtype} | {bs} | {sec * 1000:.0f} | {2 * bs * rows * 512 / sec / 1e9:.0f} | "
                f"{2 * sec * windows / bs:.1f} |",
                flush=True,
            )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tokens", type=int, default=5400)
    p.add_argument("--architecture", default="concat")
    p.add_argument("--vlad_k", type=int, default=512)
    p.add_argument("--window_seconds", type=float, default=20.0)
    p.add_argument("--stride", type=int, default=2)
    p.add_argument("--windows_per_call", default="128,256,512", help="comma list: windows per model call")
    p.add_argument("--dtypes", default="float32,bfloat16")
    p.add_argument("--single_windows", type=int, default=40, help="windows timed one per call (0: skip)")
    p.add_argument("--skip_predict", action="store_true")
    p.add_argument(
        "--roofline",
        action="store_true",
        help="only time the NetVLAD projection matmul [B, K*512] x [K*512, 512] and the floor it sets",
    )
    args = p.parse_args()
    if args.roofline:
        roofline(args)
        return

    import numpy as np

    from soccer_highlights import archis
    from soccer_highlights.spotting.spots import Scorer, window_view, with_compute_dtype

    model = archis.build_model(args.architecture, vlad_k=args.vlad_k, window_seconds=args.window_seconds, seed=0)
    n = archis.model_info(model).window_frames
    rng = np.random.default_rng(0)
    video, audio = rng.normal(size=(2, args.tokens, 512)).astype(np.float32)
    windows = len(range(0, args.tokens, args.stride))
    rows: list[tuple[str, str, int, float]] = []

    def timed(fn) -> float:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    reference = None
    for dtype in args.dtypes.split(","):
        twin = with_compute_dtype(model, dtype)
        for bs in (int(b) for b in args.windows_per_call.split(",")):
            scorer = Scorer(twin, batch_size=bs)
            scorer.score_half(video[: 4 * n], audio[: 4 * n], stride=args.stride, progress=False)  # trace + warm up
            out = {}
            sec = timed(
                lambda s=scorer, o=out: o.setdefault(
                    "p", s.score_half(video, audio, stride=args.stride, progress=False)
                )
            )
            if reference is None:
                reference = out["p"]
            err = float(np.abs(out["p"] - reference).max())
            rows.append((f"Scorer (tf.function, strided views), max abs diff {err:.1e}", dtype, bs, sec))
            print(rows[-1], flush=True)
    if not args.skip_predict:
        vw = np.ascontiguousarray(window_view(video, n, args.stride))
        aw = np.ascontiguousarray(window_view(audio, n, args.stride))
        model.predict({"video": vw[:256], "audio": aw[:256]}, batch_size=256, verbose=0)
        sec = timed(lambda: model.predict({"video": vw, "audio": aw}, batch_size=256, verbose=0))
        rows.append(("keras model.predict on materialised windows", "float32", 256, sec))
        print(rows[-1], flush=True)
    if args.single_windows:
        vw, aw = window_view(video, n, args.stride), window_view(audio, n, args.stride)
        model({"video": vw[:1], "audio": aw[:1]}, training=False)
        sec = timed(
            lambda: [
                model({"video": vw[i : i + 1], "audio": aw[i : i + 1]}, training=False)
                for i in range(args.single_windows)
            ]
        )
        rows.append(
            (
                f"one window per call (eager, {args.single_windows} timed, extrapolated)",
                "float32",
                1,
                sec * windows / args.single_windows,
            )
        )

    print(
        f"\n{args.tokens} tokens, {windows} windows of {n} tokens, {args.architecture} "
        f"NetVLAD K={args.vlad_k}, {os.cpu_count()} CPUs\n"
    )
    print("| path | dtype | batch | seconds per half | windows/s |\n|---|---|---|---|---|")
    for name, dtype, bs, sec in rows:
        print(f"| {name} | {dtype} | {bs} | {sec:.2f} | {windows / sec:.0f} |")


if __name__ == "__main__":
    main()
