"""Batch-norm whose training statistics can be those of a whole optimiser step computed in micro-batches, and whose
evaluation statistics are the ones its original used.

`StepBatchNorm` is Keras' `BatchNormalization` (same weights) with:

- a `level`: its depth among the model's batch-norms (0: nothing normalised upstream of it). While a
  `training.wholestep.WholeStepNorm` is active (`step_statistics`), training calls hand the layer's input to it,
  which normalises with the whole step's moments and gives the exact whole-batch gradient (see that module);
- `unbiased`: the moving variance moves with the unbiased batch variance n / (n - 1) (PyTorch's BatchNorm1d, the
  seed's), else with the biased one (TF1 slim, V&D's; Keras);
- `eval_mode` (`archis.names.BN_EVALS`), the statistics of an evaluation call (`training=False`): `batch`, those of
  the windows scored together (V&D: its networks kept `is_training=True`, so every evaluation batch, one half,
  was normalised with its own moments); `moving` and `population`, the moving averages (the second overwritten
  after each epoch with the moments of the training windows, `population_statistics`); `corrected`, the moving
  averages bias-corrected (divided by 1 - momentumᵗ, the initial (0, 1) taken out; `moving_weight` counts it).

For `batch`, which windows are "scored together" is fixed by the caller, never by the size of a model call:
`SetStatistics` computes the moments of a whole set of windows (a half) read in chunks, level by level (one
forward pass per batch-norm depth, then the scoring pass), so a half scores the same whatever the chunk size and
whatever else is scored in the same run (`archis.predict.set_predictor`).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import keras
from keras import ops

from soccer_highlights.archis.names import BN_EVALS
from soccer_highlights.common.errors import UserError

_ACTIVE = contextvars.ContextVar("archis_step_statistics", default=None)
_EVAL = contextvars.ContextVar("archis_set_statistics", default=None)
_MOVING = contextvars.ContextVar("archis_moving_statistics", default=False)


@contextlib.contextmanager
def moving_statistics() -> Iterator[None]:
    """Evaluation calls traced inside normalise `batch` layers with their moving averages too (live mode, which
    cannot wait for the end of a half)."""
    token = _MOVING.set(True)
    try:
        yield
    finally:
        _MOVING.reset(token)


@contextlib.contextmanager
def step_statistics(norm: Any) -> Iterator[None]:
    """Training calls traced inside normalise their `StepBatchNorm` layers through `norm.normalize(layer, x)`."""
    token = _ACTIVE.set(norm)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def _moments(x):
    axes = list(range(len(x.shape) - 1))
    return ops.mean(x, axis=axes), ops.var(x, axis=axes)


def _rows(x):
    """The number of rows a batch-norm's moments are taken over (every axis but the last), as float32."""
    return ops.cast(ops.size(x), "float32") / float(x.shape[-1])


