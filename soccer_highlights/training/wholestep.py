"""Whole-step batch-norm for an optimiser step computed in micro-batches: the update equals the whole batch's.

A batch-norm in training normalises with the moments of its whole batch, and its gradient goes through those
moments: for x̂ = (x - μ) / s, dL/dx = (dL/dx̂ - mean(dL/dx̂) - x̂ · mean(dL/dx̂ · x̂)) / s, the means taken over
the whole batch. A step cut into micro-batches gets both right in several passes over its micro-batches, each
micro-batch read again every pass (so memory still follows the micro-batch):

1. one forward pass per batch-norm depth (`StepBatchNorm.level`): the sums of x and x² of the layers of that
   depth, whose inputs depend only on shallower layers already normalised with their whole-step moments;
2. one forward and backward pass per depth, deepest first: the sums of dL/dx̂ and dL/dx̂ · x̂ of that depth,
   the deeper layers already passing back the whole-batch gradient above;
3. the step's gradient pass, every layer normalising with the whole-step moments and passing back the
   whole-batch gradient; then the moving averages move once, with the whole-step moments.

With batch-norms two deep (NetVLAD's cluster batch-norm, then context gating's) a step of several micro-batches
costs two more forward and two more forward-and-backward passes: about 3.5 times a single pass. A step of one
micro-batch is Keras' own batch-norm (one pass). Sums are float64.
"""

from __future__ import annotations

from typing import Any

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

    def reset(self) -> None:
        for v in (self.s1, self.s2, self.a1, self.a2, self.count):
            v.assign(v * 0)


class WholeStepNorm:
    """The passes of a step over the `StepBatchNorm` layers of `model` (see the module docstring)."""

    def __init__(self, model: Any) -> None:
        self.sums = {
            id(layer): _LayerSums(layer) for layer in model._flatten_layers() if isinstance(layer, StepBatchNorm)
        }
        self.levels = sorted({s.layer.level for s in self.sums.values()})
        self.phase: tuple[str, int] = ("apply", -1)  # read while tracing
        self.collected: list[tuple[_LayerSums, Any]] = []  # (layer sums, x̂) of the traced cotangent pass

    def __bool__(self) -> bool:
        return bool(self.sums)

    @property
    def phases(self) -> list[tuple[str, int]]:
        """The passes of a step of several micro-batches, in order."""
        return (
            [("moments", lv) for lv in self.levels]
            + [("cotangents", lv) for lv in reversed(self.levels)]
            + [("apply", -1)]
        )

    def normalize(self, layer: StepBatchNorm, x):
        """The layer's training output in the current phase (called by `StepBatchNorm.call` while tracing)."""
        import tensorflow as tf

        s, (kind, level) = self.sums[id(layer)], self.phase
        x32 = tf.cast(x, tf.float32)
        axes = list(range(len(x.shape) - 1))
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
            corrected = kind == "apply" or layer.level > level
            xhat = self._fixed(x32, s, layer.epsilon, corrected)
            if kind == "cotangents" and layer.level == level:
                self.collected.append((s, xhat))
        y = xhat
        if layer.scale:
            y = y * tf.cast(layer.gamma, tf.float32)
        if layer.center:
            y = y + tf.cast(layer.beta, tf.float32)
        return tf.cast(y, x.dtype)

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

    def start_step(self) -> None:
        for s in self.sums.values():
            s.reset()

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

    def make_pass(self, model: Any, kind: str, level: int, pos_weight, signature):
        """A compiled micro-batch call of a moments or cotangents pass (the apply pass is `AccumulatingStep`'s)."""
        import tensorflow as tf

        def run(video, audio, labels, denom):
            self.phase, self.collected = (kind, level), []
            with step_statistics(self):
                if kind == "moments":
                    model({"video": video, "audio": audio}, training=True)
                    return tf.constant(0.0)
                with tf.GradientTape() as tape:
                    logits = tf.cast(model({"video": video, "audio": audio}, training=True), tf.float32)
                    per_window = tf.reduce_sum(tf.nn.weighted_cross_entropy_with_logits(labels, logits, pos_weight), 1)
                    loss = tf.reduce_sum(per_window) / denom
                collected = list(self.collected)
                grads = tape.gradient(loss, [x for _, x in collected])
                for (s, xhat), g in zip(collected, grads, strict=True):
                    axes = list(range(len(xhat.shape) - 1))
                    g = tf.zeros_like(xhat) if g is None else g
                    s.a1.assign_add(tf.cast(tf.reduce_sum(g, axes), tf.float64))
                    s.a2.assign_add(tf.cast(tf.reduce_sum(g * xhat, axes), tf.float64))
                return loss

        return tf.function(run, input_signature=signature, reduce_retracing=True)


def has_step_norm(model: Any) -> bool:
    return any(isinstance(layer, StepBatchNorm) for layer in model._flatten_layers())
