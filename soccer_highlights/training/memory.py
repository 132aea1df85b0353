"""The memory plan of training and evaluation: micro-batch and evaluation batch sizes from a memory budget.

Fixed costs (weights, gradients, Adam's two slots, the accumulator, the runtime) plus a per-window activation
cost read from the traced training graph; the micro-batch is what fits the rest of the budget.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from soccer_highlights.common.errors import UserError

RUNTIME_BYTES = 900 << 20  # TensorFlow, Keras, Python and the data pipeline, measured on CPU (~0.8 GiB)


ACTIVATION_SHARE = 0.35  # live share of the traced graph's per-window tensors at the peak (measured for concat:


# 0.15 at NetVLAD-512, 0.3 at NetVLAD-64; rounded up)
HEADROOM = 0.85  # plan to this share of the budget: the runtime and the live activations vary by 10-15 % between


# runs of the same step (allocator, thread pools): measured 1.80-2.16 GiB for one plan of 2.0 GiB
MIN_MICRO = 8
# Micro-batch of a training step unless the command says otherwise: fixed, so the order of float sums (and, across
# replicas, the batch-norm statistics) and so the weights are the same on every machine (with one replica, whole-step
# statistics and keyed dropout masks make any micro-batch agree to float precision); `micro_windows=0`: the budget's.
FIXED_MICRO = 64


MAX_MICRO = {"CPU": 256, "GPU": 1024}  # beyond this, larger micro-batches gain no speed


@dataclass(frozen=True)
class MemoryPlan:
    """How a training run fits its memory budget (bytes, windows)."""

    budget: int
    fixed: int
    per_window: int
    micro_windows: int
    eval_windows: int
    chosen: str  # "budget" or "flag"

    def describe(self) -> str:
        gib = 1 << 30
        return (
            f"memory: budget {self.budget / gib:.1f} GiB, fixed {self.fixed / gib:.2f} GiB (weights, gradients, "
            f"Adam slots, accumulator, saving, runtime), ~{self.per_window / (1 << 20):.1f} MiB per window in flight -> "
            f"micro-batches of {self.micro_windows} windows ({self.chosen}), evaluation batches of "
            f"{self.eval_windows}"
        )


def _device_kind() -> str:
    import tensorflow as tf

    return "GPU" if tf.config.list_logical_devices("GPU") else "CPU"


def _gpu_memory_bytes() -> int | None:
    """Memory of the first visible GPU from nvidia-smi, or None."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [exe, "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.split()
        return int(float(out[0])) << 20
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def default_budget() -> int:
    """A safe share of where training runs: 80% of the GPU's memory, else 40% of the machine's RAM."""
    if _device_kind() == "GPU":
        return int(0.8 * (_gpu_memory_bytes() or 16 << 30))
    return int(0.4 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def _graph_bytes(fn: Callable, n: int, d: int, batch: int) -> int:
    """Sum of the sizes of every tensor a traced call of `fn` on `batch` windows produces."""
    import tensorflow as tf

    spec = tf.TensorSpec((batch, n, d), tf.float32)
    graph = tf.function(fn).get_concrete_function(spec, spec).graph
    total = 0
    for op in graph.get_operations():
        for t in op.outputs:
            if t.shape.is_fully_defined() and t.dtype.size:
                total += t.shape.num_elements() * t.dtype.size
    return total


def activation_bytes_per_window(model: Any, n: int, d: int, training: bool = True) -> int:
    """Bytes one more window adds to a training (forward + backward) or inference call, from the traced graph:
    the growth of all its tensors from 2 to 4 windows, halved, times the share alive at the peak."""
    import tensorflow as tf

    def call(video, audio):
        if not training:
            return model({"video": video, "audio": audio}, training=False)
        with tf.GradientTape() as tape:
            out = tf.reduce_sum(tf.cast(model({"video": video, "audio": audio}, training=True), tf.float32))
        return tape.gradient(out, model.trainable_variables)

    grow = (_graph_bytes(call, n, d, 4) - _graph_bytes(call, n, d, 2)) / 2
    return max(1, int(ACTIVATION_SHARE * grow))


def plan_memory(
    model: Any,
    n: int,
    d: int,
    budget_gb: float | None = None,
    micro_windows: int | None = None,
    step_windows: int | None = None,
) -> MemoryPlan:
    """Micro-batch and evaluation batch sizes. The micro-batch is `micro_windows`, else (None) `FIXED_MICRO`, the
    same on every machine, checked against `budget_gb` (default: `default_budget`); `micro_windows=0`: what fits
    the budget (faster on large machines, but then the weights depend on the machine). `step_windows`: the
    largest step (no micro-batch is made larger).

    Fixed cost: five copies of the trainable weights (the weights, one micro-batch's gradients, the accumulator,
    Adam's two slots; the best epoch's copy is kept on disk), two copies of the largest variable (Keras
    converts each variable to NumPy when it saves or loads weights) and the runtime."""
    params = sum(int(np.prod(v.shape)) * 4 for v in model.trainable_variables)
    saving = 2 * max(int(np.prod(v.shape)) * 4 for v in model.trainable_variables)  # Keras' h5 writer's copies
    fixed = 5 * params + saving + sum(int(np.prod(v.shape)) * 4 for v in model.non_trainable_variables) + RUNTIME_BYTES
    budget = int(budget_gb * (1 << 30)) if budget_gb else default_budget()
    per_window = activation_bytes_per_window(model, n, d)
    cap = MAX_MICRO[_device_kind()]
    room = int(HEADROOM * budget) - fixed
    if micro_windows is None:
        micro, chosen = FIXED_MICRO, "fixed: the same on every machine"
        _check_fits(micro, room, per_window, fixed, budget_gb)
    elif micro_windows:
        micro, chosen = micro_windows, "flag"
    elif room >= MIN_MICRO * per_window:
        micro, chosen = min(cap, room // per_window), "budget"
    elif budget_gb:
        _check_fits(MIN_MICRO, room, per_window, fixed, budget_gb)
    else:
        micro, chosen = MIN_MICRO, "minimum: the default budget is too small for this model"
    if step_windows:
        micro = min(micro, step_windows)
    # the inference graph is traced (twice) only when the budget picks the evaluation batch
    evaluation = room // activation_bytes_per_window(model, n, d, training=False) if room > 0 else micro
    eval_windows = int(max(1, min(cap, evaluation)))
    return MemoryPlan(budget, fixed, per_window, int(max(1, micro)), eval_windows, chosen)


def _check_fits(micro: int, room: int, per_window: int, fixed: int, budget_gb: float | None) -> None:
    """UserError when `micro` windows in flight do not fit a given budget; one warning under the default budget."""
    if room >= micro * per_window:
        return
    need = (fixed + micro * per_window) / HEADROOM / (1 << 30)
    what = f"micro-batches of {micro} windows need {need:.2f} GiB (weights, gradients, Adam slots, accumulator, saving, runtime)"
    if budget_gb:
        raise UserError(
            f"--memory_budget_gb {budget_gb:g}: {what}; raise it, use a smaller --VLAD_k, or give a smaller "
            "--micro_batch_windows (a different micro-batch gives other weights)"
        )
    warnings.warn(
        f"{what}, more than the default budget: give --memory_budget_gb or --micro_batch_windows", stacklevel=3
    )


def inference_windows(model: Any, n: int, d: int, budget_gb: float | None = None) -> int:
    """Windows per inference call that keep the weights, the runtime and the call within the budget."""
    weights = sum(int(np.prod(v.shape)) * 4 for v in model.weights)
    budget = int(budget_gb * (1 << 30)) if budget_gb else default_budget()
    per_window = activation_bytes_per_window(model, n, d, training=False)
    room = int(HEADROOM * budget) - weights - RUNTIME_BYTES
    return int(max(1, min(MAX_MICRO[_device_kind()], room // per_window)))
