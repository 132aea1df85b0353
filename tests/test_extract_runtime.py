"""The feature networks on OpenVINO: TensorFlow's float32 features, the converted-model cache (reused, rebuilt
when damaged or stale), int8 calibration and the fidelity check, and the int8 drift rule of the recipe check.
Random weights throughout; ResNet-152 runs on a few frames."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from soccer_highlights.commands.extract import main
from soccer_highlights.common.errors import UserError
from soccer_highlights.common.features import DRIFT_WARN, RecipeCheck, drift_problem, recipe_of
from soccer_highlights.extract_features import runtime
from soccer_highlights.extract_features.audio import AudioEmbedder
from soccer_highlights.extract_features.pipeline import ExtractConfig
from tests.media import make_video


def relative_l2(reference: np.ndarray, other: np.ndarray) -> np.ndarray:
    return np.linalg.norm(other - reference, axis=1) / np.linalg.norm(reference, axis=1)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("runtime") / "clip.mp4", 2.0)


@pytest.mark.slow
def test_openvino_float32_features_equal_tensorflow_float32(clip, tmp_path):
    folders = {}
    for name in ("openvino", "tensorflow"):
        folders[name] = tmp_path / name
        args = ["--video", str(clip), "--out", str(folders[name]), "--weights", "random", "--feature_runtime", name]
        assert main([*args, "--save_raw", "--vggish128", "--quiet", "--frames_per_call", "3"]) == 0
    for suffix in ("ResNET_TF2", "ResNET_TF2_PCA512", "VGGish", "VGGish_embedding128"):
        ov, tf = (np.load(folders[n] / f"1_{suffix}.npy") for n in ("openvino", "tensorflow"))
        assert ov.shape == tf.shape and len(ov) == 4
        assert relative_l2(tf, ov).max() <= 1e-5, suffix
    records = {n: json.loads((folders[n] / "extraction.json").read_text()) for n in folders}
    assert records["openvino"]["runtime"] == "openvino" and records["tensorflow"]["runtime"] == "tensorflow"
    assert records["openvino"]["settings"] == records["tensorflow"]["settings"]  # same features: same settings
    calls = {n: records[n]["halves"]["1"]["resnet_calls"] for n in records}
    assert calls["openvino"] == calls["tensorflow"] == "latency hint, one request, calls of 3 frames"


@pytest.mark.slow
def test_converted_vggish_is_cached_reused_and_rebuilt_when_damaged(tmp_path, monkeypatch, capsys):
    pieces = 0.2 * np.random.default_rng(0).standard_normal((3, 8000)).astype(np.float32)
    first = AudioEmbedder("random", seed=5, runtime="openvino", cache_dir=tmp_path).features(pieces)
    (folder,) = tmp_path.glob("vggish-*")
    assert json.loads((folder / "manifest.json").read_text())["key"]["weights"] == "random:5"

    real_convert = runtime.convert
    monkeypatch.setattr(runtime, "convert", lambda fn: pytest.fail("converted again despite a valid cache"))
    again = AudioEmbedder("random", seed=5, runtime="openvino", cache_dir=tmp_path).features(pieces)
    np.testing.assert_array_equal(again, first)

    calls = []
    monkeypatch.setattr(runtime, "convert", lambda fn: calls.append(1) or real_convert(fn))
    with open(folder / "model.bin", "r+b") as f:  # flip bytes in the weights: the hash check must catch it
        f.seek(1000)
        f.write(b"\xff" * 64)
    rebuilt = AudioEmbedder("random", seed=5, runtime="openvino", cache_dir=tmp_path).features(pieces)
    assert calls == [1] and "damaged or stale converted model" in capsys.readouterr().err
    np.testing.assert_array_equal(rebuilt, first)
    other = AudioEmbedder("random", seed=6, runtime="openvino", cache_dir=tmp_path).features(pieces)
    assert len(list(tmp_path.glob("vggish-*"))) == 2 and not np.allclose(other, first)  # other weights, other key


def test_stale_manifest_is_not_trusted(tmp_path, monkeypatch):
    AudioEmbedder("random", seed=5, runtime="openvino", cache_dir=tmp_path)
    (folder,) = tmp_path.glob("vggish-*")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["key"]["weights"] = "random:99"
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert runtime.load_stored(folder, {**manifest["key"], "weights": "random:5"}) is None


def test_a_model_another_process_stored_first_is_kept(tmp_path):
    """Array tasks share one cache: a task that converted the same network second keeps the first one's folder
    (never removed under a task reading it) and leaves no temporary folder."""
    import openvino as ov

    AudioEmbedder("random", seed=5, runtime="openvino", cache_dir=tmp_path)
    (folder,) = tmp_path.glob("vggish-*")
    key = json.loads((folder / "manifest.json").read_text())["key"]
    inode = folder.stat().st_ino
    model = ov.Core().read_model(folder / "model.xml")
    assert runtime.store(model, folder, key) == folder / "model.xml"
    assert folder.stat().st_ino == inode and runtime.load_stored(folder, key)
    assert [p.name for p in tmp_path.iterdir()] == [folder.name]


def test_resnet_cache_hit_builds_no_keras_network(monkeypatch):
    from soccer_highlights.extract_features.video import FrameEmbedder

    frames = np.random.default_rng(1).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    first = FrameEmbedder("random", seed=0, runtime="openvino")(frames)  # converts once per machine
    monkeypatch.setattr(FrameEmbedder, "keras_function", lambda *a: pytest.fail("Keras network built"))
    np.testing.assert_array_equal(FrameEmbedder("random", seed=0, runtime="openvino")(frames), first)


def test_int8_needs_openvino_and_a_calibrated_model():
    with pytest.raises(UserError, match="--int8_model"):
        ExtractConfig(weights="random", compute_dtype="int8")
    with pytest.raises(UserError, match="not --feature_runtime tensorflow"):
        ExtractConfig(weights="random", compute_dtype="int8", runtime="tensorflow", int8_model="x")
    with pytest.raises(UserError, match="int8 runs on OpenVINO only"):
        runtime.resolve_runtime("tensorflow", "int8")
    assert "runtime" not in ExtractConfig(weights="random").settings()  # old records still resume


@pytest.mark.slow
def test_calibrate_then_extract_int8_then_check_precision(clip, tmp_path, capsys):
    out = tmp_path / "int8"
    assert main(["calibrate", "--video", str(clip), "--out", str(out), "--frames", "3", "--weights", "random"]) == 0
    report = json.loads((out / "fidelity.json").read_text())
    assert report["source"] == "calibrate" and report["video"]["tokens"] >= 1 and 0 < report["drift"] < 1
    for net in ("resnet", "vggish"):
        assert json.loads((out / net / "manifest.json").read_text())["key"]["quantised"] == "int8"

    feats = tmp_path / "f8"
    args = ["--video", str(clip), "--out", str(feats), "--weights", "random", "--quiet"]
    assert main([*args, "--feature_dtype", "int8", "--int8_model", str(out)]) == 0
    record = json.loads((feats / "extraction.json").read_text())
    assert record["compute_dtype"] == "int8" and record["runtime"] == "openvino"
    assert record["fidelity"]["drift"] == report["drift"]
    assert recipe_of(record)["precision"] == "int8"
    assert np.isfinite(np.load(feats / "1_ResNET_TF2_PCA512.npy")).all()

    check = ["check_precision", "--video", str(clip), "--weights", "random", "--quiet"]
    assert main([*check, "--feature_dtype", "int8", "--int8_model", str(out), "--out", str(tmp_path / "r.json")]) == 0
    checked = json.loads((tmp_path / "r.json").read_text())
    assert checked["video"]["tokens"] == 4 and "pca_rel_l2" in checked["video"]
    assert 0 <= checked["video"]["nn_agreement"] <= 1 and checked["audio"]["rel_l2"]["median"] > 0
    assert json.loads((out / "fidelity.json").read_text())["source"] == "check_precision"
    assert "int8 vs float32" in capsys.readouterr().out

    with pytest.raises(UserError, match="calibrated for other weights"):
        main([*args, "--feature_dtype", "int8", "--int8_model", str(out), "--seed", "1", "--overwrite"])


@pytest.mark.slow
def test_check_precision_compares_a_models_scores_and_spans(clip, tiny_model, tmp_path, monkeypatch):
    """bfloat16: the report of check_precision is kept under the networks' key and recorded by every later
    bfloat16 extraction with the same networks and PCA (not by one with other weights)."""
    from soccer_highlights.extract_features import fidelity

    real_path = fidelity._precision_path  # the reports of this test go to its own folder, not the user's cache
    monkeypatch.setattr(fidelity, "_precision_path", lambda cache_dir, key: tmp_path / real_path(cache_dir, key).name)
    out = tmp_path / "r.json"
    args = ["check_precision", "--video", str(clip), "--weights", "random", "--quiet", "--feature_dtype", "bfloat16"]
    assert main([*args, "--model", str(tiny_model), "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["scores"]["max_abs"] >= report["scores"]["mean_abs"] >= 0
    assert set(report["spans"]) == {"float32", "same", "lost", "new"}
    if runtime.cpu_has_bfloat16():
        assert 0 < report["video"]["rel_l2"]["median"] < 0.1  # bfloat16 is not float32, but close
    else:  # OpenVINO runs float32 on a CPU without bfloat16 units (and says so once)
        assert report["video"]["rel_l2"]["median"] == 0
    assert len(list(tmp_path.glob("openvino-bfloat16-*.json"))) == 1

    extract = ["--video", str(clip), "--weights", "random", "--quiet", "--feature_dtype", "bfloat16"]
    assert main([*extract, "--out", str(tmp_path / "bf16")]) == 0
    record = json.loads((tmp_path / "bf16" / "extraction.json").read_text())
    assert record["fidelity"] == report and record["compute_dtype"] == "bfloat16"
    assert drift_problem({"video": "soccernet", "audio": "channel_mean"}, record) is None  # 4e-3: below the rule
    assert main([*extract, "--out", str(tmp_path / "other"), "--seed", "3"]) == 0
    assert "fidelity" not in json.loads((tmp_path / "other" / "extraction.json").read_text())


def int8_record(drift: float | None) -> dict:
    record = {"recipe": {"video": "soccernet", "audio": "channel_mean"}, "compute_dtype": "int8"}
    return record if drift is None else {**record, "fidelity": {"drift": drift}}


def test_drift_rule_warns_on_int8_features_for_a_float32_model(caplog):
    float_model = {"video": "soccernet", "audio": "channel_mean"}
    assert drift_problem(float_model, int8_record(2 * DRIFT_WARN)) is not None
    assert drift_problem(float_model, int8_record(None)) is not None  # never measured
    assert drift_problem(float_model, int8_record(DRIFT_WARN / 2)) is None
    assert drift_problem({**float_model, "precision": "int8"}, int8_record(2 * DRIFT_WARN)) is None
    assert drift_problem(float_model, {**int8_record(None), "compute_dtype": "float32"}) is None
    bf16 = {**int8_record(None), "compute_dtype": "bfloat16"}
    assert drift_problem(float_model, bf16) is None  # bfloat16 needs no check to be used
    assert "bfloat16 features drift" in drift_problem(float_model, {**bf16, "fidelity": {"drift": 2 * DRIFT_WARN}})
    check = RecipeCheck(float_model, "m.keras")
    with caplog.at_level(logging.WARNING):
        assert check(recipe_of(int8_record(2 * DRIFT_WARN)), "game", int8_record(2 * DRIFT_WARN))
        check(recipe_of(int8_record(2 * DRIFT_WARN)), "game 2", int8_record(2 * DRIFT_WARN))
    assert [r.getMessage() for r in caplog.records if "drift" in r.getMessage()][0].startswith("game: int8")
    assert sum("drift" in r.getMessage() for r in caplog.records) == 1  # once per run


def test_inference_passes_its_feature_network_flags_to_the_extractor(tiny_model, clip, tmp_path):
    from soccer_highlights.commands import inference

    argv = ["--model", str(tiny_model), "--out", str(tmp_path / "o"), "--video", str(clip), "--weights", "random"]
    plan = inference.build_config(inference.parse_args([*argv, "--feature_runtime", "tensorflow"]))
    extract = plan.extraction()
    assert (extract.runtime, extract.compute_dtype) == ("tensorflow", "float32")
    plan = inference.build_config(inference.parse_args([*argv, "--feature_dtype", "int8", "--int8_model", "q"]))
    assert plan.extraction().int8_model == "q"
    with pytest.raises(UserError, match="--int8_model"):
        inference.build_config(inference.parse_args([*argv, "--feature_dtype", "int8"]))


def test_throughput_mode_splits_a_batch_over_requests_and_keeps_row_order(tmp_path):
    vggish = AudioEmbedder("random", seed=5, runtime="openvino", cache_dir=tmp_path)
    x = np.random.default_rng(2).standard_normal((5, 46, 64, 1)).astype(np.float32)
    latency = runtime.CompiledNetwork(vggish.xml, "float32")(x)
    net = runtime.CompiledNetwork(vggish.xml, "float32", hint="THROUGHPUT", requests=3)
    assert net.requests == 3
    np.testing.assert_allclose(net(x), latency, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(net(x[:1]), latency[:1], rtol=1e-5, atol=1e-6)


def test_streamed_calls_equal_one_call_at_a_time_and_stop_early(tmp_path):
    """`stream` pipelines calls over the requests: every call's output is the one `net(call)` gives, bit for bit
    and in order (uneven calls, a call of one row); closed early, it finishes what is in flight and stops."""
    vggish = AudioEmbedder("random", seed=5, runtime="openvino", cache_dir=tmp_path)
    x = np.random.default_rng(3).standard_normal((13, 46, 64, 1)).astype(np.float32)
    net = runtime.CompiledNetwork(vggish.xml, "float32", hint="THROUGHPUT", requests=2)
    calls = [x[:4], x[4:9], x[9:10], x[10:13]]
    one_at_a_time = [net(c) for c in calls]
    streamed = list(net.stream(iter(calls)))
    assert [len(s) for s in streamed] == [4, 5, 1, 3]
    for got, want in zip(streamed, one_at_a_time, strict=True):
        np.testing.assert_array_equal(got, want)
    pulled = []

    def source():
        for c in calls:
            pulled.append(len(c))
            yield c

    outputs = net.stream(source())
    first = next(outputs)
    read = len(pulled)
    outputs.close()
    np.testing.assert_array_equal(first, one_at_a_time[0])
    assert len(pulled) == read < len(calls)  # handed on before the input ran out; nothing read after closing
    np.testing.assert_array_equal(net(x[:4]), one_at_a_time[0])  # the lock was released


def test_inference_warns_once_when_int8_features_drift_for_a_float32_model(tiny_model, tmp_path, caplog):
    from soccer_highlights import synthetic
    from soccer_highlights.commands import inference

    game = synthetic.write_game(synthetic.make_game(0, half_minutes=1), tmp_path / "game")
    record = {**int8_record(2 * DRIFT_WARN), "tokens_per_second": 2.0}
    (game / "extraction.json").write_text(json.dumps(record))
    with caplog.at_level(logging.WARNING):
        assert inference.main(["--model", str(tiny_model), "--game_dir", str(game), "--out", str(tmp_path / "o")]) == 0
    drift = [r.getMessage() for r in caplog.records if "drift" in r.getMessage()]
    assert len(drift) == 1 and "int8 features drift 0.100" in drift[0] and "trained on float32" in drift[0]


@pytest.mark.slow
def test_video_to_reel_on_tensorflow_and_openvino_give_the_same_spans(tiny_model, clip, tmp_path):
    from soccer_highlights.commands import inference

    spans = {}
    for name in ("tensorflow", "openvino"):
        out = tmp_path / name
        argv = ["--model", str(tiny_model), "--video", str(clip), "--out", str(out), "--weights", "random"]
        assert inference.main([*argv, "--feature_runtime", name, "--threshold", "0", "--no_reel", "--quiet"]) == 0
        spans[name] = json.loads((out / "spans.json").read_text())["spans"]
    assert spans["tensorflow"] and spans["openvino"] == spans["tensorflow"]  # scored spans, one per class


def _has_gpu() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_logical_devices("GPU"))


@pytest.mark.skipif(not _has_gpu(), reason="the prepared GPU check needs a GPU")
def test_on_a_gpu_the_default_runtime_is_tensorflow_and_agrees_with_openvino(clip, tmp_path):
    folders = {}
    for name in ("default", "openvino"):
        folders[name] = tmp_path / name
        args = ["--video", str(clip), "--out", str(folders[name]), "--weights", "random", "--quiet", "--save_raw"]
        assert main([*args, *(["--feature_runtime", name] if name != "default" else [])]) == 0
    assert json.loads((folders["default"] / "extraction.json").read_text())["runtime"] == "tensorflow"
    gpu, cpu = (np.load(folders[n] / "1_ResNET_TF2.npy") for n in folders)
    assert relative_l2(cpu, gpu).max() <= 1e-2  # TensorFloat-32 convolutions on the GPU: close, not equal
