"""Temporal pooling of a feature sequence [B, N, D] into one vector: NetVLAD family, max and average.

NetVLAD / NetRVLAD follow V&D's `loupe` module (maths and layout: docs/DESIGN.md, "NetVLAD pooling"): same initialisers, same
normalisation order. One layout choice differs for speed, not for value: the VLAD descriptor is
kept as [B, K, D] (the natural result of `aᵀx`) and flattened cluster-major, so `hidden_weights`
rows are stored in (k, d) order instead of V&D's D-major (d, k) order. The two are the same
function under a one-time row permutation (`spec_hidden_weights` converts), and this avoids
materialising a transposed copy of the largest activation in every forward and backward pass.

Batch-norm at evaluation follows the original by default (`archis.stepnorm`): V&D's TF1 code built its
batch-norm layers with `is_training=True` always, so it normalised each evaluation batch (one half) with that
batch's statistics, which `batch` does half by half; the seed evaluated with the running averages (`moving`).

Every weight tensor draws from its own initializer object (both originals draw each tensor independently; one
shared object would give `cluster_weights2` the values of `cluster_weights`). The L2-normalisation floor is the
original's (`l2_floor`): V&D's `tf.nn.l2_normalize` floors the squared norm at 1e-12, the seed's `F.normalize`
the norm at 1e-12 (the squared norm at 1e-24).
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Iterator

import keras
from keras import ops

from soccer_highlights.archis.names import L2_FLOORS, SOCCERNET_POOLINGS, canonical_pooling
from soccer_highlights.archis.reuse import project
from soccer_highlights.archis.soccernet_pooling import SoccerNetPooling
from soccer_highlights.archis.stepnorm import StepBatchNorm
from soccer_highlights.common.errors import UserError

# Floor of the squared norm: tf.nn.l2_normalize's epsilon (V&D), or F.normalize's 1e-12 on the norm (the seed)
L2_EPS = {"squared": 1e-12, "norm": 1e-24}


_SKIP_RANDOM_INIT = contextvars.ContextVar("archis_skip_random_init", default=False)


@contextlib.contextmanager
def no_random_init() -> Iterator[None]:
    """NetVLAD weights created inside start as zeros instead of random draws: for a model whose saved weights
    are loaded over them at once (drawing the 134 M numbers of a VLAD-512 projection was most of the load time)."""
    token = _SKIP_RANDOM_INIT.set(True)
    try:
        yield
    finally:
        _SKIP_RANDOM_INIT.reset(token)


_HALF_PROJECTION = contextvars.ContextVar("archis_half_projection", default=False)


@contextlib.contextmanager
def half_precision_projection() -> Iterator[None]:
    """Models saved inside store NetVLAD's projection (`hidden_weights`, ~99 % of a VLAD-512 file) as float16;
    loading casts it back to float32. See `archis.export.export_model`."""
    token = _HALF_PROJECTION.set(True)
    try:
        yield
    finally:
        _HALF_PROJECTION.reset(token)


def _normal(stddev: float) -> keras.initializers.Initializer:
    """A new initializer object for one tensor (its own seed, drawn from Python's generator, which `build_model`'s
    seed sets): never share one between tensors, they would start equal."""
    if _SKIP_RANDOM_INIT.get():
        from soccer_highlights.archis.loading import UntouchedZeros  # the file's weights replace them at once

        return UntouchedZeros()
    return keras.initializers.RandomNormal(stddev=stddev)


@keras.saving.register_keras_serializable(package="archis")
class ContextGating(keras.layers.Layer):
    """`y ⊙ sigmoid(BN(y W_g))` (or `+ bias` instead of BN), W_g ~ N(0, 1/sqrt(O))."""

    def __init__(
        self,
        use_batch_norm: bool = True,
        bn_momentum: float = 0.99,
        bn_epsilon: float = 1e-3,
        bn_eval: str = "moving",
        unbiased_variance: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.use_batch_norm = use_batch_norm
        self.bn_momentum, self.bn_epsilon = float(bn_momentum), float(bn_epsilon)
        self.bn_eval, self.unbiased_variance = bn_eval, bool(unbiased_variance)
        self.batch_norm = (
            StepBatchNorm(
                1,
                bn_eval,
                self.unbiased_variance,
                momentum=self.bn_momentum,
                epsilon=self.bn_epsilon,
                dtype=self.dtype_policy,
                name="gating_bn",
            )
            if use_batch_norm
            else None
        )

    def build(self, input_shape):
        dim = int(input_shape[-1])
        std = 1.0 / math.sqrt(dim)
        self.gating_weights = self.add_weight(name="gating_weights", shape=(dim, dim), initializer=_normal(std))
        if self.batch_norm is not None:
            self.batch_norm.build((None, dim))
        else:
            self.gating_biases = self.add_weight(name="gating_biases", shape=(dim,), initializer=_normal(std))

    def call(self, y, training=None):
        gates = ops.matmul(y, self.gating_weights)
        gates = self.batch_norm(gates, training=training) if self.batch_norm is not None else gates + self.gating_biases
        return y * ops.sigmoid(gates)

    def get_config(self):
        return {
            **super().get_config(),
            "use_batch_norm": self.use_batch_norm,
            "bn_momentum": self.bn_momentum,
            "bn_epsilon": self.bn_epsilon,
            "bn_eval": self.bn_eval,
            "unbiased_variance": self.unbiased_variance,
        }


@keras.saving.register_keras_serializable(package="archis")
class NetVLAD(keras.layers.Layer):
    """NetVLAD (`residual=True`) or NetRVLAD (`residual=False`) over [B, N, D] -> [B, output_dim]."""

    def __init__(
        self,
        cluster_size: int,
        output_dim: int,
        residual: bool = True,
        use_batch_norm: bool = True,
        context_gating: bool = True,
        bn_momentum: float = 0.99,
        bn_epsilon: float = 1e-3,
        bn_eval: str = "moving",
        unbiased_variance: bool = False,
        l2_floor: str = "squared",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if l2_floor not in L2_FLOORS:
            raise UserError(f"unknown L2 floor {l2_floor!r}; valid: {', '.join(L2_FLOORS)}")
        if cluster_size < 1 or output_dim < 1:
            raise UserError(f"NetVLAD needs VLAD_k >= 1 and output_dim >= 1, got {cluster_size} and {output_dim}")
        self.cluster_size = int(cluster_size)
        self.output_dim = int(output_dim)
        self.residual = residual
        self.use_batch_norm = use_batch_norm
        self.context_gating = context_gating
        self.bn_momentum, self.bn_epsilon = float(bn_momentum), float(bn_epsilon)
        self.bn_eval, self.unbiased_variance, self.l2_floor = bn_eval, bool(unbiased_variance), l2_floor
        policy, bn = self.dtype_policy, {"momentum": self.bn_momentum, "epsilon": self.bn_epsilon}
        self.cluster_bn = (
            StepBatchNorm(0, bn_eval, self.unbiased_variance, **bn, dtype=policy, name="cluster_bn")
            if use_batch_norm
            else None
        )
        self.gating = (
            ContextGating(
                use_batch_norm,
                self.bn_momentum,
                self.bn_epsilon,
                bn_eval,
                self.unbiased_variance,
                dtype=policy,
                name="context_gating",
            )
            if context_gating
            else None
        )

    def build(self, input_shape):
        dim, k = int(input_shape[-1]), self.cluster_size
        self.feature_dim = dim
        std = 1.0 / math.sqrt(dim)
        self.cluster_weights = self.add_weight(name="cluster_weights", shape=(dim, k), initializer=_normal(std))
        if self.cluster_bn is not None:
            self.cluster_bn.build((None, None, k))
        else:
            self.cluster_biases = self.add_weight(name="cluster_biases", shape=(k,), initializer=_normal(std))
        if self.residual:
            self.cluster_weights2 = self.add_weight(name="cluster_weights2", shape=(dim, k), initializer=_normal(std))
        # Rows in cluster-major (k, d) order: see the module docstring.
        self.hidden_weights = self.add_weight(
            name="hidden_weights", shape=(k * dim, self.output_dim), initializer=_normal(1.0 / math.sqrt(k))
        )
        if self.gating is not None:
            self.gating.build((None, self.output_dim))

    def call(self, x, training=None):
        scores = ops.matmul(x, self.cluster_weights)  # [B, N, K]
        if self.cluster_bn is not None:
            scores = self.cluster_bn(scores, training=training)
        else:
            scores = scores + self.cluster_biases
        assign = ops.softmax(scores, axis=-1)
        vlad = ops.einsum("bnk,bnd->bkd", assign, x)  # [B, K, D]
        if self.residual:
            mass = ops.sum(assign, axis=1)  # [B, K]
            vlad = vlad - mass[:, :, None] * ops.transpose(self.cluster_weights2)[None]
        flat = ops.reshape(double_l2_normalize(vlad, L2_EPS[self.l2_floor]), (-1, self.cluster_size * self.feature_dim))
        after = self.cluster_bn.level if self.cluster_bn is not None else -1
        y = project(self, flat, self.hidden_weights, after)  # kept across whole-step passes (archis.reuse)
        return self.gating(y, training=training) if self.gating is not None else y

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.output_dim)

    def save_own_variables(self, store):
        """As Keras does, except that the projection is written as float16 inside `half_precision_projection()`."""
        for i, v in enumerate(self._trainable_variables + self._non_trainable_variables):
            half = _HALF_PROJECTION.get() and v is self.hidden_weights
            store[f"{i}"] = ops.convert_to_numpy(v).astype("float16") if half else v

    def get_config(self):
        return {
            **super().get_config(),
            "cluster_size": self.cluster_size,
            "output_dim": self.output_dim,
            "residual": self.residual,
            "use_batch_norm": self.use_batch_norm,
            "context_gating": self.context_gating,
            "bn_momentum": self.bn_momentum,
            "bn_epsilon": self.bn_epsilon,
            "bn_eval": self.bn_eval,
            "unbiased_variance": self.unbiased_variance,
            "l2_floor": self.l2_floor,
        }


def double_l2_normalize(vlad, eps: float = L2_EPS["squared"]):
    """Intra-normalise each cluster over D, then L2-normalise the flattened whole, in one scaling pass; `eps`
    floors each squared norm (`L2_EPS`: max(||x||, 1e-12) is sqrt(max(||x||², 1e-24))).

    After the intra step each cluster row has norm n_k r_k (r_k = 1/sqrt(max(n_k², eps))), so the global
    norm follows from the K per-cluster norms: no second pass over the [B, K, D] tensor.
    """
    sq = ops.sum(ops.square(vlad), axis=-1)  # [B, K]
    inv_row = ops.rsqrt(ops.maximum(sq, eps))
    inv_all = ops.rsqrt(ops.maximum(ops.sum(sq * ops.square(inv_row), axis=-1, keepdims=True), eps))
    return vlad * (inv_row * inv_all)[:, :, None]


def spec_hidden_weights(layer: NetVLAD):
    """`hidden_weights` in V&D's D-major row order ([D·K, O]), e.g. to compare with a reference or a TF1 port."""
    w = ops.convert_to_numpy(layer.hidden_weights)
    k, d = layer.cluster_size, layer.feature_dim
    return w.reshape(k, d, -1).transpose(1, 0, 2).reshape(d * k, -1)


