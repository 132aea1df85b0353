"""Loading skips the random draws of weights that the file overwrites, and the float16 export of the
NetVLAD projection: smaller file, same scores to float16 rounding, loadable by plain Keras."""

from __future__ import annotations

import io
import zipfile

import h5py
import numpy as np

from soccer_highlights import archis
from soccer_highlights.archis.export import main as export_main
from soccer_highlights.archis.pooling import no_random_init


def _projection_dtypes(path) -> set[str]:
    with zipfile.ZipFile(path) as zf, h5py.File(io.BytesIO(zf.read("model.weights.h5")), "r") as f:
        found: set[str] = set()
        f.visititems(
            lambda name, obj: (
                found.add(str(obj.dtype))
                if name.endswith("vars/2") and "net_vlad" in name and "cluster_bn" not in name and "gating" not in name
                else None
            )
        )
        return found


def test_load_gives_the_saved_weights_not_zeros(tmp_path):
    model = archis.build_model("concat", vlad_k=8, window_seconds=4, seed=3)
    model.save(tmp_path / "m.keras")
    loaded = archis.load_model(tmp_path / "m.keras")
    for a, b in zip(model.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    with no_random_init():
        zeros = archis.build_model("concat", vlad_k=8, window_seconds=4)
    assert not np.any(_projection(zeros))
    assert np.any(_projection(archis.build_model("concat", vlad_k=8, window_seconds=4)))  # random again outside


def _projection(model) -> np.ndarray:
    return next(w for w in model.weights if w.path.endswith("hidden_weights")).numpy()


def test_half_export_is_smaller_and_scores_the_same(tmp_path, capsys):
    import keras

    model = archis.build_model("concat", vlad_k=32, window_seconds=4, seed=1)
    model.save(tmp_path / "m.keras")
    assert export_main([str(tmp_path / "m.keras"), str(tmp_path / "half.keras")]) == 0
    assert "MB" in capsys.readouterr().out
    assert _projection_dtypes(tmp_path / "m.keras") == {"float32"}
    assert _projection_dtypes(tmp_path / "half.keras") == {"float16"}
    assert (tmp_path / "half.keras").stat().st_size < 0.6 * (tmp_path / "m.keras").stat().st_size
    half = keras.models.load_model(tmp_path / "half.keras")
    assert all(w.dtype == "float32" for w in half.weights)
    x = {m: np.random.default_rng(0).normal(size=(16, 8, 512)).astype(np.float32) for m in ("video", "audio")}
    probs = [1 / (1 + np.exp(-np.asarray(m(x, training=False)))) for m in (model, half)]
    assert np.abs(probs[0] - probs[1]).max() < 2e-3
    assert archis.model_info(half) == archis.model_info(model)
