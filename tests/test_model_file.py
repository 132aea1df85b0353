"""Loading skips the random draws of weights that the file overwrites and reads each weight once, straight into
its variable (the file mapped, aligned files used in place); the float16 export of the NetVLAD projection:
smaller file, same scores to float16 rounding, loadable by plain Keras."""

from __future__ import annotations

import io
import zipfile

import h5py
import numpy as np
import pytest

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


# ---- weights read once, straight into the variables (archis.loading, common.modelfile) -------------------------

_TINY = {"vlad_k": 4, "window_seconds": 2.0, "tokens_per_second": 2.0, "feature_dim": 16}


def _mapped_load(path):
    """The model of `path` with its weights assigned by `archis.loading` (never Keras' loader), and the bytes
    used in place."""
    from soccer_highlights.archis.loading import assign_weights
    from soccer_highlights.archis.model import ArchiModel
    from soccer_highlights.common.modelfile import open_model

    archive = open_model(path)
    with no_random_init():
        model = ArchiModel(archive.spec)
    return model, assign_weights(model, archive)


_CASES = [(a, "NetVLAD") for a in sorted(archis.ARCHITECTURES)] + [
    (a, p) for a in ("concat", "late_avg") for p in ("NetRVLAD", "MAX", "NetVLAD++", "AVG++", "NetVLAD++vd")
]


@pytest.mark.slow
@pytest.mark.parametrize(("architecture", "pooling"), _CASES)
def test_every_architecture_maps_its_weights_as_keras_reads_them(architecture, pooling, tmp_path):
    """The mapped loader fills every variable with what `keras.saving.load_model` reads, in every architecture
    (fusion blocks on NetVLAD) and every pooling (on two architectures); no fallback: `assign_weights` raises
    when a group or a variable is left unmatched."""
    import keras

    model = archis.build_model(architecture, pooling=pooling, seed=5, **_TINY)
    model.save(tmp_path / "m.keras")
    mapped, _ = _mapped_load(tmp_path / "m.keras")
    reference = keras.saving.load_model(tmp_path / "m.keras")
    assert len(mapped.weights) == len(reference.weights)
    for a, b in zip(mapped.weights, reference.weights, strict=True):
        assert a.path == b.path
        np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.slow
def test_an_aligned_file_is_used_in_place_and_stays_a_keras_file(tmp_path):
    import keras

    from soccer_highlights.common.modelfile import align_weights, dataset_alignment

    model = archis.build_model("concat", vlad_k=16, window_seconds=4, seed=2)
    model.save(tmp_path / "m.keras")
    (tmp_path / "m.keras").chmod(0o644)
    assert align_weights(tmp_path / "m.keras")
    assert (tmp_path / "m.keras").stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600
    residues = dict(dataset_alignment(tmp_path / "m.keras"))
    assert residues and set(residues.values()) == {0}, residues
    mapped, in_place = _mapped_load(tmp_path / "m.keras")
    assert in_place >= 2 * 16 * 512 * 512 * 4  # both projections used where they lie in the file
    plain = keras.saving.load_model(tmp_path / "m.keras")  # still an ordinary .keras file
    for a, b, c in zip(model.weights, mapped.weights, plain.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
        np.testing.assert_array_equal(a.numpy(), c.numpy())


@pytest.mark.slow
def test_training_a_mapped_model_never_writes_the_file(tmp_path):
    """The mapping is private: an optimiser step on a loaded model changes its variables, not the file."""
    from soccer_highlights.common.modelfile import align_weights

    archis.build_model("concat", vlad_k=16, window_seconds=4, seed=2).save(tmp_path / "m.keras")
    align_weights(tmp_path / "m.keras")
    before = (tmp_path / "m.keras").read_bytes()
    loaded = archis.load_model(tmp_path / "m.keras")
    projection = next(w for w in loaded.weights if w.path.endswith("hidden_weights"))
    old = projection.numpy().copy()
    projection.assign_add(np.ones(projection.shape, np.float32))
    np.testing.assert_array_equal(projection.numpy(), old + 1)
    assert (tmp_path / "m.keras").read_bytes() == before


@pytest.mark.slow
def test_shared_load_is_one_object_per_file(tmp_path):
    archis.build_model("concat", **_TINY, seed=1).save(tmp_path / "m.keras")
    first = archis.load_model(tmp_path / "m.keras", shared=True)
    assert archis.load_model(tmp_path / "m.keras", shared=True) is first
    assert archis.load_model(tmp_path / "m.keras") is not first  # a caller that may change it gets its own


@pytest.mark.slow
def test_a_compressed_weights_member_is_read_by_keras_loader(tmp_path):
    """Not mappable (deflated): the same weights through Keras' own loader, no error."""
    model = archis.build_model("concat", **_TINY, seed=4)
    model.save(tmp_path / "m.keras")
    with zipfile.ZipFile(tmp_path / "m.keras") as src, zipfile.ZipFile(tmp_path / "z.keras", "w") as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info), compress_type=zipfile.ZIP_DEFLATED)
    loaded = archis.load_model(tmp_path / "z.keras")
    for a, b in zip(model.weights, loaded.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