@keras.saving.register_keras_serializable(package="archis")
class StepBatchNorm(keras.layers.BatchNormalization):
    """Keras batch-norm with a depth `level`, its original's variance update and evaluation statistics."""

    def __init__(self, level: int = 0, eval_mode: str = "moving", unbiased: bool = False, **kwargs):
        super().__init__(**kwargs)
        if eval_mode not in BN_EVALS:
            raise UserError(f"unknown batch-norm evaluation {eval_mode!r}; valid: {', '.join(BN_EVALS)}")
        self.level = int(level)
        self.eval_mode = eval_mode
        self.unbiased = bool(unbiased)

    def build(self, input_shape):
        super().build(input_shape)
        if self.eval_mode == "corrected":  # 1 - momentumᵗ after t updates: the weight of the batches in the average
            self.moving_weight = self.add_weight(
                shape=(), name="moving_weight", initializer="zeros", trainable=False, autocast=False
            )

    def call(self, inputs, training=None, mask=None):
        norm = _ACTIVE.get()
        if training and norm is not None:
            return norm.normalize(self, inputs)
        x = ops.cast(inputs, "float32")
        if training and self.trainable:
            mean, var = _moments(x)
            self.update_moving(mean, var, _rows(x))
        else:
            mean, var = self.evaluation_statistics(x)
        gamma = ops.cast(self.gamma, x.dtype) if self.scale else None
        beta = ops.cast(self.beta, x.dtype) if self.center else None
        y = ops.batch_normalization(x, mean, var, axis=-1, offset=beta, scale=gamma, epsilon=self.epsilon)
        return ops.cast(y, self.compute_dtype)

    def evaluation_statistics(self, x):
        """(mean, variance) of an evaluation call: an active `SetStatistics`' (while it measures or applies a set),
        else by `eval_mode`: the call's own moments (`batch`), or the moving averages (bias-corrected)."""
        stats = _EVAL.get()
        if stats is not None:
            return stats.statistics(self, x)
        if self.eval_mode == "batch" and not _MOVING.get():
            return _moments(x)
        mean, var = ops.cast(self.moving_mean, "float32"), ops.cast(self.moving_variance, "float32")
        if self.eval_mode == "corrected":
            w = ops.cast(self.moving_weight, "float32")
            safe = ops.maximum(w, 1e-30)
            mean = ops.where(w > 0, mean / safe, mean)
            var = ops.where(w > 0, (var - (1.0 - w)) / safe, var)
        return mean, var

    def update_moving(self, mean, var, rows) -> None:
        """One move of the moving averages with a batch's moments (biased `var` over `rows` rows)."""
        if self.unbiased:
            rows = ops.cast(rows, "float32")
            var = ops.cast(var, "float32") * rows / ops.maximum(rows - 1.0, 1.0)
        m = float(self.momentum)
        self.moving_mean.assign(ops.cast(self.moving_mean, "float32") * m + ops.cast(mean, "float32") * (1.0 - m))
        self.moving_variance.assign(
            ops.cast(self.moving_variance, "float32") * m + ops.cast(var, "float32") * (1.0 - m)
        )
        if self.eval_mode == "corrected":
            self.moving_weight.assign(self.moving_weight * m + (1.0 - m))

    def get_config(self):
        return {**super().get_config(), "level": self.level, "eval_mode": self.eval_mode, "unbiased": self.unbiased}


def model_forward(model: Any) -> Callable[[Any, Any], Any]:
    """`f(video, audio)`: float32 logits of an evaluation call of a dict-input ({"video", "audio"}) or two-input
    list model."""
    structure = model.input
    names = list(structure) if isinstance(structure, Mapping) else None

    def forward(video, audio):
        inputs = dict(zip(names, (video, audio), strict=True)) if names else [video, audio]
        return ops.cast(model(inputs, training=False), "float32")

    return forward


def step_norms(model: Any) -> list[StepBatchNorm]:
    return [layer for layer in model._flatten_layers() if isinstance(layer, StepBatchNorm)]


def needs_set_statistics(model: Any) -> bool:
    """Whether scoring `model` needs the statistics of whole sets of windows (a batch-norm evaluated `batch`)."""
    return any(layer.eval_mode == "batch" for layer in step_norms(model))


class _Sums:
    def __init__(self, layer: StepBatchNorm) -> None:
        import tensorflow as tf

        k = int(layer.moving_mean.shape[0])
        self.layer = layer
        self.s1 = tf.Variable(tf.zeros([k], tf.float64), trainable=False)
        self.s2 = tf.Variable(tf.zeros([k], tf.float64), trainable=False)
        self.count = tf.Variable(tf.zeros([], tf.float64), trainable=False)
        self.mean = tf.Variable(tf.zeros([k], tf.float32), trainable=False)
        self.var = tf.Variable(tf.ones([k], tf.float32), trainable=False)


