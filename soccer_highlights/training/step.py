"""Optimiser steps computed in micro-batches, in memory that does not grow with the step.

One optimiser step is still what the original makes it (every window of `--batch_size` halves, or
`--batch_windows` windows): the loss is the class-summed weighted cross-entropy averaged over the whole
step. The step's windows are read and pushed through the model a micro-batch at a time; each
micro-batch's loss is its windows' sum divided by the step's window count, so the gradients summed over
the micro-batches are the whole step's gradient. They are summed in one accumulator per replica and
applied once. Peak memory is then the weights, the optimiser's slots, the accumulator and one
micro-batch's activations, whatever the step size and the half length (the budget: `training.memory`).

Under a distribution strategy, every step's windows are split into one share per replica (across all
workers), so no window is seen twice in an epoch; each replica cuts its share into the same number of
micro-batches and the optimiser all-reduces the accumulated gradients once per step. Logits and labels
are gathered from every replica, so training metrics cover the whole step on every worker.

With one replica, batch-norm statistics and gradients are the whole step's whatever the micro-batch (extra passes
over the step's micro-batches: `training.wholestep`); across replicas they are each micro-batch's, whose size the
command fixes (`training.memory.FIXED_MICRO` unless a flag says otherwise), not the machine. Dropout masks are a
function of (layer seed, step, window index in the step) (`archis.dropout`), so they too are the same whatever
the micro-batch, and the same in every pass of a step.
"""

from __future__ import annotations

import math
import queue
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from soccer_highlights.archis.dropout import window_keys
from soccer_highlights.common.errors import UserError
from soccer_highlights.training.wholestep import WholeStepNorm

FEW_STEPS = 10


def warn_few_steps(steps: int, windows: int, batch_halves: int | None, batch_windows: int | None) -> None:
    """Warn (once per run) when an epoch makes fewer than FEW_STEPS optimiser steps: such runs barely learn."""
    if steps >= FEW_STEPS:
        return
    if batch_windows:
        how = f"--batch_windows {batch_windows}"
        hint = f"a smaller --batch_windows (e.g. {max(1, windows // 20)})"
    else:
        how = f"--batch_size {batch_halves} halves"
        hint = f"a smaller --batch_size or --batch_windows (e.g. {max(1, windows // 20)})"
    warnings.warn(
        f"an epoch of {windows} training windows with {how} is {steps} optimiser step"
        f"{'s' if steps != 1 else ''} (fewer than {FEW_STEPS}): the model will barely learn; use {hint}",
        UserWarning,
        stacklevel=2,
    )


def make_adam(learning_rate: float, **kwargs: Any) -> Any:
    """Keras Adam whose float32 update runs TensorFlow's fused in-place Adam kernel (same arithmetic as Keras'
    update; Keras' version makes several temporaries the size of each variable: gigabytes at VLAD-512)."""
    import keras
    import tensorflow as tf

    class FusedAdam(keras.optimizers.Adam):
        def update_step(self, gradient, variable, learning_rate):
            if self.amsgrad or variable.dtype != tf.float32:
                return super().update_step(gradient, variable, learning_rate)
            index = self._get_variable_index(variable)
            t = tf.cast(self.iterations + 1, tf.float32)
            b1, b2 = tf.constant(self.beta_1, tf.float32), tf.constant(self.beta_2, tf.float32)
            tf.raw_ops.ResourceApplyAdam(
                var=variable.handle,
                m=self._momentums[index].value.handle,
                v=self._velocities[index].value.handle,
                beta1_power=tf.pow(b1, t),
                beta2_power=tf.pow(b2, t),
                lr=tf.cast(learning_rate, tf.float32),
                beta1=b1,
                beta2=b2,
                epsilon=tf.constant(self.epsilon, tf.float32),
                grad=tf.cast(gradient, tf.float32),
                use_locking=False,
            )
            return None

    return FusedAdam(learning_rate=learning_rate, **kwargs)


