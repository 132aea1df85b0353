"""SoccerNet's temporally aware poolings (NetVLAD++, NetRVLAD++, MAX++, AVG++), as its TemporallyAwarePooling
benchmark defines them: the frames before the window's centre and those from the centre on are pooled apart
and the two vectors concatenated.

Its NetVLAD differs from V&D's `loupe` one (`archis.pooling.NetVLAD`): each frame is L2-normalised first, the
assignment is a plain softmax of `x · clusters` (no batch-norm, no bias), and the descriptor is used as it is
(D·K values, no hidden projection, no context gating). The `++` versions give each half `VLAD_k // 2` clusters,
so the output has D·VLAD_k values; MAX++ / AVG++ give 2·D. Weights start as SoccerNet's: N(0, 1/D) clusters.
"""

from __future__ import annotations

import math

import keras
from keras import ops

from soccer_highlights.archis.names import SOCCERNET_POOLINGS
from soccer_highlights.common.errors import UserError

_EPS = 1e-12  # torch.nn.functional.normalize's floor on the norm


def _l2(x, axis: int):
    return x / ops.maximum(ops.sqrt(ops.sum(ops.square(x), axis=axis, keepdims=True)), _EPS)


@keras.saving.register_keras_serializable(package="archis")
class SoccerNetPooling(keras.layers.Layer):
    """One of `SOCCERNET_POOLINGS` over [B, N, D]: [B, D·VLAD_k] for the VLAD kinds, [B, 2·D] for MAX++ / AVG++."""

    def __init__(self, kind: str, cluster_size: int = 64, **kwargs):
        super().__init__(**kwargs)
        if kind not in SOCCERNET_POOLINGS:
            raise UserError(f"unknown SoccerNet pooling {kind!r}; valid: {', '.join(SOCCERNET_POOLINGS)}")
        self.kind, self.cluster_size = kind, int(cluster_size)
        self.vlad = kind in ("NetVLAD++", "NetRVLAD++")
        if self.vlad and self.cluster_size < 2:
            raise UserError(f"{kind} needs VLAD_k >= 2 (VLAD_k / 2 clusters per half), got {cluster_size}")

    def build(self, input_shape):
        n, dim = input_shape[1], int(input_shape[-1])
        if n is not None and n < 2:
            raise UserError(f"{self.kind} needs windows of at least 2 frames, got {n}")
        self.feature_dim, k = dim, self.cluster_size // 2
        init = keras.initializers.RandomNormal(stddev=1.0 / math.sqrt(dim))
        self.halves = []
        for side in ("before", "after") if self.vlad else ():
            weights = {"clusters": self.add_weight(name=f"{side}_clusters", shape=(dim, k), initializer=init)}
            if self.kind == "NetVLAD++":
                weights["clusters2"] = self.add_weight(name=f"{side}_clusters2", shape=(dim, k), initializer=init)
            self.halves.append(weights)

    def _vlad(self, x, weights):
        x = _l2(x, -1)
        assign = ops.softmax(ops.matmul(x, weights["clusters"]), axis=-1)  # [B, N, K]
        vlad = ops.einsum("bnk,bnd->bdk", assign, x)  # [B, D, K]
        if "clusters2" in weights:
            vlad = vlad - ops.sum(assign, axis=1)[:, None, :] * weights["clusters2"][None]
        flat = ops.reshape(_l2(vlad, 1), (-1, self.feature_dim * (self.cluster_size // 2)))  # D-major, as SoccerNet
        return _l2(flat, -1)

    def call(self, x):
        middle = ops.shape(x)[1] // 2
        parts = (x[:, :middle], x[:, middle:])
        if self.vlad:
            pooled = [self._vlad(p, w) for p, w in zip(parts, self.halves, strict=True)]
        else:
            reduce = ops.max if self.kind == "MAX++" else ops.mean
            pooled = [reduce(p, axis=1) for p in parts]
        return ops.concatenate(pooled, axis=-1)

    def compute_output_shape(self, input_shape):
        d = int(input_shape[-1])
        return (input_shape[0], d * 2 * (self.cluster_size // 2) if self.vlad else 2 * d)

    def get_config(self):
        return {**super().get_config(), "kind": self.kind, "cluster_size": self.cluster_size}
