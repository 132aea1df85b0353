"""Audio side: the log-mel frontend against a plain NumPy reference, VGGish weight loaders (Google checkpoint,
SavedModel, Keras 2 .h5) round trips, alignment and resampling, missing-weights errors."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from soccer_highlights.common.errors import UserError
from soccer_highlights.extract_features import audio, logmel


def reference_log_mel(wave: np.ndarray, frames: int) -> np.ndarray:
    """Frame by frame, with loops: the recipe of Google's mel_features.py written out longhand."""
    window = np.array([0.5 - 0.5 * np.cos(2 * np.pi * k / 400) for k in range(400)])
    freqs = np.array([8000.0 * k / 256 for k in range(257)])
    mel = lambda f: 1127.0 * np.log(1.0 + f / 700.0)  # noqa: E731
    edges = [mel(125.0) + (mel(7500.0) - mel(125.0)) * i / 65 for i in range(66)]
    weights = np.zeros((257, 64))
    for b in range(64):
        for k in range(1, 257):  # bin 0 (DC) stays zero
            m = mel(freqs[k])
            up = (m - edges[b]) / (edges[b + 1] - edges[b])
            down = (edges[b + 2] - m) / (edges[b + 2] - edges[b + 1])
            weights[k, b] = max(0.0, min(up, down))
    out = np.zeros((frames, 64))
    for t in range(frames):
        seg = wave[t * 160 : t * 160 + 400] * window
        spec = np.abs(np.fft.fft(seg, 512))[:257]
        out[t] = np.log(spec @ weights + 0.01)
    return out


def test_log_mel_matches_the_reference():
    rng = np.random.default_rng(0)
    t = np.arange(8000) / 16000
    wave = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(8000)
    got = logmel.log_mel(wave[None], logmel.FEATURE_FRAMES)
    assert got.shape == (1, 46, 64)
    np.testing.assert_allclose(got[0], reference_log_mel(wave, 46), atol=2e-5)
    every = logmel.log_mel(wave[None])  # a 0.5 s piece gives 48 frames; V&D keep the first 46
    assert every.shape == (1, 48, 64)
    np.testing.assert_allclose(every[:, : logmel.FEATURE_FRAMES], got, rtol=0, atol=1e-12)


def test_mel_matrix_matches_tensorflow():
    tf_matrix = tf.signal.linear_to_mel_weight_matrix(64, 257, 16000, 125.0, 7500.0, dtype=tf.float64).numpy()
    np.testing.assert_allclose(logmel.mel_matrix(), tf_matrix, atol=1e-9)


@pytest.fixture(scope="module")
def source():
    """A VGGish with seeded random weights standing in for Google's, and its outputs on fixed input."""
    model = audio.AudioEmbedder("random", need_embedding=True, seed=123)
    rng = np.random.default_rng(1)
    pieces = 0.2 * rng.standard_normal((3, 8000)).astype(np.float32)
    examples = 0.2 * rng.standard_normal((2, logmel.EMBEDDING_SAMPLES)).astype(np.float32)
    return model, pieces, examples, model.features(pieces), model.embeddings(examples)


def google_variables(model: audio.AudioEmbedder) -> dict[str, np.ndarray]:
    out = {}
    for layer, scope in audio.GOOGLE_SCOPES.items():
        kernel, bias = model.embedding_model.get_layer(layer).get_weights()
        out[f"{scope}/weights"], out[f"{scope}/biases"] = kernel, bias
    return out


