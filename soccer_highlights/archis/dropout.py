"""Dropout whose masks are a function of (layer seed, optimiser step, window index in the step), not of the call.

Keras' `Dropout` draws each mask from a generator that advances with every call, so a step computed in
micro-batches of 4 windows draws other masks than the same step in micro-batches of 32 (and the extra passes of a
whole-step batch-norm, `training.wholestep`, would each draw new ones). `KeyedDropout` is Keras' layer (same rate,
same scaling 1 / (1 - rate), same inference) except inside `window_keys(step, first_window)`, which a training
step opens while it traces: then window b of the call, the (first_window + b)-th window of step `step`, keeps
element e where a counter-based hash of (seed, step, first_window + b, e) is at least the rate. Every pass over a
micro-batch draws the same mask, and the weights do not depend on how the step is cut.

The layer's `seed` is drawn from Python's generator when it is made (which `build_model(seed=...)` seeds; one draw,
as Keras' layer makes, so the initial weights are unchanged), and saved in its config.
"""

from __future__ import annotations

import contextlib
import contextvars
import random
from collections.abc import Iterator
from typing import Any

import keras

_KEYS: contextvars.ContextVar[tuple[Any, Any] | None] = contextvars.ContextVar("archis_window_keys", default=None)

_GOLDEN = 0x9E3779B9  # mixes the element counter into the window's key


@contextlib.contextmanager
def window_keys(step: Any, first_window: Any) -> Iterator[None]:
    """Training calls traced inside key their `KeyedDropout` masks by (`step`, `first_window` + row in the call)."""
    token = _KEYS.set((step, first_window))
    try:
        yield
    finally:
        _KEYS.reset(token)


def _mix(h):
    """A 32-bit integer hash (the "lowbias32" finaliser: xor-shift, multiply, xor-shift, multiply, xor-shift)."""
    import tensorflow as tf

    u = tf.uint32
    h = tf.bitwise.bitwise_xor(h, tf.bitwise.right_shift(h, tf.constant(16, u)))
    h = h * tf.constant(0x7FEB352D, u)
    h = tf.bitwise.bitwise_xor(h, tf.bitwise.right_shift(h, tf.constant(15, u)))
    h = h * tf.constant(0x846CA68B, u)
    return tf.bitwise.bitwise_xor(h, tf.bitwise.right_shift(h, tf.constant(16, u)))


def keyed_uniform(seed: int, step: Any, windows: Any, shape: Any):
    """Uniform [0, 1) float32 of `shape` ([B, ...]) whose row b depends only on (seed, step, windows[b]) and the
    element's position in the row."""
    import tensorflow as tf

    u = tf.uint32
    key = _mix(tf.constant(seed & 0xFFFFFFFF, u))
    key = _mix(tf.bitwise.bitwise_xor(key, tf.cast(tf.cast(step, tf.int64) & 0xFFFFFFFF, u)))
    rows = _mix(tf.bitwise.bitwise_xor(key, tf.cast(tf.cast(windows, tf.int64) & 0xFFFFFFFF, u)))  # [B]
    per_row = tf.reduce_prod(shape[1:])
    counter = tf.cast(tf.range(per_row), u) * tf.constant(_GOLDEN, u)
    bits = _mix(tf.bitwise.bitwise_xor(rows[:, None], _mix(counter)[None, :]) + rows[:, None])
    uniform = tf.cast(tf.bitwise.right_shift(bits, tf.constant(8, u)), tf.float32) * (1.0 / (1 << 24))
    return tf.reshape(uniform, shape)


@keras.saving.register_keras_serializable(package="archis")
class KeyedDropout(keras.layers.Dropout):
    """Keras' dropout, with masks keyed by (seed, step, window) inside `window_keys` (see the module docstring)."""

    def __init__(self, rate: float, seed: int | None = None, **kwargs):
        if seed is None:  # one draw, as Keras' own layer makes (none without dropout): initial weights unchanged
            seed = random.randint(1, int(1e9)) if rate > 0 else 0
        super().__init__(rate, seed=int(seed), **kwargs)

    def call(self, inputs, training=False):
        keys = _KEYS.get()
        if not training or keys is None or self.rate <= 0 or self.noise_shape is not None:
            return super().call(inputs, training=training)
        import tensorflow as tf

        step, first = keys
        shape = tf.shape(inputs)
        windows = tf.cast(first, tf.int64) + tf.range(shape[0], dtype=tf.int64)
        keep = keyed_uniform(self.seed, step, windows, shape) >= self.rate
        scale = tf.cast(1.0 / (1.0 - self.rate), inputs.dtype)
        return tf.where(keep, inputs * scale, tf.zeros_like(inputs))
