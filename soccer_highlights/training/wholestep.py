"""Whole-step batch-norm for an optimiser step computed in micro-batches: the update equals the whole batch's.

A batch-norm in training normalises with the moments of its whole batch, and its gradient goes through those
moments: for x̂ = (x - μ) / s, dL/dx = (dL/dx̂ - mean(dL/dx̂) - x̂ · mean(dL/dx̂ · x̂)) / s, the means taken over
the whole batch. A step cut into micro-batches gets both right in several passes over its micro-batches, each
micro-batch read again every pass (so memory still follows the micro-batch):

1. one forward pass per batch-norm depth (`StepBatchNorm.level`): the sums of x and x² of the layers of that
   depth, whose inputs depend only on shallower layers already normalised with their whole-step moments. Only the
   prefix of the model that feeds those layers runs (TensorFlow prunes the rest of the traced call);
2. one forward and backward pass per depth, deepest first: the sums of dL/dx̂ and dL/dx̂ · x̂ of that depth,
   the deeper layers already passing back the whole-batch gradient above;
3. the step's gradient pass, every layer normalising with the whole-step moments and passing back the
   whole-batch gradient; then the moving averages move once, with the whole-step moments.

NetVLAD's projection (`archis.reuse`, most of the arithmetic at VLAD-512) is computed once per window, in the
first pass where the batch-norms upstream of it have their whole-step moments, kept ([step windows, O] per
layer: 2 KiB a window at O = 512) and read back by the later passes, which only run its backward. When the
shallowest batch-norms are NetVLAD cluster batch-norms over model inputs (z = u W, nothing trainable feeding u),
their cotangent pass is folded into the gradient pass: that pass holds their moments fixed, sums dL/dx̂,
dL/dx̂ · x̂, uᵀ1 and uᵀx̂, and `correct` adds the rest of W's whole-batch gradient before the step is applied. For
concat (batch-norms two deep: NetVLAD's cluster batch-norm, then context gating's) a step of several micro-batches
then costs the projection's forward, input gradient and weight gradient once each, as a single pass does, plus
the layers before the projection run again in the passes that need them (bench/results_wholestep.md).

Only trainable batch-norms count (a frozen one normalises with its evaluation statistics, as Keras'); a model
without any needs no extra pass. A step of one micro-batch is Keras' own batch-norm (one pass). Sums are float64.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from soccer_highlights.archis.pooling import NetVLAD
from soccer_highlights.archis.reuse import reusing
from soccer_highlights.archis.stepnorm import StepBatchNorm, step_statistics


class _LayerSums:
    """Whole-step sums and moments of one `StepBatchNorm` (plain tf.Variables: not weights of the model)."""

    def __init__(self, layer: StepBatchNorm) -> None:
        import tensorflow as tf

        k = int(layer.moving_mean.shape[0])
        self.layer = layer

        def var(dtype):
            return tf.Variable(tf.zeros([k], dtype), trainable=False)

        self.s1, self.s2, self.a1, self.a2 = var(tf.float64), var(tf.float64), var(tf.float64), var(tf.float64)
        self.count = tf.Variable(tf.zeros([], tf.float64), trainable=False)
        self.mean, self.var = var(tf.float32), var(tf.float32)
        # a batch-norm fed by `u @ weights` (u: a model input): the weights and the sums Σ uᵀ1, Σ uᵀx̂ ([D, K])
        self.weights: Any = None
        self.u1: Any = None
        self.ux: Any = None

    def link(self, weights: Any) -> None:
        import tensorflow as tf

        self.weights = weights
        self.u1 = tf.Variable(tf.zeros(weights.shape, tf.float64), trainable=False)
        self.ux = tf.Variable(tf.zeros(weights.shape, tf.float64), trainable=False)

    def reset(self) -> None:
        for v in (self.s1, self.s2, self.a1, self.a2, self.count, self.u1, self.ux):
            if v is not None:
                v.assign(v * 0)


class WholeStepNorm:
    """The passes of a step over the `StepBatchNorm` layers of `model` (see the module docstring)."""

    def __init__(self, model: Any) -> None:
        import tensorflow as tf

        layers = model._flatten_layers()
        self.sums = {
            id(layer): _LayerSums(layer)
            for layer in layers
            if isinstance(layer, StepBatchNorm) and layer.trainable  # a frozen one uses its evaluation statistics
        }
        self.levels = sorted({s.layer.level for s in self.sums.values()})
        # The shallowest batch-norms, when each is NetVLAD's cluster batch-norm over a model input (scores = x @ W):
        # their cotangent pass merges into the gradient pass (see `correct`)
        for layer in layers:
            bn = getattr(layer, "cluster_bn", None)
            if isinstance(layer, NetVLAD) and id(bn) in self.sums and _reads_model_input(model, layer):
                self.sums[id(bn)].link(layer.cluster_weights)
        shallow = [s for s in self.sums.values() if self.levels and s.layer.level == self.levels[0]]
        self.merged = bool(shallow) and all(s.weights is not None for s in shallow)
        self.linear: list[tuple[_LayerSums, Any, Any]] = []  # (sums, BN input, x̂) of the traced gradient pass
        self.phase: tuple[str, int] = ("apply", -1)  # read while tracing
        self.offset: Any = 0  # the micro-batch's first window in the step and its size (traced scalars)
        self.windows: Any = 0
        self.collected: list[tuple[_LayerSums, Any]] = []  # (layer sums, x̂) of the traced cotangent pass
        # NetVLAD projections kept across the passes of a step, [step windows, O] (archis.reuse)
        self.kept = {
            id(layer): tf.Variable(
                tf.zeros([0, layer.output_dim], layer.compute_dtype),
                shape=tf.TensorShape([None, layer.output_dim]),
                trainable=False,
            )
            for layer in model._flatten_layers()
            if isinstance(layer, NetVLAD)
        }

    @contextlib.contextmanager
    def active(self, kind: str, level: int, offset: Any, windows: Any) -> Iterator[None]:
        """Model calls traced inside run pass (`kind`, `level`) on the micro-batch of `windows` windows starting at
        the step's window `offset`."""
        self.phase, self.offset, self.windows, self.collected, self.linear = (kind, level), offset, windows, [], []
        with step_statistics(self), reusing(self):
            yield

    def __bool__(self) -> bool:
        return bool(self.sums)

    @property
    def phases(self) -> list[tuple[str, int]]:
        """The passes of a step of several micro-batches, in order."""
        merged = self.levels[:1] if self.merged else []
        return (
            [("moments", lv) for lv in self.levels]
            + [("cotangents", lv) for lv in reversed(self.levels) if lv not in merged]
            + [("apply", -1)]
        )

    def normalize(self, layer: StepBatchNorm, x):
        """The layer's training output in the current phase (called by `StepBatchNorm.call` while tracing)."""
        import tensorflow as tf

        x32 = tf.cast(x, tf.float32)
        axes = list(range(len(x.shape) - 1))
        if id(layer) not in self.sums:  # frozen: its evaluation statistics, as Keras' batch-norm
            stats = getattr(layer, "evaluation_statistics", None)
            mean, var = stats(x32) if stats else (layer.moving_mean, layer.moving_variance)
            return self._affine(
                layer,
                (x32 - tf.cast(mean, tf.float32)) * tf.math.rsqrt(tf.cast(var, tf.float32) + layer.epsilon),
                x.dtype,
            )
        s, (kind, level) = self.sums[id(layer)], self.phase
        if kind == "moments":
            if layer.level == level:
                x64 = tf.cast(x32, tf.float64)
                s.s1.assign_add(tf.reduce_sum(x64, axes))
                s.s2.assign_add(tf.reduce_sum(tf.square(x64), axes))
                s.count.assign_add(tf.cast(tf.size(x64) // tf.shape(x64)[-1], tf.float64))
            if layer.level < level:
                mean, var = s.mean, s.var
            else:  # not known yet: this layer's output matters to no layer measured in this pass
                mean, var = tf.nn.moments(x32, axes)
            xhat = (x32 - mean) * tf.math.rsqrt(var + layer.epsilon)
        else:
            merged = kind == "apply" and self.merged and layer.level == self.levels[0]
            corrected = not merged and (kind == "apply" or layer.level > level)
            xhat = self._fixed(x32, s, layer.epsilon, corrected)
            if kind == "cotangents" and layer.level == level:
                self.collected.append((s, xhat))
            if merged:  # the moments' part of its gradient is added by `correct`, once per step
                self.linear.append((s, x, xhat))
        return self._affine(layer, xhat, x.dtype)

    def accumulate(self, tape: Any, linear: list[tuple[_LayerSums, Any, Any]], grads: list[Any]) -> None:
        """In the gradient pass of a merged step (traced, `tape` persistent): the shallowest batch-norms' sums of
        dL/dx̂ and dL/dx̂ · x̂ (`grads`: dL/dx̂ of each (sums, z, x̂) of `linear`, from the pass's one backward), and
        of uᵀ1 and uᵀx̂ (vector-Jacobian products of z = u @ W)."""
        import tensorflow as tf

        for (s, z, xhat), g in zip(linear, grads, strict=True):
            axes = list(range(len(xhat.shape) - 1))
            g = tf.zeros_like(xhat) if g is None else g
            s.a1.assign_add(tf.cast(tf.reduce_sum(g, axes), tf.float64))
            s.a2.assign_add(tf.cast(tf.reduce_sum(g * xhat, axes), tf.float64))
            ones = tape.gradient(z, s.weights, output_gradients=tf.ones_like(z))
            cross = tape.gradient(z, s.weights, output_gradients=tf.cast(xhat, z.dtype))
            s.u1.assign_add(tf.cast(ones, tf.float64))
            s.ux.assign_add(tf.cast(cross, tf.float64))

    def correct(self, accum: list[Any], variables: list[Any]) -> None:
        """Before the step is applied (traced): the whole-batch gradient of each merged batch-norm's weights W. The
        gradient pass gave Σ uᵀ dL/dx̂ / s (moments held fixed); the whole batch's dL/dz is
        (dL/dx̂ - mean(dL/dx̂) - x̂ · mean(dL/dx̂ · x̂)) / s, so W's gradient lacks
        -(Σ uᵀ1 · mean(dL/dx̂) + Σ uᵀx̂ · mean(dL/dx̂ · x̂)) / s, column by column (z = u W: column k of W feeds
        channel k only, and nothing trainable feeds u)."""
        import tensorflow as tf

        where = {id(v): i for i, v in enumerate(variables)}
        for s in self.sums.values():
            if s.weights is None or id(s.weights) not in where:
                continue
            inv = tf.math.rsqrt(tf.cast(s.var, tf.float64) + s.layer.epsilon)
            c1, c2 = s.a1 / s.count * inv, s.a2 / s.count * inv
            fix = s.u1 * c1[None, :] + s.ux * c2[None, :]
            accum[where[id(s.weights)]].assign_sub(tf.cast(fix, tf.float32))

    @staticmethod
    def _affine(layer: StepBatchNorm, xhat, dtype):
        import tensorflow as tf

        y = xhat
        if layer.scale:
            y = y * tf.cast(layer.gamma, tf.float32)
        if layer.center:
            y = y + tf.cast(layer.beta, tf.float32)
        return tf.cast(y, dtype)

    def project(self, layer: Any, x, w, after_level: int):
        """`x @ w` of `layer` in the current pass (called by `archis.reuse.project` while tracing): computed and
        kept in the first pass where the batch-norms upstream (at most `after_level` deep) have their whole-step
        moments, read back in the later passes with the product's gradient (none in a pass that needs no gradient
        below it: then nothing upstream of it runs)."""
        import tensorflow as tf

        kind, level = self.phase
        kept = self.kept.get(id(layer))
        phases = self.phases
        first = next((i for i, (k, lv) in enumerate(phases) if k != "moments" or lv > after_level), len(phases))
        now = phases.index(self.phase) if self.phase in phases else -1
        if kept is None or now < first:
            return tf.matmul(x, tf.cast(w, x.dtype))
        rows = tf.cast(self.offset, tf.int64) + tf.range(tf.cast(self.windows, tf.int64))
        if now == first:
            y = tf.matmul(x, tf.cast(w, x.dtype))
            kept.scatter_update(tf.IndexedSlices(tf.cast(y, kept.dtype), rows))
            return y
        stored = tf.cast(tf.gather(kept, rows), x.dtype)
        if kind == "moments" or (kind == "cotangents" and level > after_level):
            return stored  # no gradient below it in this pass: the layers that feed it are not run at all

        @tf.custom_gradient
        def product(x, w):
            def grad(dy):
                return tf.matmul(dy, w, transpose_b=True), tf.matmul(x, dy, transpose_a=True)

            return stored, grad

        return product(x, tf.cast(w, x.dtype))

    @staticmethod
    def _fixed(x, s: _LayerSums, epsilon: float, corrected: bool):
        """x̂ with the whole-step moments; its gradient the whole batch's when `corrected`, else moments held fixed."""
        import tensorflow as tf

        inv = tf.math.rsqrt(tf.identity(s.var) + epsilon)
        mean = tf.identity(s.mean)
        if not corrected:
            return (x - mean) * inv
        a1 = tf.cast(s.a1 / s.count, tf.float32)
        a2 = tf.cast(s.a2 / s.count, tf.float32)

        @tf.custom_gradient
        def norm(x):
            xhat = (x - mean) * inv

            def grad(dxhat):
                return (dxhat - a1 - xhat * a2) * inv

            return xhat, grad

        return norm(x)

    def start_step(self, step_windows: int) -> None:
        import tensorflow as tf

        for s in self.sums.values():
            s.reset()
        for kept in self.kept.values():
            if kept.shape[0] != step_windows:
                kept.assign(tf.zeros([step_windows, kept.shape[1]], kept.dtype))

    def end_pass(self, kind: str, level: int) -> None:
        """After the last micro-batch of a moments pass: that depth's whole-step moments (biased variance, as Keras)."""
        import tensorflow as tf

        if kind != "moments":
            return
        for s in self.sums.values():
            if s.layer.level == level:
                mean = s.s1 / s.count
                s.mean.assign(tf.cast(mean, tf.float32))
                s.var.assign(tf.cast(tf.maximum(s.s2 / s.count - tf.square(mean), 0.0), tf.float32))

    def update_moving(self) -> None:
        """Once per step: the moving averages move with the whole-step moments, as one training call of the layer
        would (its variance update, biased or unbiased, is the layer's: `StepBatchNorm.update_moving`)."""
        for s in self.sums.values():
            s.layer.update_moving(s.mean, s.var, s.count)

    def make_pass(
        self,
        forward: Callable[[Any, Any, Any], Any],
        loss: Callable[[Any, Any, Any], Any],
        kind: str,
        level: int,
        signature: list[Any] | None,
    ):
        """A compiled micro-batch call (video, audio, labels, denom, offset) of a moments or cotangents pass (the apply
        pass is `AccumulatingStep`'s); `forward(video, audio, offset)` gives the float32 logits of a training call,
        `loss(labels, logits, denom)` the micro-batch's share of the step's loss."""
        import tensorflow as tf

        def run(video, audio, labels, denom, offset):
            with self.active(kind, level, offset, tf.shape(video)[0]):
                if kind == "moments":
                    forward(video, audio, offset)
                    return tf.constant(0.0)
                with tf.GradientTape() as tape:
                    value = loss(labels, forward(video, audio, offset), denom)
                collected = list(self.collected)
                grads = tape.gradient(value, [x for _, x in collected])
                for (s, xhat), g in zip(collected, grads, strict=True):
                    axes = list(range(len(xhat.shape) - 1))
                    g = tf.zeros_like(xhat) if g is None else g
                    s.a1.assign_add(tf.cast(tf.reduce_sum(g, axes), tf.float64))
                    s.a2.assign_add(tf.cast(tf.reduce_sum(g * xhat, axes), tf.float64))
                return value

        return tf.function(run, input_signature=signature, reduce_retracing=True)


def _reads_model_input(model: Any, layer: Any) -> bool:
    """Whether `layer` is called once, on one of the model's inputs (nothing trainable upstream of it)."""
    try:
        source = layer.input
    except (AttributeError, ValueError, RuntimeError):  # not a layer of the functional graph, or called twice
        return False
    return any(source is t for t in model.inputs)


def has_step_norm(model: Any) -> bool:
    return any(isinstance(layer, StepBatchNorm) for layer in model._flatten_layers())