class SetStatistics:
    """The batch-norm moments of a set of windows read in chunks, level by level, and the set scored with them.

    `measure(chunks)` runs one forward pass over the set per batch-norm depth (each depth normalised with the
    set's moments of the shallower ones), sums in float64; `__call__(chunks)` then returns the outputs of each
    chunk normalised with the set's moments. `chunks()` yields the inputs of `forward` (e.g. video, audio)."""

    def __init__(self, model: Any, forward: Callable[..., Any], signature: list[Any] | None = None) -> None:
        import tensorflow as tf

        self.sums = {id(layer): _Sums(layer) for layer in step_norms(model)}
        self.levels = sorted({s.layer.level for s in self.sums.values()})
        self.phase: tuple[str, int] = ("apply", -1)  # read while tracing
        self._fns: dict[tuple[str, int], Any] = {}
        self._forward, self._signature, self._tf = forward, signature, tf

    def statistics(self, layer: StepBatchNorm, x):
        """The moments `layer` normalises with in the current phase (called while tracing)."""
        tf = self._tf
        s, (kind, level) = self.sums[id(layer)], self.phase
        if kind == "moments" and layer.level == level:
            x64 = tf.cast(x, tf.float64)
            axes = list(range(len(x.shape) - 1))
            s.s1.assign_add(tf.reduce_sum(x64, axes))
            s.s2.assign_add(tf.reduce_sum(tf.square(x64), axes))
            s.count.assign_add(tf.cast(tf.size(x64) // tf.shape(x64)[-1], tf.float64))
        if kind == "apply" or layer.level < level:
            return tf.identity(s.mean), tf.identity(s.var)
        return _moments(x)  # not measured yet: matters to no layer measured in this pass

    def _fn(self, kind: str, level: int):
        if (kind, level) not in self._fns:

            def run(*args):
                self.phase = (kind, level)
                token = _EVAL.set(self)
                try:
                    out = self._forward(*args)
                finally:
                    _EVAL.reset(token)
                # a moments pass returns nothing: TensorFlow prunes the layers that feed no measured batch-norm
                return self._tf.constant(0.0) if kind == "moments" else out

            self._fns[kind, level] = self._tf.function(run, input_signature=self._signature, reduce_retracing=True)
        return self._fns[kind, level]

    def measure(self, chunks: Callable[[], Iterable[tuple[Any, ...]]]) -> None:
        """The set's moments (biased variance) of every batch-norm, shallowest depth first."""
        tf = self._tf
        for level in self.levels:
            todo = [s for s in self.sums.values() if s.layer.level == level]
            for s in todo:
                for v in (s.s1, s.s2, s.count):
                    v.assign(tf.zeros_like(v))
            fn = self._fn("moments", level)
            for args in chunks():
                fn(*args)
            for s in todo:
                n = tf.maximum(s.count, 1.0)
                mean = s.s1 / n
                s.mean.assign(tf.cast(mean, tf.float32))
                s.var.assign(tf.cast(tf.maximum(s.s2 / n - tf.square(mean), 0.0), tf.float32))

    def __call__(self, chunks: Callable[[], Iterable[tuple[Any, ...]]]) -> list[Any]:
        """Each chunk's outputs, every batch-norm normalising with the moments of the whole set."""
        self.measure(chunks)
        fn = self._fn("apply", -1)
        return [fn(*args) for args in chunks()]


def population_statistics(model: Any, chunks: Callable[[], Iterable[tuple[Any, Any]]]) -> None:
    """Every batch-norm's moving averages set to the moments of the windows `chunks()` yields ((video, audio)
    batches; the variance unbiased where the layer's is): `population` evaluation, after each epoch."""
    if not step_norms(model):
        return
    stats = SetStatistics(model, model_forward(model))
    stats.measure(chunks)
    for s in stats.sums.values():
        layer, var = s.layer, s.var
        if layer.unbiased:
            n = float(s.count.numpy())
            var = var * (n / max(n - 1.0, 1.0))
        layer.moving_mean.assign(s.mean)
        layer.moving_variance.assign(var)