def assert_same_outputs(loaded: audio.AudioEmbedder, source, embedding: bool = True) -> None:
    _, pieces, examples, features, embeddings = source
    np.testing.assert_allclose(loaded.features(pieces), features, rtol=1e-5, atol=1e-6)
    if embedding:
        np.testing.assert_allclose(loaded.embeddings(examples), embeddings, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_google_checkpoint_round_trip(source, tmp_path):
    variables = google_variables(source[0])
    path = tmp_path / "vggish_model.ckpt"
    # TF1 Saver's V1 format (one file), as Google's vggish_model.ckpt
    tf.raw_ops.Save(filename=str(path), tensor_names=list(variables), data=[tf.constant(v) for v in variables.values()])
    loaded = audio.AudioEmbedder(str(path), need_embedding=True, seed=7)
    assert loaded.source == f"checkpoint:{path}"
    assert_same_outputs(loaded, source)
    fresh = audio.AudioEmbedder("random", seed=7)
    assert not np.allclose(fresh.features(source[1]), source[3])  # the comparison can fail


def test_saved_model_variables_copied_by_name(source, tmp_path):
    module = tf.Module()
    module.vars = [tf.Variable(v, name=name) for name, v in google_variables(source[0]).items()]
    tf.saved_model.save(module, str(tmp_path / "hub"))
    assert_same_outputs(audio.AudioEmbedder(str(tmp_path / "hub"), need_embedding=True), source)


def test_keras2_h5_weights_like_vnd(source, tmp_path):
    import h5py

    path = tmp_path / "vggish_audioset_weights_without_fc2.h5"
    names = {
        "conv1": "conv1",
        "conv2": "conv2",
        "conv3_1": "conv3/conv3_1",
        "conv3_2": "conv3/conv3_2",
        "conv4_1": "conv4/conv4_1",
        "conv4_2": "conv4/conv4_2",
    }
    with h5py.File(path, "w") as h5:
        h5.attrs["layer_names"] = [n.encode() for n in ["input_1", *names.values(), "pool1"]]
        h5.create_group("input_1").attrs["weight_names"] = []
        h5.create_group("pool1").attrs["weight_names"] = []
        for ours, theirs in names.items():
            kernel, bias = source[0].embedding_model.get_layer(ours).get_weights()
            group = h5.require_group(theirs)
            group.attrs["weight_names"] = [f"{theirs}/kernel:0".encode(), f"{theirs}/bias:0".encode()]
            group[f"{theirs}/kernel:0"] = kernel
            group[f"{theirs}/bias:0"] = bias
    assert_same_outputs(audio.AudioEmbedder(str(path)), source, embedding=False)
    with pytest.raises(UserError, match="fc1_1/weights"):
        audio.AudioEmbedder(str(path), need_embedding=True)  # no fc layers in that file


def test_keras_native_weights(source, tmp_path):
    path = tmp_path / "vggish.weights.h5"
    source[0].embedding_model.save_weights(path)
    assert_same_outputs(audio.AudioEmbedder(str(path), need_embedding=True), source)


def test_missing_weights_are_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(UserError, match="nothing.ckpt: no such VGGish weights file"):
        audio.AudioEmbedder(str(tmp_path / "nothing.ckpt"))
    bad = tmp_path / "partial.ckpt"
    tf.raw_ops.Save(
        filename=str(bad),
        tensor_names=["vggish/conv1/weights", "vggish/conv1/biases"],
        data=[tf.zeros([3, 3, 1, 64]), tf.zeros([64])],
    )
    with pytest.raises(UserError, match="vggish/conv2/weights"):
        audio.AudioEmbedder(str(bad))

    import keras

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/audioset/vggish_model.ckpt: None")

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.delenv("VGGISH_CHECKPOINT", raising=False)
    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(UserError, match=f"place it at {tmp_path / 'keras' / 'models' / 'vggish_model.ckpt'}"):
        audio.AudioEmbedder("auto")


def test_alignment_and_resampling():
    fill = np.full(512, 7.0, np.float32)
    feats = np.arange(3 * 512, dtype=np.float32).reshape(3, 512)
    assert audio.align(feats, 2, fill).shape == (2, 512)
    padded = audio.align(feats, 5, fill)
    assert padded.shape == (5, 512) and (padded[3:] == 7).all() and (padded[:3] == feats).all()
    emb = np.arange(3, dtype=np.float32)[:, None].repeat(128, 1)
    tokens = audio.embeddings_to_tokens(emb, 7)  # token centres 0.25, 0.75, ... 3.25 s; examples every 0.96 s
    assert tokens[:, 0].tolist() == [0, 0, 1, 1, 2, 2, 2]
    examples, rest = logmel.split_examples(np.zeros(40000, np.float32))
    assert examples.shape == (2, 15600) and len(rest) == 40000 - 2 * 15360
    assert logmel.pad_example(rest).shape == (1, 15600)
