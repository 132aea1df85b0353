"""Fusion blocks against NumPy transcriptions of their published formulas (archis/fusion.py), in inference mode."""

import numpy as np
import pytest
from scipy.special import erf

from soccer_highlights.archis.fusion import CMGA, GMU, BottleneckFusion, EncoderLayer, TransformerFusion

B, N, D = 2, 5, 16
ATOL = 1e-5


def _w(layer, attr):
    return np.asarray(getattr(layer, attr)).astype("float64")


def _dense(x, layer):
    y = x @ _w(layer, "kernel")
    return y + _w(layer, "bias") if layer.use_bias else y


def _softmax(s):
    e = np.exp(s - s.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _mha(x, mha):
    """Multi-head self-attention with Keras' weight layout: kernels [D, H, dh], output [H, dh, D]."""

    def proj(dense):
        return np.einsum("bnd,dhk->bnhk", x, _w(dense, "kernel")) + _w(dense, "bias")

    q, k, v = proj(mha._query_dense), proj(mha._key_dense), proj(mha._value_dense)
    att = _softmax(np.einsum("bqhk,bnhk->bhqn", q, k) / np.sqrt(q.shape[-1]))
    ctx = np.einsum("bhqn,bnhk->bqhk", att, v)
    return np.einsum("bqhk,hkd->bqd", ctx, _w(mha._output_dense, "kernel")) + _w(mha._output_dense, "bias")


def _layer_norm(x, ln):
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + ln.epsilon) * _w(ln, "gamma") + _w(ln, "beta")


def _encoder(x, enc: EncoderLayer):
    x = _layer_norm(x + _mha(x, enc.attention), enc.norm_attn)
    h = _dense(x, enc.ff_in)
    h = 0.5 * h * (1 + erf(h / np.sqrt(2)))  # exact GELU, as PyTorch's default
    return _layer_norm(x + _dense(h, enc.ff_out), enc.norm_ff)


def _inputs(seed, shape):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=shape).astype("float32") for _ in range(2)]


def test_gmu_matches_formula():
    v, a = _inputs(0, (B, D))
    layer = GMU(hidden=12)
    got = np.asarray(layer([v, a]))
    v, a = v.astype("float64"), a.astype("float64")
    z = _sigmoid(_dense(np.concatenate([v, a], -1), layer.gate))
    want = z * np.tanh(_dense(v, layer.video_proj)) + (1 - z) * np.tanh(_dense(a, layer.audio_proj))
    np.testing.assert_allclose(got, want, atol=ATOL)
    assert not np.any(_w(layer.gate, "bias")), "GMU biases start at zero"


@pytest.mark.parametrize("n", [1, N], ids=["pooled-token", "sequence"])
def test_cmga_matches_formula(n):
    v, a = _inputs(n, (B, n, D))
    layer = CMGA(num_heads=8)
    got = np.asarray(layer([v, a], training=False))
    v, a = v.astype("float64"), a.astype("float64")
    q, k, val = _dense(a, layer.query), _dense(v, layer.key), _dense(v, layer.value)
    attended = _softmax(q @ k.transpose(0, 2, 1) / np.sqrt(D)) @ val
    f = _sigmoid(_dense(np.concatenate([attended, a], -1), layer.forget))
    h = np.maximum(v + _dense(attended, layer.message) * f, 0)
    assert got.shape == (B, n, D)
    np.testing.assert_allclose(got, _mha(h, layer.fusion), atol=ATOL)


def test_transformer_fusion_matches_formula():
    v, a = _inputs(3, (B, D))
    layer = TransformerFusion(num_layers=2, num_heads=8, ff_dim=24)
    got = np.asarray(layer([v, a], training=False))
    emb = _w(layer, "modality_embedding")
    tokens = np.stack([np.broadcast_to(_w(layer, "cls_token")[0, 0], (B, D)), v + emb[0], a + emb[1]], axis=1)
    for enc in layer.encoders:
        tokens = _encoder(tokens, enc)
    np.testing.assert_allclose(got, tokens[:, 0], atol=ATOL)


