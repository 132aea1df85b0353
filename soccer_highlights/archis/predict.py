"""The one compiled forward pass every tool uses to score windows (training's validation and test, predict
mode, spotting and inference), and its form over a set of windows for batch-norm evaluated with batch statistics."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from soccer_highlights.archis.stepnorm import SetStatistics, model_forward, moving_statistics, needs_set_statistics


def _signature(model: Any) -> list[Any]:
    import tensorflow as tf

    shape = tuple(model.inputs[0].shape)
    spec = tf.TensorSpec([None, int(shape[1]), int(shape[2])], tf.float32)
    return [spec, spec]


def predict_function(model: Any, *, sigmoid: bool = False, jit_compile: bool = False) -> Callable:
    """`f(video, audio)`: windows [B, N, D] of each stream -> float32 logits [B, C] (probabilities with
    `sigmoid`), inference mode (no dropout; batch-norm statistics by the layers' `eval_mode`: with `batch`, those
    of the windows of this call; `set_predictor` fixes the set instead).

    The model is wrapped once in a `tf.function` with a fixed input signature [None, N, D], so batches of
    any size never retrace; the output is float32 whatever the compute dtype. Works for dict-input models
    ({"video", "audio"}) and two-input list models alike.
    """
    import tensorflow as tf

    forward = _with_sigmoid(model_forward(model), sigmoid)
    return tf.function(forward, input_signature=_signature(model), jit_compile=jit_compile)


def _with_sigmoid(forward: Callable, sigmoid: bool) -> Callable:
    if not sigmoid:
        return forward
    import tensorflow as tf

    return lambda video, audio: tf.sigmoid(forward(video, audio))


class SetPredictor:
    """Scores a set of windows (one half) given as chunks: `predictor(chunks)` -> [windows, C] in chunk order.

    Where a batch-norm of the model is evaluated with batch statistics (`archis.names.BN_EVALS`, V&D's), the
    statistics are the whole set's (`archis.stepnorm.SetStatistics`: one more forward pass per batch-norm depth),
    so the scores of a half depend neither on the chunk size nor on what else is scored; otherwise each chunk is
    one plain call of `predict_function`."""

    def __init__(self, model: Any, *, sigmoid: bool = False, jit_compile: bool = False) -> None:
        self.per_set = needs_set_statistics(model)
        self.plain = predict_function(model, sigmoid=sigmoid, jit_compile=jit_compile)
        self.stats = (
            SetStatistics(model, _with_sigmoid(model_forward(model), sigmoid), _signature(model))
            if self.per_set
            else None
        )
        self.num_classes = int(model.outputs[0].shape[-1])
        self._moving: Callable | None = None
        self._model, self._sigmoid = model, sigmoid

    def moving(self, video, audio):
        """One call normalising every batch-norm with its moving averages, whatever its `eval_mode` (live mode: a
        half's statistics need the whole half)."""
        if not self.per_set:
            return self.plain(video, audio)
        if self._moving is None:
            import tensorflow as tf

            forward = _with_sigmoid(model_forward(self._model), self._sigmoid)

            def run(video, audio):
                with moving_statistics():
                    return forward(video, audio)

            self._moving = tf.function(run, input_signature=_signature(self._model))
        return self._moving(video, audio)

    def __call__(self, chunks: Callable[[], Iterable[tuple[Any, Any]]]) -> np.ndarray:
        """`chunks()` yields (video, audio) batches [b, N, D] of the set, the same ones each time it is called."""
        if self.stats is None:
            out = [self.plain(video, audio).numpy() for video, audio in chunks()]
        else:
            out = [o.numpy() for o in self.stats(chunks)]
        return np.concatenate(out) if out else np.zeros((0, self.num_classes), np.float32)


def set_predictor(model: Any, *, sigmoid: bool = False, jit_compile: bool = False) -> SetPredictor:
    """A `SetPredictor` of `model` (see the class)."""
    return SetPredictor(model, sigmoid=sigmoid, jit_compile=jit_compile)