@keras.saving.register_keras_serializable(package="archis")
class NetVLADPlusPlus(keras.layers.Layer):
    """`NetVLAD++vd`: V&D's NetVLAD (projection, gating) over the past and future halves apart, concatenated
    (SoccerNet's NetVLAD++ is `archis.soccernet_pooling`).

    Each half gets max(1, K // 2) clusters (the original split the vocabulary in two) and `output_dim`
    outputs, so the result is [B, 2 * output_dim].
    """

    def __init__(
        self,
        cluster_size: int,
        output_dim: int,
        use_batch_norm: bool = True,
        context_gating: bool = True,
        bn_momentum: float = 0.99,
        bn_epsilon: float = 1e-3,
        bn_eval: str = "moving",
        unbiased_variance: bool = False,
        l2_floor: str = "squared",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.cluster_size = int(cluster_size)
        self.output_dim = int(output_dim)
        self.use_batch_norm = use_batch_norm
        self.context_gating = context_gating
        self.bn_momentum, self.bn_epsilon = float(bn_momentum), float(bn_epsilon)
        self.bn_eval, self.unbiased_variance, self.l2_floor = bn_eval, bool(unbiased_variance), l2_floor
        half_k = max(1, self.cluster_size // 2)
        self.past, self.future = (
            NetVLAD(
                half_k,
                output_dim,
                True,
                use_batch_norm,
                context_gating,
                self.bn_momentum,
                self.bn_epsilon,
                bn_eval,
                self.unbiased_variance,
                l2_floor,
                dtype=self.dtype_policy,
                name=name,
            )
            for name in ("past", "future")
        )

    def build(self, input_shape):
        n = input_shape[1]
        if n is not None and n < 2:
            raise UserError(f"NetVLAD++ needs windows of at least 2 frames, got {n}")
        self.past.build((None, None, input_shape[-1]))
        self.future.build((None, None, input_shape[-1]))

    def call(self, x, training=None):
        half = ops.shape(x)[1] // 2
        return ops.concatenate(
            [self.past(x[:, :half], training=training), self.future(x[:, half:], training=training)], axis=-1
        )

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 2 * self.output_dim)

    def get_config(self):
        return {
            **super().get_config(),
            "cluster_size": self.cluster_size,
            "output_dim": self.output_dim,
            "use_batch_norm": self.use_batch_norm,
            "context_gating": self.context_gating,
            "bn_momentum": self.bn_momentum,
            "bn_epsilon": self.bn_epsilon,
            "bn_eval": self.bn_eval,
            "unbiased_variance": self.unbiased_variance,
            "l2_floor": self.l2_floor,
        }


@keras.saving.register_keras_serializable(package="archis")
class TemporalPooling(keras.layers.Layer):
    """Max or average over time: [B, N, D] -> [B, D] (no weights; output size is D whatever O is)."""

    def __init__(self, mode: str = "max", **kwargs):
        super().__init__(**kwargs)
        if mode not in ("max", "average"):
            raise UserError(f"TemporalPooling mode must be 'max' or 'average', got {mode!r}")
        self.mode = mode

    def call(self, x):
        return ops.max(x, axis=1) if self.mode == "max" else ops.mean(x, axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


# NetVLAD++ and its siblings are SoccerNet's (`archis.soccernet_pooling`); NetVLAD++vd is V&D's NetVLAD (projection
# and gating) on each half, what this port called NetVLAD++ before.
def make_pooling(
    name: str,
    *,
    vlad_k: int,
    output_dim: int,
    context_gating: bool = True,
    use_batch_norm: bool = True,
    batch_norm: tuple[float, float] = (0.99, 1e-3),
    bn_eval: str = "moving",
    unbiased_variance: bool = False,
    l2_floor: str = "squared",
    dtype=None,
    layer_name=None,
) -> keras.layers.Layer:
    """One pooling layer by (canonical or alias) name; `batch_norm` = (Keras momentum, epsilon) of its batch-norms,
    `bn_eval` their statistics at evaluation, `unbiased_variance` their variance update (`archis.stepnorm`),
    `l2_floor` the floor of the VLAD normalisations (`L2_EPS`)."""
    kind = canonical_pooling(name)
    common = {"dtype": dtype, "name": layer_name}
    momentum, epsilon = batch_norm
    if kind in ("MAX", "AVERAGE"):
        return TemporalPooling(kind.lower(), **common)
    if kind in SOCCERNET_POOLINGS:
        return SoccerNetPooling(kind, vlad_k, **common)
    if kind == "NetVLAD++vd":
        return NetVLADPlusPlus(
            vlad_k,
            output_dim,
            use_batch_norm,
            context_gating,
            momentum,
            epsilon,
            bn_eval,
            unbiased_variance,
            l2_floor,
            **common,
        )
    residual = kind == "NetVLAD"
    return NetVLAD(
        vlad_k,
        output_dim,
        residual,
        use_batch_norm,
        context_gating,
        momentum,
        epsilon,
        bn_eval,
        unbiased_variance,
        l2_floor,
        **common,
    )
