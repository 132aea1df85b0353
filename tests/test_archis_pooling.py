"""NetVLAD-family pooling against a plain NumPy transcription of V&D's NetVLAD (docs/DESIGN.md; D-major layout, same weights)."""

import numpy as np
import pytest

from soccer_highlights.archis.pooling import (
    NetVLAD,
    NetVLADPlusPlus,
    TemporalPooling,
    canonical_pooling,
    make_pooling,
    spec_hidden_weights,
)
from soccer_highlights.common.errors import UserError

B, N, D = 3, 6, 16


def _l2(x, axis):
    return x / np.sqrt(np.maximum(np.sum(x * x, axis=axis, keepdims=True), 1e-12))


def _bn(x, bn):
    gamma, beta, mean, var = (np.asarray(w) for w in (bn.gamma, bn.beta, bn.moving_mean, bn.moving_variance))
    return (x - mean) / np.sqrt(var + bn.epsilon) * gamma + beta


def reference_vlad(x, layer: NetVLAD):
    """V&D's NetVLAD step by step, in V&D's own [B, D, K] layout and D-major flattening."""
    s = x @ np.asarray(layer.cluster_weights)
    s = _bn(s, layer.cluster_bn) if layer.use_batch_norm else s + np.asarray(layer.cluster_biases)
    a = np.exp(s - s.max(-1, keepdims=True))
    a /= a.sum(-1, keepdims=True)  # [B, N, K]
    v = np.einsum("bnk,bnd->bkd", a, x).transpose(0, 2, 1)  # [B, D, K]
    if layer.residual:
        v = v - a.sum(1)[:, None, :] * np.asarray(layer.cluster_weights2)[None]
    v = _l2(v, axis=1).reshape(len(x), -1)  # intra-normalise over D, flatten D-major
    y = _l2(v, axis=1) @ spec_hidden_weights(layer)
    if layer.context_gating:
        g = y @ np.asarray(layer.gating.gating_weights)
        g = _bn(g, layer.gating.batch_norm) if layer.use_batch_norm else g + np.asarray(layer.gating.gating_biases)
        y = y / (1 + np.exp(-g))
    return y


def _randomise_bn(layer, rng):
    """Give every batch-norm non-trivial statistics so inference mode is really exercised."""
    for bn in (layer.cluster_bn, getattr(layer.gating, "batch_norm", None)):
        if bn is not None:
            for w, lo in ((bn.gamma, 0.5), (bn.beta, -0.5), (bn.moving_mean, -0.5), (bn.moving_variance, 0.5)):
                w.assign(rng.uniform(lo, lo + 1.0, size=w.shape).astype("float32"))


@pytest.mark.parametrize("residual", [True, False], ids=["NetVLAD", "NetRVLAD"])
@pytest.mark.parametrize("k", [4, 24], ids=["K<D", "K>D"])
@pytest.mark.parametrize("gating", [True, False], ids=["gating", "no-gating"])
@pytest.mark.parametrize("bn", [True, False], ids=["bn", "no-bn"])
def test_vlad_matches_numpy_reference(residual, k, gating, bn):
    rng = np.random.default_rng(k + 2 * residual + 4 * gating + 8 * bn)
    x = rng.normal(size=(B, N, D)).astype("float32")
    layer = NetVLAD(k, 12, residual=residual, use_batch_norm=bn, context_gating=gating)
    layer.build(x.shape)
    _randomise_bn(layer, rng)
    got = np.asarray(layer(x, training=False))
    assert got.shape == (B, 12)
    np.testing.assert_allclose(got, reference_vlad(x.astype("float64"), layer), atol=1e-5, rtol=0)


def test_vlad_initialisers_follow_spec():
    layer = NetVLAD(64, 256, residual=True, use_batch_norm=False)
    layer.build((None, None, 128))
    for weight, fan in ((layer.cluster_weights, 128), (layer.cluster_weights2, 128), (layer.hidden_weights, 64)):
        assert np.std(np.asarray(weight)) == pytest.approx(1 / np.sqrt(fan), rel=0.05)


def test_zero_window_is_finite():
    """All-zero input gives an all-zero VLAD for NetRVLAD: the epsilon must keep it finite."""
    layer = NetVLAD(4, 8, residual=False)
    out = np.asarray(layer(np.zeros((2, N, D), "float32"), training=False))
    assert np.isfinite(out).all()


def test_netvlad_plus_plus_pools_halves_separately():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(B, N, D)).astype("float32")
    layer = NetVLADPlusPlus(8, 10, context_gating=False)
    got = np.asarray(layer(x, training=False))
    assert got.shape == (B, 20) and layer.past.cluster_size == 4
    past = reference_vlad(x[:, : N // 2].astype("float64"), layer.past)
    future = reference_vlad(x[:, N // 2 :].astype("float64"), layer.future)
    np.testing.assert_allclose(got, np.concatenate([past, future], -1), atol=1e-5)
    x_changed = x.copy()
    x_changed[:, -1] += 1.0  # the last frame only moves the future half
    moved = np.asarray(layer(x_changed, training=False))
    np.testing.assert_allclose(moved[:, :10], got[:, :10], atol=1e-6)
    assert np.abs(moved[:, 10:] - got[:, 10:]).max() > 1e-4


@pytest.mark.parametrize("mode,fn", [("max", np.max), ("average", np.mean)])
def test_temporal_pooling(mode, fn):
    x = np.random.default_rng(1).normal(size=(B, N, D)).astype("float32")
    np.testing.assert_allclose(np.asarray(TemporalPooling(mode)(x)), fn(x, axis=1), atol=1e-6)


@pytest.mark.parametrize(
    "alias,canonical",
    [
        ("vlad", "NetVLAD"),
        ("RVLAD", "NetRVLAD"),
        ("netvlad++", "NetVLAD++"),
        ("NETVLAD++VD", "NetVLAD++vd"),
        ("max", "MAX"),
        ("Average", "AVERAGE"),
    ],
)
def test_pooling_aliases(alias, canonical):
    assert canonical_pooling(alias) == canonical
    assert make_pooling(alias, vlad_k=4, output_dim=8) is not None


def test_unknown_pooling_lists_valid_names():
    with pytest.raises(UserError, match="NetVLAD.*NetRVLAD.*MAX.*AVERAGE"):
        canonical_pooling("fisher")
