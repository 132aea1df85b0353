"""Each architecture follows the code it comes from: dropout rate, context gating and initial weights."""

import math

import keras
import numpy as np
import pytest

from soccer_highlights.archis import build_model, load_model
from soccer_highlights.archis.fusion import CMGA, EncoderLayer, TransformerFusion
from soccer_highlights.archis.pooling import NetVLAD
from soccer_highlights.commands import train as cmb
from soccer_highlights.common.errors import UserError

TINY = {"vlad_k": 4, "window_seconds": 2.0, "tokens_per_second": 2.0, "feature_dim": 16}
VD = ("AudioVideoArchi5", "AudioVideoArchi4", "AudioVideoArchi6", "AudioVideoArchi7", "VideoNetwork", "AudioNetwork")
SEED = ("GMU", "CMGAArchi1", "CMGAArchi2", "CMGAArchi3", "CMGAArchi4")


def _dropout_rates(model) -> set[float]:
    return {round(layer.rate, 6) for layer in model.layers if isinstance(layer, keras.layers.Dropout)}


@pytest.mark.parametrize(
    ("names", "rate"),
    [(VD, 0.4), (SEED, 0.5), (("LateFusionArchi",), 0.6)],
    ids=["V&D keep_prob 0.6", "seed 0.5", "seed LateFusionArchi 0.6"],
)
def test_default_dropout_is_the_originals(names, rate):
    for name in names:
        model = build_model(name, seed=0, **TINY)
        assert model.spec.dropout == rate, name
        assert _dropout_rates(model) == {rate}, name


def test_dropout_flag_is_saved_in_the_model(tmp_path):
    model = build_model("concat", dropout=0.3, seed=0, **TINY)
    model.save(tmp_path / "m.keras")
    loaded = load_model(tmp_path / "m.keras")
    assert loaded.spec.dropout == 0.3 and _dropout_rates(loaded) == {0.3}
    args = cmb.build_parser().parse_args(["--architecture", "GMU", "--dropout", "0.25"])
    assert args.dropout == 0.25
    with pytest.raises(UserError, match="--dropout"):
        cmb._config(cmb.build_parser().parse_args(["--mode", "ensemble", "--dropout", "1.5"]))


def _gating(model) -> dict[str, bool]:
    return {layer.name: layer.context_gating for layer in model.layers if isinstance(layer, NetVLAD)}


@pytest.mark.parametrize("name", ["GMU", "CMGAArchi1", "CMGAArchi2", "CMGAArchi3", "LateFusionArchi"])
def test_seed_fusion_models_pool_without_context_gating(name):
    gating = _gating(build_model(name, pooling="NetVLAD", seed=0, **TINY))
    assert gating and not any(gating.values()), gating


@pytest.mark.parametrize("name", ["AudioVideoArchi5", "AudioVideoArchi7", "VideoNetwork"])
def test_vd_models_keep_context_gating(name):
    gating = _gating(build_model(name, pooling="NetVLAD", seed=0, **TINY))
    assert gating and all(gating.values()), gating


def _bound_used(weights: np.ndarray, bound: float) -> None:
    """Uniform weights in +-bound that reach close to it (so a wider or narrower init fails)."""
    top = np.abs(weights).max()
    assert 0.9 * bound < top <= bound, (top, bound)


def test_cmga_initial_weights_are_the_seeds():
    d = 64
    keras.utils.set_random_seed(0)
    layer = CMGA(num_heads=8)
    layer.build(((None, 3, d), (None, 3, d)))
    fused_xavier = math.sqrt(6 / (4 * d))  # PyTorch's nn.Linear(D, 3D) q/k/v, Xavier-uniform
    for dense in (layer.query, layer.key, layer.value):
        _bound_used(np.asarray(dense.kernel), fused_xavier)
    _bound_used(np.asarray(layer.fusion._query_dense.kernel), fused_xavier)
    _bound_used(np.asarray(layer.forget.bias), 1 / math.sqrt(2 * d))  # nn.Linear's default bias init
    _bound_used(np.asarray(layer.message.bias), 1 / math.sqrt(d))


def test_transformer_initial_weights_are_the_seeds():
    d = 64
    keras.utils.set_random_seed(0)
    layer = TransformerFusion(num_layers=1, num_heads=8, ff_dim=128)
    layer.build(((None, d), (None, d)))
    emb = np.asarray(layer.modality_embedding)
    assert 0.8 < emb.std() < 1.2, "nn.Embedding starts N(0, 1)"
    assert 0.012 < np.asarray(layer.cls_token).std() < 0.028
    enc: EncoderLayer = layer.encoders[0]
    _bound_used(np.asarray(enc.ff_in.kernel), 1 / math.sqrt(d))
    _bound_used(np.asarray(enc.ff_in.bias), 1 / math.sqrt(d))
    _bound_used(np.asarray(enc.ff_out.kernel), 1 / math.sqrt(128))
    _bound_used(np.asarray(enc.attention._key_dense.kernel), math.sqrt(6 / (4 * d)))


def test_batch_norm_with_moving_averages_scores_a_window_alone_as_batched():
    """`--bn_eval moving` (the seed's; V&D normalised each half by its own moments, `tests/test_fidelity_bn.py`):
    a window scores the same alone or batched."""
    model = build_model("AudioVideoArchi5", pooling="NetRVLAD", seed=0, bn_eval="moving", **TINY)
    rng = np.random.default_rng(0)
    x = {m: rng.normal(size=(6, 4, 16)).astype("float32") for m in ("video", "audio")}
    model({m: v * 3 + 1 for m, v in x.items()}, training=True)  # moves nothing at evaluation, only in training
    batched = np.asarray(model(x, training=False))
    alone = np.asarray(model({m: v[:1] for m, v in x.items()}, training=False))
    np.testing.assert_allclose(alone[0], batched[0], atol=1e-5)


def test_a_model_saved_before_the_spec_named_its_gating_keeps_it(tmp_path):
    """Files whose spec has no `context_gating` were built with gated poolings (but GMU's and CMGA's):
    they rebuild that way, with their gating weights, not silently as the seed's ungated model."""
    import json
    import zipfile

    model = build_model("CMGAArchi1", pooling="NetVLAD", context_gating=True, seed=0, **TINY)
    model.save(tmp_path / "new.keras")
    with zipfile.ZipFile(tmp_path / "new.keras") as src, zipfile.ZipFile(tmp_path / "old.keras", "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "config.json":
                config = json.loads(data)
                del config["config"]["spec"]["context_gating"]
                data = json.dumps(config).encode()
            dst.writestr(item, data)
    old = load_model(tmp_path / "old.keras")
    assert all(_gating(old).values()) and old.spec.context_gating is True
    x = {m: np.ones((1, 4, 16), "float32") for m in ("video", "audio")}
    np.testing.assert_allclose(np.asarray(old(x)), np.asarray(model(x)), atol=1e-6)


def test_cmgaarchi3_is_the_seeds_pooled_bottleneck_and_the_paper_layout_keeps_its_name():
    from soccer_highlights import archis

    seed = archis.build_model("CMGAArchi3", vlad_k=2, window_seconds=3, seed=0)
    assert seed.spec.architecture == "cmga_bottleneck"
    assert seed.get_layer("logits").get_weights()[0].shape[0] == 512  # classifies the fused 512-d token
    paper = archis.build_model("bottleneck", vlad_k=2, window_seconds=3, seed=0)
    assert paper.get_layer("logits").get_weights()[0].shape[0] == 1024  # sequences fused, pooled, concatenated