def merge_small_steps(steps: Iterable[np.ndarray], replicas: int) -> Iterator[np.ndarray]:
    """Steps, with any step of fewer windows than replicas merged into the one before it (every replica
    needs at least one window per step)."""
    prev = None
    for idx in steps:
        if prev is not None and len(idx) < replicas:
            prev = np.concatenate([prev, idx])
            continue
        if prev is not None:
            yield prev
        prev = idx
    if prev is not None:
        if len(prev) < replicas:
            raise UserError(f"a training step of {len(prev)} windows cannot feed {replicas} replicas")
        yield prev


def split_step(idx: np.ndarray, replicas: int, micro_windows: int) -> list[list[np.ndarray]]:
    """[micro-batch][replica] window indices of one step: replica r gets the r-th share of the step, cut in
    as many non-empty micro-batches as every other replica (at most `micro_windows` + 1 windows each)."""
    shares = np.array_split(idx, replicas)
    n_micro = max(1, math.ceil(len(shares[-1]) / micro_windows))  # the last share is the smallest
    parts = [np.array_split(s, n_micro) for s in shares]
    return [[parts[r][j] for r in range(replicas)] for j in range(n_micro)]


def window_offset(step_windows: int, replicas: int, n_micro: int, replica: int, j: int) -> int:
    """Where micro-batch `j` of `replica` starts in its step (as `split_step` cuts a step of `step_windows`)."""
    share, extra = divmod(step_windows, replicas)
    start = replica * share + min(replica, extra)
    size = share + (replica < extra)
    part, more = divmod(size, n_micro)
    return start + j * part + min(j, more)


