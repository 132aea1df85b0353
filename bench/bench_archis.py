"""Training throughput of the archis models (forward + backward, windows/s) and what bfloat16 does to them.

Prints one table row per configuration. Default: batch 256, 20 s windows at 2 fps (N = 40), D = 512,
VLAD_k 512 and 64, for concat / gmu / cmga / transformer, float32 and bfloat16.

    flock /tmp/bench.lock .venv/bin/python bench/bench_archis.py                # main table
    flock /tmp/bench.lock .venv/bin/python bench/bench_archis.py --levers       # VLAD variant, jit, batch size, Adam
    flock /tmp/bench.lock .venv/bin/python bench/bench_archis.py --accuracy     # float32 vs bfloat16 on synthetic data
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from soccer_highlights.common.errors import run_cli
from soccer_highlights.training.metrics import sigmoid


def _naive_vlad_call(self, x, training=None):
    """The straightforward port of V&D's NetVLAD (transpose to [B, D, K], two l2_normalize calls): the 'plain layer'."""
    from keras import ops

    scores = ops.matmul(x, self.cluster_weights)
    scores = self.cluster_bn(scores, training=training) if self.cluster_bn is not None else scores + self.cluster_biases
    assign = ops.softmax(scores, axis=-1)
    vlad = ops.transpose(ops.einsum("bnk,bnd->bkd", assign, x), (0, 2, 1))
    if self.residual:
        vlad = vlad - ops.sum(assign, axis=1)[:, None, :] * self.cluster_weights2[None]
    vlad = ops.reshape(ops.normalize(vlad, axis=1), (-1, self.cluster_size * self.feature_dim))
    y = ops.matmul(ops.normalize(vlad, axis=1), self.hidden_weights)
    return self.gating(y, training=training) if self.gating is not None else y


def time_config(
    arch, vlad_k, dtype, batch, *, steps=5, warmup=2, jit=False, adam=False, vlad="archis", frames=40, dim=512
):
    """Median seconds per training step -> windows/s. Random inputs; weights are not what is measured."""
    import keras
    import tensorflow as tf

    from soccer_highlights.archis import build_model
    from soccer_highlights.archis.pooling import NetVLAD

    original = NetVLAD.call
    if vlad == "naive":
        NetVLAD.call = _naive_vlad_call
    try:
        keras.backend.clear_session()
        model = build_model(
            arch, vlad_k=vlad_k, window_seconds=frames / 2, feature_dim=dim, compute_dtype=dtype, seed=0
        )
        rng = np.random.default_rng(0)
        x = {m: tf.constant(rng.normal(size=(batch, frames, dim)).astype("float32")) for m in ("video", "audio")}
        y = tf.constant((rng.random((batch, 5)) < 0.3).astype("float32"))
        weights = model.trainable_weights
        optimizer = keras.optimizers.Adam(1e-3)
        if adam:
            optimizer.build(weights)

        @tf.function(jit_compile=jit)
        def step(x, y):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(y, model(x, training=True)))
            grads = tape.gradient(loss, weights)
            if adam:
                optimizer.apply_gradients(zip(grads, weights, strict=True))
                return loss, []
            return loss, grads

        times = []
        for i in range(warmup + steps):
            t0 = time.perf_counter()
            loss, grads = step(x, y)
            float(loss)
            _ = [g.shape for g in grads]
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    finally:
        NetVLAD.call = original
    return batch / float(np.median(times))


