"""The one compiled forward pass every tool uses to score windows (training's validation and test, predict
mode, spotting and inference)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


def predict_function(model: Any, *, sigmoid: bool = False, jit_compile: bool = False) -> Callable:
    """`f(video, audio)`: windows [B, N, D] of each stream -> float32 logits [B, C] (probabilities with
    `sigmoid`), inference mode (no dropout, moving batch-norm statistics).

    The model is wrapped once in a `tf.function` with a fixed input signature [None, N, D], so batches of
    any size never retrace; the output is float32 whatever the compute dtype. Works for dict-input models
    ({"video", "audio"}) and two-input list models alike.
    """
    import tensorflow as tf

    structure = model.input
    names = list(structure) if isinstance(structure, Mapping) else None
    shape = tuple(model.inputs[0].shape)
    spec = tf.TensorSpec([None, int(shape[1]), int(shape[2])], tf.float32)

    def forward(video, audio):
        inputs = dict(zip(names, (video, audio), strict=True)) if names else [video, audio]
        logits = tf.cast(model(inputs, training=False), tf.float32)
        return tf.sigmoid(logits) if sigmoid else logits

    return tf.function(forward, input_signature=[spec, spec], jit_compile=jit_compile)
