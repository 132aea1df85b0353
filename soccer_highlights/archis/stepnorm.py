"""Batch-norm whose training statistics can be those of a whole optimiser step computed in micro-batches.

`StepBatchNorm` is Keras' `BatchNormalization` (same weights, same inference) with a `level`: its depth among the
model's batch-norms (0: nothing normalised upstream of it). Outside a training step it is Keras' layer. While a
`training.wholestep.WholeStepNorm` is active (`step_statistics`), training calls hand the layer's input to it,
which normalises with the whole step's moments and gives the exact whole-batch gradient (see that module).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

import keras

_ACTIVE = contextvars.ContextVar("archis_step_statistics", default=None)


@contextlib.contextmanager
def step_statistics(norm: Any) -> Iterator[None]:
    """Training calls traced inside normalise their `StepBatchNorm` layers through `norm.normalize(layer, x)`."""
    token = _ACTIVE.set(norm)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


@keras.saving.register_keras_serializable(package="archis")
class StepBatchNorm(keras.layers.BatchNormalization):
    """Keras batch-norm with a depth `level`, whose training statistics an active step normaliser may supply."""

    def __init__(self, level: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.level = int(level)

    def call(self, inputs, training=None, mask=None):
        norm = _ACTIVE.get()
        if training and norm is not None:
            return norm.normalize(self, inputs)
        return super().call(inputs, training=training, mask=mask)

    def get_config(self):
        return {**super().get_config(), "level": self.level}