def accuracy_check(epochs: int = 8) -> list[str]:
    """Same weights: how far bfloat16 logits move; then train both dtypes on a synthetic task and compare mAP."""
    import keras
    import tensorflow as tf
    from sklearn.metrics import average_precision_score

    from soccer_highlights.archis import build_model

    rows = []
    rng = np.random.default_rng(0)
    x = {m: rng.normal(size=(64, 40, 512)).astype("float32") for m in ("video", "audio")}
    f32 = build_model("concat", vlad_k=512, window_seconds=20, seed=0)
    bf16 = build_model("concat", vlad_k=512, window_seconds=20, compute_dtype="bfloat16", seed=0)
    bf16.set_weights(f32.get_weights())
    a, b = np.asarray(f32(x)), np.asarray(bf16(x))
    rows.append(
        f"same weights, concat VLAD-512, 64 windows: max |logit diff| {np.abs(a - b).max():.4f} "
        f"(logit std {a.std():.3f}), sigmoid max diff {np.abs(sigmoid(a) - sigmoid(b)).max():.4f}"
    )

    # Synthetic task: each class plants its own prototype (video and audio) in a few frames of a window.
    def windows(n, seed):
        r = np.random.default_rng(seed)
        protos = np.random.default_rng(99).normal(size=(2, 5, 512)).astype("float32")
        xs = {m: r.normal(size=(n, 40, 512)).astype("float32") for m in ("video", "audio")}
        ys = np.zeros((n, 5), "float32")
        for i in range(n):
            c = r.integers(0, 5)
            ys[i, c] = 1
            if c:
                frames = r.choice(40, 2, replace=False)
                for j, m in enumerate(("video", "audio")):
                    xs[m][i, frames] += 0.3 * protos[j, c]
        return xs, ys

    xtr, ytr = windows(1024, 1)
    xte, yte = windows(512, 2)
    for dtype in ("float32", "bfloat16"):
        keras.backend.clear_session()
        model = build_model("concat", vlad_k=64, window_seconds=20, compute_dtype=dtype, seed=0)
        model.compile(keras.optimizers.Adam(1e-3), keras.losses.BinaryCrossentropy(from_logits=True))
        t0 = time.perf_counter()
        model.fit(xtr, ytr, batch_size=64, epochs=epochs, verbose=0)
        p = tf.sigmoid(model.predict(xte, batch_size=256, verbose=0)).numpy()
        m_ap = np.mean([average_precision_score(yte[:, c], p[:, c]) for c in range(1, 5)])
        acc = float(np.mean(p.argmax(1) == yte.argmax(1)))
        rows.append(
            f"{dtype}: concat VLAD-64 trained {epochs} epochs on 1024 synthetic windows: test mAP {m_ap:.4f}, "
            f"accuracy {acc:.4f} ({time.perf_counter() - t0:.0f} s)"
        )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", default="concat,gmu,cmga,transformer")
    parser.add_argument("--vlad-k", default="512,64")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--levers", action="store_true", help="concat VLAD-512 only: VLAD variant, jit, batch, Adam")
    parser.add_argument("--accuracy", action="store_true", help="float32 vs bfloat16 outputs and synthetic accuracy")
    args = parser.parse_args(argv)

    if args.accuracy:
        for row in accuracy_check():
            print(row, flush=True)
        return 0

    print("| arch | VLAD_k | dtype | batch | variant | windows/s |\n|---|---|---|---|---|---|", flush=True)
    if args.levers:
        configs = [
            ("concat", 512, dt, b, kw)
            for dt in args.dtypes.split(",")
            for b, kw in (
                (256, {"vlad": "naive"}),
                (256, {}),
                (256, {"jit": True}),
                (128, {}),
                (512, {}),
                (256, {"adam": True}),
            )
        ]
    else:
        configs = [
            (arch, int(k), dt, args.batch, {})
            for k in args.vlad_k.split(",")
            for arch in args.archs.split(",")
            for dt in args.dtypes.split(",")
        ]
    for arch, k, dtype, batch, kw in configs:
        rate = time_config(arch, k, dtype, batch, steps=args.steps, warmup=args.warmup, **kw)
        variant = ", ".join(f"{n}={v}" for n, v in kw.items()) or "archis, grads only"
        print(f"| {arch} | {k} | {dtype} | {batch} | {variant} | {rate:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    run_cli(main)
