"""The seed's own forward passes (Donghwan127/video-highlight-extraction), written out in NumPy line by line from its
PyTorch modules with the port's weights copied into the seed's layout, against the port's models in evaluation mode
with the seed's choices (PyTorch's batch-norm at running averages, F.normalize's floor, nn.Linear heads): issue 28
item 15, within 3e-6.

Modules followed: `loupe.py` `NetRVLAD.forward` and `PoolingBaseModel.context_gating`; `networks.py`
`AudioVideoArchi4` .. `AudioVideoArchi8`, `GMU`, `CMGAArchi1`, `CMGAArchi2`, `CMGAArchi4` and
`LateFusionArchi` (its pooling given [B·N, D] as
every other seed model does: the seed's own call fails, docs/departures.md); `fusion.py` `GatedBimodalTorch`,
`CrossModalGatedAttention` and `LateFusionTransformer` (PyTorch's post-norm `nn.TransformerEncoderLayer`, GELU,
batch_first). Keras' attention has q/k/v biases the seed's CMGA fusion has not: they are zero there, as they start.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import erf

from soccer_highlights import archis
from soccer_highlights.archis.pooling import NetVLAD, spec_hidden_weights

B, D, K, C = 3, 16, 4, 5
TOL = 3e-6
EPS = 1e-5  # nn.BatchNorm1d / nn.LayerNorm default


def _np(v):
    return np.asarray(v).astype("float64")


# ---- torch.nn.functional, as the seed calls it


def _linear(x, weight, bias=None):  # F.linear / nn.Linear: x Wᵀ + b
    y = x @ weight.T
    return y if bias is None else y + bias


def _softmax(x, dim=-1):
    e = np.exp(x - x.max(dim, keepdims=True))
    return e / e.sum(dim, keepdims=True)


def _normalize(x, dim):  # F.normalize(p=2): x / max(||x||, 1e-12)
    return x / np.maximum(np.sqrt((x * x).sum(dim, keepdims=True)), 1e-12)


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _batch_norm_eval(x, bn):  # nn.BatchNorm1d in eval(): running statistics, eps 1e-5
    w, b, mean, var = (_np(t) for t in (bn["weight"], bn["bias"], bn["running_mean"], bn["running_var"]))
    return (x - mean) / np.sqrt(var + EPS) * w + b


def _layer_norm(x, ln):
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + EPS) * ln["weight"] + ln["bias"]


def _gelu(x):  # activation='gelu': the exact one
    return 0.5 * x * (1 + erf(x / np.sqrt(2)))


# ---- the port's weights in the seed's layout (a state_dict)


def _bn_state(bn):
    return {
        "weight": _np(bn.gamma),
        "bias": _np(bn.beta),
        "running_mean": _np(bn.moving_mean),
        "running_var": _np(bn.moving_variance),
    }


def _rvlad_state(layer: NetVLAD) -> dict:
    """loupe.py NetRVLAD's parameters: cluster_weights [F, K], cluster_bn, hidden1_weights [K·F, O] (rows in the
    order of its `vlad.reshape(-1, K * F)` of [B, F, K], F-major), gating_weights [O, O], gating_bn."""
    assert not layer.residual and layer.use_batch_norm
    state = {
        "cluster_weights": _np(layer.cluster_weights),
        "cluster_bn": _bn_state(layer.cluster_bn),
        "hidden1_weights": spec_hidden_weights(layer).astype("float64"),
        "gating": layer.context_gating,
    }
    if layer.context_gating:
        state["gating_weights"] = _np(layer.gating.gating_weights)
        state["gating_bn"] = _bn_state(layer.gating.batch_norm)
    return state


def _head_state(dense) -> dict:  # nn.Linear: weight [out, in]
    return {"weight": _np(dense.kernel).T, "bias": _np(dense.bias)}


def _mha_blocks(mha):
    """Keras' q/k/v/output kernels as nn.MultiheadAttention's in_proj_weight [3D, D] (q, k, v blocks, head h in
    rows h·Dh ..), in_proj_bias [3D], out_proj.weight [D, D] and out_proj.bias."""
    dim = mha._query_dense.kernel.shape[0]
    blocks = [_np(d.kernel).reshape(dim, dim).T for d in (mha._query_dense, mha._key_dense, mha._value_dense)]
    biases = [_np(d.bias).reshape(dim) for d in (mha._query_dense, mha._key_dense, mha._value_dense)]
    out = mha._output_dense
    return np.concatenate(blocks), np.concatenate(biases), _np(out.kernel).reshape(dim, dim).T, _np(out.bias)


# ---- the seed's modules


def seed_netrvlad(reshaped_input, s, max_samples):
    """loupe.py NetRVLAD.forward (+ PoolingBaseModel.context_gating), input [B·N, F]."""
    feature_size = reshaped_input.shape[-1]
    cluster_size = s["cluster_weights"].shape[1]
    activation = _linear(reshaped_input, s["cluster_weights"].T)
    activation = _batch_norm_eval(activation, s["cluster_bn"])
    activation = _softmax(activation, -1)
    activation = activation.reshape(-1, max_samples, cluster_size)
    activation = activation.transpose(0, 2, 1)
    reshaped_input = reshaped_input.reshape(-1, max_samples, feature_size)
    vlad = activation @ reshaped_input
    vlad = vlad.transpose(0, 2, 1)
    vlad = _normalize(vlad, 1)
    vlad = vlad.reshape(-1, cluster_size * feature_size)
    vlad = _normalize(vlad, 1)
    vlad = _linear(vlad, s["hidden1_weights"].T)
    if s["gating"]:
        gates = _linear(vlad, s["gating_weights"].T)
        gates = _batch_norm_eval(gates, s["gating_bn"])
        vlad = vlad * _sigmoid(gates)
    return vlad


def seed_cmga(x_1, x_2, s, num_heads):
    """fusion.py CrossModalGatedAttention.forward (eval: dropout off), inputs [B, N, D] or [B, D] made [B, 1, D]."""
    z_i, z_j = (x if x.ndim == 3 else x[:, None] for x in (x_1, x_2))
    batch_size, num_frames, feature_dim = z_i.shape
    head_dim = feature_dim // num_heads
    scale, big_scale = feature_dim**-0.5, head_dim**-0.5
    qkv_i = _linear(z_i, s["qkv_i"]).reshape(batch_size, num_frames, 3, feature_dim)
    qkv_j = _linear(z_j, s["qkv_j"]).reshape(batch_size, num_frames, 3, feature_dim)
    _, k_i, v_i = qkv_i.transpose(2, 0, 1, 3)
    q_j, _, _ = qkv_j.transpose(2, 0, 1, 3)
    a_ij = _softmax(q_j @ k_i.transpose(0, 2, 1) * scale, -1)
    a_ij = a_ij @ v_i
    f_ij = _sigmoid(_linear(np.concatenate((a_ij, z_j), axis=2), *s["W_f"]))
    h_ij = np.maximum(z_i + _linear(a_ij, *s["W_m"]) * f_ij, 0)
    qkv = _linear(h_ij, s["QKV"]).reshape(batch_size, num_frames, 3, num_heads, head_dim)
    q, k, v = qkv.transpose(2, 0, 3, 1, 4)
    attn = _softmax(q @ k.transpose(0, 1, 3, 2) * big_scale, -1)
    h = (attn @ v).transpose(0, 2, 1, 3).reshape(batch_size, num_frames, -1)
    return _linear(h, *s["Proj"])


def seed_encoder_layer(x, s, nhead):
    """nn.TransformerEncoderLayer (norm_first=False, batch_first, eval): x = norm1(x + sa(x)); norm2(x + ff(x))."""
    b, n, d = x.shape
    dh = d // nhead
    qkv = _linear(x, s["in_proj_weight"], s["in_proj_bias"])
    q, k, v = (t.reshape(b, n, nhead, dh).transpose(0, 2, 1, 3) for t in np.split(qkv, 3, axis=-1))
    attn = _softmax(q @ k.transpose(0, 1, 3, 2) / np.sqrt(dh), -1)
    sa = _linear((attn @ v).transpose(0, 2, 1, 3).reshape(b, n, d), s["out_proj_weight"], s["out_proj_bias"])
    x = _layer_norm(x + sa, s["norm1"])
    ff = _linear(_gelu(_linear(x, *s["linear1"])), *s["linear2"])
    return _layer_norm(x + ff, s["norm2"])


def seed_late_fusion_transformer(v_vec, a_vec, s, nhead):
    """fusion.py LateFusionTransformer.forward (use_cls=True)."""
    batch, dim = v_vec.shape
    v = v_vec[:, None] + s["mod_embed"][0].reshape(1, 1, dim)
    a = a_vec[:, None] + s["mod_embed"][1].reshape(1, 1, dim)
    tokens = np.concatenate([np.broadcast_to(s["cls"], (batch, 1, dim)), v, a], axis=1)
    for layer in s["layers"]:
        tokens = seed_encoder_layer(tokens, layer, nhead)
    return tokens[:, 0, :]


# ---- the port's models, with every weight and batch-norm statistic drawn at random


SEED_CHOICES = {"batch_norm": "pytorch", "head_init": "torch", "l2_floor": "norm", "bn_eval": "moving"}


def _port(architecture, **fields):
    model = archis.build_model(
        architecture, pooling="NetRVLAD", vlad_k=K, window_seconds=4, feature_dim=D, seed=2, **SEED_CHOICES, **fields
    )
    rng = np.random.default_rng(7)
    for v in model.weights:
        if v.dtype != "float32":
            continue
        if "moving_variance" in v.path:
            value = rng.uniform(0.5, 1.5, v.shape)
        elif "moving_weight" in v.path:
            continue
        else:
            value = rng.normal(0.0, 0.3, v.shape)
        v.assign(value.astype("float32"))
    return model


def _inputs(model):
    n = model.spec.window_frames
    rng = np.random.default_rng(11)
    return [rng.normal(size=(B, n, D)).astype("float32") for _ in range(2)], n


def _scores(model, video, audio):
    return np.asarray(model({"video": video, "audio": audio}, training=False)).astype("float64")


def _check(got, want):
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= TOL * max(1.0, np.abs(want).max()), np.abs(got - want).max()


@pytest.mark.parametrize("name", ["AudioVideoArchi4", "AudioVideoArchi5", "AudioVideoArchi6"])
def test_the_seeds_two_stream_archis(name):
    """networks.py AudioVideoArchi4 (0.5·video_fc + 0.5·audio_fc), 5 (fc of cat, dropout before), 6 (dropout after):
    NetRVLAD with gating on each stream, input viewed [B·N, 512]."""
    model = _port(name, context_gating=True)
    (video, audio), n = _inputs(model)
    pools = {m: _rvlad_state(model.get_layer(f"{m}_pool")) for m in ("video", "audio")}
    x_video = seed_netrvlad(video.astype("float64").reshape(-1, D), pools["video"], n)
    x_audio = seed_netrvlad(audio.astype("float64").reshape(-1, D), pools["audio"], n)
    if name == "AudioVideoArchi4":
        logits_video = _linear(x_video, **_head_state(model.get_layer("video_logits")))
        logits_audio = _linear(x_audio, **_head_state(model.get_layer("audio_logits")))
        want = 0.5 * logits_video + 0.5 * logits_audio
    else:
        want = _linear(np.concatenate([x_video, x_audio], axis=1), **_head_state(model.get_layer("logits")))
    _check(_scores(model, video, audio), want)


@pytest.mark.parametrize(("name", "output_dim"), [("AudioVideoArchi7", 2 * D), ("AudioVideoArchi8", D)])
def test_the_seeds_early_concatenation(name, output_dim):
    """networks.py AudioVideoArchi7/8: torch.cat([video, audio], dim=2), one NetRVLAD of 1024 features, output
    1024 (Archi7) or 512 (Archi8), fc."""
    model = _port(name, context_gating=True)
    (video, audio), n = _inputs(model)
    x = np.concatenate([video, audio], axis=2).astype("float64").reshape(-1, 2 * D)
    pooled = seed_netrvlad(x, _rvlad_state(model.get_layer("pool")), n)
    assert pooled.shape == (B, output_dim)
    _check(_scores(model, video, audio), _linear(pooled, **_head_state(model.get_layer("logits"))))


def _ungated_pools(model, video, audio, n):
    return [
        seed_netrvlad(x.astype("float64").reshape(-1, D), _rvlad_state(model.get_layer(f"{m}_pool")), n)
        for m, x in (("video", video), ("audio", audio))
    ]


def test_the_seeds_gmu():
    """networks.py GMU (NetRVLAD without gating) and fusion.py GatedBimodalTorch: h = z·tanh(fv v) + (1−z)·tanh(ft a),
    z = σ(gate [v; a])."""
    model = _port("GMU")
    (video, audio), n = _inputs(model)
    v, a = _ungated_pools(model, video, audio, n)
    gmu = model.get_layer("gmu")
    hv = np.tanh(_linear(v, **_head_state(gmu.video_proj)))
    ht = np.tanh(_linear(a, **_head_state(gmu.audio_proj)))
    z = _sigmoid(_linear(np.concatenate([v, a], axis=-1), **_head_state(gmu.gate)))
    fused = z * hv + (1.0 - z) * ht
    _check(_scores(model, video, audio), _linear(fused, **_head_state(model.get_layer("logits"))))


def _cmga_state(cmga) -> dict:
    """CrossModalGatedAttention's parameters: the seed's fused q/k/v matrices hold the port's q, k, v kernels as
    their three blocks; the port's fusion q/k/v biases are set to zero (the seed's QKV has none)."""
    for d in (cmga.fusion._query_dense, cmga.fusion._key_dense, cmga.fusion._value_dense):
        d.bias.assign(np.zeros(d.bias.shape, "float32"))
    zeros = np.zeros((D, D))
    in_proj, _, out_w, out_b = _mha_blocks(cmga.fusion)
    return {
        "qkv_i": np.concatenate([zeros, _np(cmga.key.kernel).T, _np(cmga.value.kernel).T]),  # its q_i is unused
        "qkv_j": np.concatenate([_np(cmga.query.kernel).T, zeros, zeros]),  # its k_j, v_j are unused
        "W_f": (_np(cmga.forget.kernel).T, _np(cmga.forget.bias)),
        "W_m": (_np(cmga.message.kernel).T, _np(cmga.message.bias)),
        "QKV": in_proj,
        "Proj": (out_w, out_b),
    }


def test_the_seeds_cmga():
    """networks.py CMGAArchi2: the two pooled vectors through fusion.py CrossModalGatedAttention (video as x_1),
    squeeze, fc."""
    model = _port("CMGAArchi2")
    cmga = model.get_layer("cmga")
    s = _cmga_state(cmga)
    (video, audio), n = _inputs(model)
    v, a = _ungated_pools(model, video, audio, n)
    fused = seed_cmga(v, a, s, cmga.num_heads)[:, 0]
    _check(_scores(model, video, audio), _linear(fused, **_head_state(model.get_layer("logits"))))


@pytest.mark.parametrize("name", ["CMGAArchi1", "CMGAArchi4"])
def test_the_seeds_cmga_on_frame_sequences(name):
    """networks.py CMGAArchi1 (CrossModalGatedAttention over the [B, N, D] windows, viewed [B·N, D], NetRVLAD
    without gating, fc) and CMGAArchi4 (the same attention, mean over the frames, fc)."""
    model = _port(name)
    cmga = model.get_layer("cmga")
    s = _cmga_state(cmga)
    (video, audio), n = _inputs(model)
    fused = seed_cmga(video.astype("float64"), audio.astype("float64"), s, cmga.num_heads)
    if name == "CMGAArchi1":
        x = seed_netrvlad(fused.reshape(-1, D), _rvlad_state(model.get_layer("pool")), n)
    else:
        x = fused.mean(axis=1)
    _check(_scores(model, video, audio), _linear(x, **_head_state(model.get_layer("logits"))))


def test_the_seeds_late_fusion_transformer():
    """networks.py LateFusionArchi over fusion.py LateFusionTransformer (2 layers of nn.TransformerEncoderLayer,
    dim_ff 2·D), its NetRVLADs given [B·N, D] (the seed passes [B, N, D], which fails: docs/departures.md)."""
    model = _port("LateFusionArchi")
    (video, audio), n = _inputs(model)
    v, a = _ungated_pools(model, video, audio, n)
    fusion = model.get_layer("transformer")
    layers = []
    for enc in fusion.encoders:
        in_w, in_b, out_w, out_b = _mha_blocks(enc.attention)
        layers.append(
            {
                "in_proj_weight": in_w,
                "in_proj_bias": in_b,
                "out_proj_weight": out_w,
                "out_proj_bias": out_b,
                "linear1": (_np(enc.ff_in.kernel).T, _np(enc.ff_in.bias)),
                "linear2": (_np(enc.ff_out.kernel).T, _np(enc.ff_out.bias)),
                "norm1": {"weight": _np(enc.norm_attn.gamma), "bias": _np(enc.norm_attn.beta)},
                "norm2": {"weight": _np(enc.norm_ff.gamma), "bias": _np(enc.norm_ff.beta)},
            }
        )
    s = {"cls": _np(fusion.cls_token), "mod_embed": _np(fusion.modality_embedding), "layers": layers}
    fused = seed_late_fusion_transformer(v, a, s, fusion.num_heads)
    _check(_scores(model, video, audio), _linear(fused, **_head_state(model.get_layer("logits"))))


def seed_netvlad(reshaped_input, s, max_samples):
    """loupe.py NetVLAD.forward (no gating), input [B·N, F]: its residual is `a_sum * cluster_weights2` ([B, F, K])
    permuted to [B, K, F] and taken from the [B, F, K] aggregate."""
    feature_size = reshaped_input.shape[-1]
    cluster_size = s["cluster_weights"].shape[1]
    activation = _softmax(_batch_norm_eval(_linear(reshaped_input, s["cluster_weights"].T), s["cluster_bn"]), -1)
    activation_reshaped = activation.reshape(-1, max_samples, cluster_size)
    a_sum = activation_reshaped.sum(-2, keepdims=True)
    a = (a_sum * s["cluster_weights2"][None]).transpose(0, 2, 1)
    vlad = activation_reshaped.transpose(0, 2, 1) @ reshaped_input.reshape(-1, max_samples, feature_size)
    vlad = vlad.transpose(0, 2, 1)
    vlad = vlad - a
    vlad = _normalize(vlad, 1).reshape(-1, cluster_size * feature_size)
    return _linear(_normalize(vlad, 1), s["hidden1_weights"].T)


def test_the_seeds_netvlad_residual_runs_only_at_as_many_clusters_as_features():
    """docs/departures.md: the seed's NetVLAD subtracts a [B, K, F] residual from a [B, F, K] aggregate, which runs
    only when VLAD_k equals the feature size, and then gives other values than V&D's residual, which the port
    keeps (over 20 % rel. L2 here; 23-28 % at 512 features and clusters, fresh weights, random windows)."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(B, 8, D)).astype("float32")
    for k in (K, D):
        layer = NetVLAD(k, 8, residual=True, context_gating=False, bn_momentum=0.9, bn_epsilon=EPS, l2_floor="norm")
        port = np.asarray(layer(x, training=False)).astype("float64")
        s = {
            "cluster_weights": _np(layer.cluster_weights),
            "cluster_bn": _bn_state(layer.cluster_bn),
            "cluster_weights2": _np(layer.cluster_weights2),
            "hidden1_weights": spec_hidden_weights(layer).astype("float64"),
        }
        if k != D:
            with pytest.raises(ValueError, match="broadcast"):  # torch: "The size of tensor a ... must match"
                seed_netvlad(x.astype("float64").reshape(-1, D), s, 8)
            continue
        seed = seed_netvlad(x.astype("float64").reshape(-1, D), s, 8)
        assert np.linalg.norm(seed - port) > 0.2 * np.linalg.norm(port)
        layer.cluster_weights2.assign(np.zeros((D, D), "float32"))  # no residual: the rest of it is V&D's
        s["cluster_weights2"] = np.zeros((D, D))
        port = np.asarray(layer(x, training=False)).astype("float64")
        np.testing.assert_allclose(seed_netvlad(x.astype("float64").reshape(-1, D), s, 8), port, atol=TOL)