def prefetch(items: Iterator[Any], depth: int = 2) -> Iterator[Any]:
    """Iterate `items` in a background thread, `depth` ahead (NumPy reads release the GIL)."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def put(item: Any) -> bool:
        """Queue `item` unless the consumer stopped first (then nothing waits for it: no blocking put)."""
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in items:
                if not put(item):
                    return
        except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer
            put(exc)
            return
        put(done)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        while (item := q.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


class AccumulatingStep:
    """One optimiser step over any number of micro-batches, under any `tf.distribute` strategy.

    `run(micro)`: `micro` is a list over micro-batches of {global replica id: (video, audio, labels)} for this
    worker's replicas; returns the logits and labels gathered from every replica, in replica order.
    """

    def __init__(
        self,
        model: Any,
        optimizer: Any,
        pos_weight: np.ndarray,
        strategy: Any,
        window_shape: tuple[int, int] | None = None,
        loss_reduction: str = "sum_classes",
    ) -> None:
        """`window_shape` (N, D): with one replica, each kind of micro-step is traced once for any batch size, so
        a resumed run computes bit for bit what the uninterrupted run computed. `loss_reduction`: `sum_classes`
        (V&D: summed over classes, averaged over windows) or `mean_classes` (the seed's BCEWithLogitsLoss: averaged
        over windows and classes, a loss C times smaller)."""
        import tensorflow as tf

        self.model, self.optimizer, self.strategy = model, optimizer, strategy
        self.pos_weight = tf.constant(pos_weight, tf.float32)
        self.loss_divisor = float(len(pos_weight)) if loss_reduction == "mean_classes" else 1.0
        self.local_ids = [
            int(r)
            for r in strategy.experimental_local_results(
                strategy.experimental_distribute_values_from_function(lambda ctx: ctx.replica_id_in_sync_group)
            )
        ]
        self.replicas = int(strategy.num_replicas_in_sync)
        self.accum: list[Any] | None = None
        self.window_shape = window_shape
        self._fns = {kind: self._make(kind) for kind in ("single", "first", "add", "last")}
        # whole-step batch-norm statistics over several micro-batches (one replica; see training.wholestep)
        norm = WholeStepNorm(model) if self.replicas == 1 else None
        self.norm = norm if norm else None
        self._exact_fns: dict[Any, Any] = {}

    def _make_accumulators(self) -> None:
        import tensorflow as tf

        with self.strategy.scope():
            self.accum = [
                tf.Variable(
                    tf.zeros(v.shape, tf.float32),
                    trainable=False,
                    name=f"accum_{i}",
                    synchronization=tf.VariableSynchronization.ON_READ,
                    aggregation=tf.VariableAggregation.SUM,
                )
                for i, v in enumerate(self.model.trainable_variables)
            ]

    def _forward(self, video, audio, offset):
        """Float32 logits of a training call on the micro-batch whose first window is the step's `offset`-th: dropout
        masks keyed by (step, window), the same in every pass and for any micro-batch (`archis.dropout`)."""
        import tensorflow as tf

        with window_keys(self.optimizer.iterations, offset):
            return tf.cast(self.model({"video": video, "audio": audio}, training=True), tf.float32)

    def _loss(self, labels, logits, denom):
        """The micro-batch's share of the step's loss: its windows' class-summed weighted cross-entropy / `denom`."""
        import tensorflow as tf

        per_window = tf.reduce_sum(tf.nn.weighted_cross_entropy_with_logits(labels, logits, self.pos_weight), 1)
        return tf.reduce_sum(per_window) / denom

    def _make(self, kind: str, exact: bool = False):
        import tensorflow as tf

        model, optimizer = self.model, self.optimizer

        def forward(video, audio, offset):
            if not exact:
                return self._forward(video, audio, offset)
            assert self.norm is not None  # exact steps exist only with whole-step batch-norm
            with self.norm.active("apply", -1, offset, tf.shape(video)[0]):
                return self._forward(video, audio, offset)

        merged = exact and self.norm is not None and self.norm.merged

        def replica_fn(video, audio, labels, denom, offset):
            with tf.GradientTape(persistent=merged) as tape:
                logits = forward(video, audio, offset)
                loss = self._loss(labels, logits, denom)
            variables = model.trainable_variables
            if merged and self.norm is not None:  # the shallowest batch-norms' cotangents, in the same backward
                linear = list(self.norm.linear)
                grads = tape.gradient(loss, [*variables, *(xhat for _, _, xhat in linear)])
                self.norm.accumulate(tape, linear, grads[len(variables) :])
                grads = grads[: len(variables)]
            else:
                grads = tape.gradient(loss, variables)
            if kind == "first":
                for a, g in zip(self.accum, grads, strict=True):
                    a.assign(g)
            elif kind == "add":
                for a, g in zip(self.accum, grads, strict=True):
                    a.assign_add(g)
            else:
                if kind == "last":  # add in place, then apply the accumulator: no extra gradient-sized tensor
                    for a, g in zip(self.accum, grads, strict=True):
                        a.assign_add(g)
                    if merged and self.norm is not None:
                        self.norm.correct(self.accum, model.trainable_variables)
                    grads = [a.read_value() for a in self.accum]
                optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
            return logits

        @tf.function(input_signature=self._signature(), reduce_retracing=True)
        def step(video, audio, labels, denom, offset):
            logits = self.strategy.run(replica_fn, args=(video, audio, labels, denom, offset))
            return self.strategy.gather(logits, axis=0), self.strategy.gather(labels, axis=0)

        return step

    def _signature(self) -> list[Any] | None:
        import tensorflow as tf

        if self.window_shape is None or self.replicas != 1:
            return None
        frames = tf.TensorSpec((None, *self.window_shape), tf.float32)
        return [
            frames,
            frames,
            tf.TensorSpec((None, int(self.pos_weight.shape[0])), tf.float32),
            tf.TensorSpec((), tf.float32),
            tf.TensorSpec((), tf.int64),
        ]

    def passes(self, n_micro: int) -> int:
        """Passes over the micro-batches of a step of `n_micro` (one, unless whole-step batch-norm needs more)."""
        return len(self.norm.phases) if self.norm is not None and n_micro > 1 else 1

    def _exact(
        self, args: list[Any], j: int, n_micro: int, p: int, step_windows: int
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Micro-batch `j` in pass `p` of a step with whole-step batch-norm; logits and labels in the last pass."""
        norm = self.norm
        assert norm is not None  # called only for whole-step batch-norm (passes() > 1)
        kind, level = norm.phases[p]
        if p == 0 and j == 0:
            norm.start_step(step_windows)
        if kind != "apply":
            key = (kind, level)
            if key not in self._exact_fns:
                self._exact_fns[key] = norm.make_pass(self._forward, self._loss, kind, level, self._signature())
            self._exact_fns[key](*args)
            if j == n_micro - 1:
                norm.end_pass(kind, level)
            return None
        step_kind = "first" if j == 0 else "last" if j == n_micro - 1 else "add"
        if step_kind not in self._exact_fns:
            self._exact_fns[step_kind] = self._make(step_kind, exact=True)
        logits, labels = self._exact_fns[step_kind](*args)
        if j == n_micro - 1:
            norm.update_moving()
        return logits.numpy(), labels.numpy()

    def _distribute(self, arrays: dict[int, np.ndarray]):
        if self.replicas == 1:
            return arrays[self.local_ids[0]]
        return self.strategy.experimental_distribute_values_from_function(
            lambda ctx: arrays[int(ctx.replica_id_in_sync_group)]
        )

    def micro(
        self,
        batch: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]],
        j: int,
        n_micro: int,
        step_windows: int,
        p: int = 0,
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Micro-batch `j` of `n_micro` of a step of `step_windows` windows ({global replica id: (video, audio,
        labels)} for this worker's replicas), in pass `p` of `passes(n_micro)`; the last micro-batch of the last
        pass applies the step. Returns the gathered logits and labels (None in the passes before the last)."""
        import tensorflow as tf

        if n_micro > 1 and self.accum is None:
            self._make_accumulators()
        args = [self._distribute({r: parts[k] for r, parts in batch.items()}) for k in range(3)]
        args.append(tf.constant(float(step_windows) * self.loss_divisor, tf.float32))
        offsets = {r: np.array(window_offset(step_windows, self.replicas, n_micro, r, j), np.int64) for r in batch}
        args.append(self._distribute(offsets) if self.replicas > 1 else tf.constant(offsets[self.local_ids[0]]))
        if self.passes(n_micro) > 1:
            return self._exact(args, j, n_micro, p, step_windows)
        kind = "single" if n_micro == 1 else "first" if j == 0 else "last" if j == n_micro - 1 else "add"
        logits, labels = self._fns[kind](*args)
        return logits.numpy(), labels.numpy()


def micro_batches(
    cache: Any,
    steps: list[np.ndarray],
    replicas: int,
    local_ids: list[int],
    micro_windows: int,
    passes: Callable[[int], int] = lambda n: 1,
) -> Iterator[tuple[int, int, int, int, int, dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]]]:
    """(pass, passes, micro-batch index, micro-batches in the step, step windows, {replica: arrays}) for every
    micro-batch of every pass of an epoch, reading only this worker's windows, one micro-batch at a time."""
    for idx in steps:
        plan = split_step(idx, replicas, micro_windows)
        n_passes = passes(len(plan))
        for p in range(n_passes):
            for j, parts in enumerate(plan):
                yield p, n_passes, j, len(plan), len(idx), {r: cache.read_rows(parts[r]) for r in local_ids}


def train_epoch(
    stepper: AccumulatingStep,
    cache: Any,
    steps: list[np.ndarray],
    micro_windows: int,
    on_step: Callable[[], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, float]:
    """One epoch of optimiser steps; returns the gathered training logits, labels and the seconds spent
    waiting for input."""
    import time

    logits, labels, wait = [], [], 0.0
    it = prefetch(micro_batches(cache, steps, stepper.replicas, stepper.local_ids, micro_windows, stepper.passes))
    while True:
        t0 = time.perf_counter()
        item = next(it, None)
        wait += time.perf_counter() - t0
        if item is None:
            break
        p, n_passes, j, n_micro, step_windows, batch = item
        out = stepper.micro(batch, j, n_micro, step_windows, p)
        if out is None:
            continue
        logits.append(out[0])
        labels.append(out[1])
        if on_step is not None and j == n_micro - 1:
            on_step()
    c = int(stepper.pos_weight.shape[0])
    if not logits:
        return np.zeros((0, c), np.float32), np.zeros((0, c), np.float32), wait
    return np.concatenate(logits), np.concatenate(labels), wait