def test_bottleneck_fusion_matches_formula():
    v, a = _inputs(4, (B, N, D))
    layer = BottleneckFusion(num_layers=2, num_tokens=3, num_heads=8, ff_dim=24)
    got_v, got_a = (np.asarray(t) for t in layer([v, a], training=False))
    v, a = v.astype("float64"), a.astype("float64")
    b = np.broadcast_to(_w(layer, "bottleneck"), (B, 3, D))
    for enc_v, enc_a in zip(layer.video_encoders, layer.audio_encoders, strict=True):
        out_v, out_a = _encoder(np.concatenate([v, b], 1), enc_v), _encoder(np.concatenate([a, b], 1), enc_a)
        v, a, b = out_v[:, :N], out_a[:, :N], (out_v[:, N:] + out_a[:, N:]) / 2
    np.testing.assert_allclose(got_v, v, atol=ATOL)
    np.testing.assert_allclose(got_a, a, atol=ATOL)
    assert any(w.path.endswith("bottleneck") for w in layer.trainable_weights), "bottleneck tokens are learnable"


@pytest.mark.parametrize("n", [1, 6])
def test_gated_bottleneck_is_the_seeds_with_learned_tokens(n):
    """The seed's CrossModalGatedBottleneckAttention, written out (its concatenation fixed to the feature axis)."""
    from soccer_highlights.archis.fusion import GatedBottleneck

    rng = np.random.default_rng(3)
    video, audio = (rng.standard_normal((B, n, D)).astype("float32") for _ in range(2))
    layer = GatedBottleneck(num_heads=4)
    out = np.asarray(layer([video, audio], training=False))
    z_i, z_j, scale = video.astype("float64"), audio.astype("float64"), 1 / np.sqrt(D)
    tokens = np.broadcast_to(_w(layer, "tokens"), (B, max(1, n // 3), D))
    assert tokens.shape[1] == max(1, n // 3)
    q_b, k_b, v_b = (_dense(tokens, d) for d in layer.bottleneck_qkv)
    k_i, v_i, q_j = _dense(z_i, layer.key), _dense(z_i, layer.value), _dense(z_j, layer.query)
    a_ib = _softmax(q_b @ k_i.transpose(0, 2, 1) * scale) @ v_i
    a_ib = _softmax(z_i @ a_ib.transpose(0, 2, 1) * scale) @ a_ib
    a_bj = _softmax(q_j @ k_b.transpose(0, 2, 1) * scale) @ v_b
    a_ij = (a_ib + a_bj) / 2
    f = _sigmoid(_dense(np.concatenate([a_ij, z_j], -1), layer.forget))
    h = np.maximum(z_i + _dense(a_ij, layer.message) * f, 0)
    np.testing.assert_allclose(out, _mha(h, layer.fusion), atol=ATOL)
    again = np.asarray(layer([video, audio], training=False))
    np.testing.assert_array_equal(out, again)  # learned tokens: no fresh draw per call
    assert any(w.path.endswith("bottleneck_tokens") for w in layer.trainable_weights)


def test_keyed_attention_reads_weights_saved_from_keras_attention(tmp_path):
    """The fusion blocks' attention was Keras' MultiHeadAttention (dropout drawn per call); `KeyedAttention` keeps
    its weights and their paths, so weights saved from it load, and its dropout is a `KeyedDropout` on the
    attention probabilities: the same mask for a window whichever call carries it."""
    import keras
    import tensorflow as tf

    from soccer_highlights.archis import dropout
    from soccer_highlights.archis.fusion import KeyedAttention

    class Block(keras.layers.Layer):  # as CMGA and EncoderLayer hold it: an attribute, its path in the file
        def __init__(self, cls, **kwargs):
            super().__init__(**kwargs)
            self.fusion = cls(8, D // 8, dropout=0.5)

        def call(self, x, training=None):
            return self.fusion(x, x, training=training)

    def model(cls):
        x = keras.Input((N, D))
        return keras.Model(x, Block(cls, name="block")(x))

    old, new = model(keras.layers.MultiHeadAttention), model(KeyedAttention)
    old.save_weights(tmp_path / "old.weights.h5")
    new.load_weights(tmp_path / "old.weights.h5")
    x = _inputs(8, (B * 2, N, D))[0]
    np.testing.assert_allclose(np.asarray(new(x, training=False)), np.asarray(old(x, training=False)), atol=ATOL)
    layer = new.get_layer("block").fusion
    assert isinstance(layer._dropout_layer, dropout.KeyedDropout) and layer._dropout_layer.rate == 0.5
    with dropout.window_keys(tf.constant(3), tf.constant(0)):
        whole = np.asarray(layer(x, x, training=True))
    with dropout.window_keys(tf.constant(3), tf.constant(B)):
        part = np.asarray(layer(x[B:], x[B:], training=True))
    np.testing.assert_allclose(part, whole[B:], atol=ATOL)
    assert np.abs(whole - np.asarray(layer(x, x, training=False))).max() > 1e-3  # dropout did act
