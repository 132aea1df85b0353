"""SoccerNet's temporally aware poolings (NetVLAD++, NetRVLAD++, MAX++, AVG++) as its benchmark defines them."""

from __future__ import annotations

import numpy as np
import pytest

from soccer_highlights import archis
from soccer_highlights.archis.pooling import NetVLADPlusPlus, make_pooling
from soccer_highlights.archis.soccernet_pooling import SoccerNetPooling


def _l2(x, axis):
    return x / np.maximum(np.linalg.norm(x, axis=axis, keepdims=True), 1e-12)


def _reference_vlad(x, clusters, clusters2=None):
    """SoccerNet's netvlad.py forward, step by step in NumPy: frames L2-normalised, softmax assignment,
    residual to clusters2 (NetVLAD only), intra-normalised over D, flattened D-major, L2-normalised."""
    x = _l2(x, -1)
    logits = x @ clusters
    a = np.exp(logits - logits.max(-1, keepdims=True))
    a /= a.sum(-1, keepdims=True)
    vlad = np.einsum("bnk,bnd->bdk", a, x)
    if clusters2 is not None:
        vlad = vlad - a.sum(1)[:, None, :] * clusters2[None]
    vlad = _l2(vlad, 1)
    return _l2(vlad.reshape(len(x), -1), -1)


@pytest.mark.parametrize("kind", ["NetVLAD++", "NetRVLAD++"])
def test_vlad_plus_plus_is_soccernets_two_half_vocabularies_without_projection(kind):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 9, 6)).astype(np.float32)  # odd N: the later half gets the extra frame
    layer = make_pooling(kind, vlad_k=8, output_dim=999)
    out = np.asarray(layer(x))
    assert isinstance(layer, SoccerNetPooling) and out.shape == (3, 6 * 8)
    w = {v.path.split("/")[-1]: np.asarray(v) for v in layer.weights}
    second = kind == "NetVLAD++"
    expected = np.concatenate(
        [
            _reference_vlad(x[:, :4], w["before_clusters"], w["before_clusters2"] if second else None),
            _reference_vlad(x[:, 4:], w["after_clusters"], w["after_clusters2"] if second else None),
        ],
        axis=-1,
    )
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    assert {v.shape for v in layer.weights} == {(6, 4)}  # VLAD_k / 2 clusters a half, nothing else


def test_max_and_avg_plus_plus_pool_each_half():
    x = np.random.default_rng(1).standard_normal((2, 8, 5)).astype(np.float32)
    mx = np.asarray(make_pooling("MAX++", vlad_k=4, output_dim=5)(x))
    avg = np.asarray(make_pooling("AVG++", vlad_k=4, output_dim=5)(x))
    np.testing.assert_allclose(mx, np.concatenate([x[:, :4].max(1), x[:, 4:].max(1)], -1))
    np.testing.assert_allclose(avg, np.concatenate([x[:, :4].mean(1), x[:, 4:].mean(1)], -1), rtol=1e-6)


def test_vd_style_halves_keep_their_own_name_and_old_files_keep_their_meaning():
    assert isinstance(make_pooling("NetVLAD++vd", vlad_k=4, output_dim=8), NetVLADPlusPlus)
    spec = archis.build_model("concat", pooling="NetVLAD++", vlad_k=4, window_seconds=2).spec
    old = {k: v for k, v in spec.to_json().items() if k not in ("batch_norm", "head_init")}  # files saved before them
    model = archis.ArchiModel.from_config({"spec": old})
    assert model.spec.pooling == "NetVLAD++vd"
    assert any(isinstance(layer, NetVLADPlusPlus) for layer in model.layers)


def test_soccernet_pooling_round_trips_through_a_model_file(tmp_path):
    model = archis.build_model("concat", pooling="NetRVLAD++", vlad_k=4, window_seconds=2, seed=0)
    x = {m: np.random.default_rng(2).standard_normal((2, 4, 512)).astype(np.float32) for m in ("video", "audio")}
    model.save(tmp_path / "m.keras")
    loaded = archis.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(model(x)), rtol=1e-5)
