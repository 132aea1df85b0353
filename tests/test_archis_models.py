"""Every registered architecture: shapes, gradients, save/load round trip, and it can overfit 16 windows.

Parametrised over the registry, so a newly registered architecture is tested without editing this file.
"""

import json
import subprocess
import sys
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf

from soccer_highlights import archis
from soccer_highlights.archis import build_model, list_architectures, load_model, model_info
from soccer_highlights.common.errors import UserError

CLASSES = ("background", "kick", "subs", "card", "goal")
TINY = {"vlad_k": 4, "window_seconds": 2.0, "tokens_per_second": 2.0, "feature_dim": 16}  # N = 4, D = 16, K = 4


def _windows(n=16, seed=0, frames=4, dim=16):
    rng = np.random.default_rng(seed)
    x = {m: rng.normal(size=(n, frames, dim)).astype("float32") for m in ("video", "audio")}
    y = (rng.random((n, len(CLASSES))) < 0.4).astype("float32")
    return x, y


@pytest.mark.parametrize("name", list_architectures())
def test_forward_gradients_and_round_trip(name, tmp_path):
    model = build_model(name, seed=0, **TINY)
    x, y = _windows(n=3)
    logits = model(x, training=False)
    assert tuple(logits.shape) == (3, len(CLASSES)) and logits.dtype == "float32"

    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(y, model(x, training=True)))
    grads = tape.gradient(loss, model.trainable_weights)
    for weight, grad in zip(model.trainable_weights, grads, strict=True):
        assert grad is not None, f"{weight.path} gets no gradient"
        assert np.isfinite(np.asarray(grad)).all(), f"{weight.path} has a non-finite gradient"

    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.models.load_model(path)  # no custom_objects: `import archis` registered everything
    # The training-mode call above moved the batch-norm statistics, so compare with the model as saved.
    np.testing.assert_array_equal(np.asarray(loaded(x, training=False)), np.asarray(model(x, training=False)))
    assert model_info(loaded) == model_info(model)
    assert json.loads(zipfile.ZipFile(path).read("config.json"))["config"]["spec"]["architecture"] == name


@pytest.mark.slow
@pytest.mark.parametrize("name", list_architectures())
def test_can_overfit_16_windows(name):
    """Loss on the 16 training windows (inference mode, so dropout does not blur it) falls below a tenth."""
    x, y = _windows(n=16, seed=1)
    model = build_model(name, seed=1, **TINY)
    optimizer = keras.optimizers.Adam(1e-2)

    def loss_fn(training):
        return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(y, model(x, training=training)))

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = loss_fn(True)
        optimizer.apply_gradients(
            zip(tape.gradient(loss, model.trainable_weights), model.trainable_weights, strict=True)
        )

    start = float(loss_fn(False))
    for _ in range(150):
        step()
    end = float(loss_fn(False))
    assert end < start / 10, f"{name}: train loss {start:.3f} -> {end:.3f}"


@pytest.mark.parametrize("pooling", archis.POOLINGS)
def test_every_pooling_builds_concat(pooling):
    model = build_model("concat", pooling=pooling, vlad_k=6, window_seconds=3.0, feature_dim=16, seed=0)
    x, _ = _windows(n=2, frames=6)
    assert tuple(model(x).shape) == (2, len(CLASSES))
    assert model_info(model).pooling == pooling


def test_aliases_and_spec():
    model = build_model("audiovideoarchi5", pooling="rvlad", class_names=("background", "goal"), **TINY)
    spec = model_info(model)
    assert spec.architecture == "concat" and spec.pooling == "NetRVLAD"
    assert spec.window_frames == 4 and spec.class_names == ("background", "goal")
    assert spec.feature_names == {"video": "ResNET_TF2_PCA512", "audio": "VGGish"}
    written = "architecture pooling vlad_k window_seconds tokens_per_second window_frames feature_dim class_names"
    assert set(spec.to_json()) == {
        *written.split(),
        "feature_names",
        "compute_dtype",
        "dropout",
        "context_gating",
        "batch_norm",
        "head_init",
        "bn_eval",
        "l2_floor",
    }
    for alias, canonical in archis.ALIASES.items():
        assert archis.canonical_architecture(alias.upper()) == canonical


def test_single_modality_ignores_the_other_input():
    model = build_model("video", seed=0, **TINY)
    x, _ = _windows(n=2)
    other = {"video": x["video"], "audio": x["audio"] + 5.0}
    np.testing.assert_array_equal(np.asarray(model(x)), np.asarray(model(other)))


def test_bfloat16_logits_stay_float32_and_close():
    x, _ = _windows(n=4)
    f32 = build_model("gmu", seed=3, **TINY)
    bf16 = build_model("gmu", seed=3, compute_dtype="bfloat16", **TINY)
    bf16.set_weights(f32.get_weights())
    out = bf16(x)
    assert out.dtype == "float32" and model_info(bf16).compute_dtype == "bfloat16"
    np.testing.assert_allclose(np.asarray(out), np.asarray(f32(x)), atol=0.1)


def test_unknown_architecture_lists_valid_names():
    with pytest.raises(UserError, match="valid: video, audio, late_avg, concat.*AudioVideoArchi5"):
        build_model("resnet")


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"compute_dtype": "float16"}, "compute_dtype"),
        ({"window_seconds": 0.1}, "no frames"),
        ({"vlad_k": 0}, "vlad_k must be in"),
        ({"dropout": 1.0}, "dropout"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(UserError, match=match):
        build_model("concat", **kwargs)


def test_load_model_errors(tmp_path):
    with pytest.raises(UserError, match="no such model file"):
        load_model(tmp_path / "missing.keras")
    junk = tmp_path / "junk.keras"
    junk.write_text("not a model")
    with pytest.raises(UserError, match=r"junk.keras: not a Keras model"):
        load_model(junk)
    empty_zip = tmp_path / "empty.keras"
    zipfile.ZipFile(empty_zip, "w").close()
    with pytest.raises(UserError, match=r"empty.keras: not a Keras model \("):
        load_model(empty_zip)


@pytest.mark.slow
def test_plain_keras_load_in_fresh_process(tmp_path):
    """A saved model loads in a new interpreter with nothing but `import archis` (registration on import)."""
    model = build_model("transformer", seed=0, **TINY)
    x, _ = _windows(n=2)
    np.save(tmp_path / "x_video.npy", x["video"])
    np.save(tmp_path / "x_audio.npy", x["audio"])
    np.save(tmp_path / "want.npy", np.asarray(model(x)))
    model.save(tmp_path / "m.keras")
    code = (
        "import sys, numpy as np, keras, archis; d = sys.argv[1];"
        "m = keras.models.load_model(d + '/m.keras');"
        "x = {k: np.load(f'{d}/x_{k}.npy') for k in ('video', 'audio')};"
        "assert np.array_equal(np.asarray(m(x)), np.load(d + '/want.npy')); print(m.spec.architecture)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "transformer"
