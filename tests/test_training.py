"""Training end to end on a tiny generated dataset: model, TensorBoard events, summary, predict, ensemble,
resume after SIGKILL, and CLI errors. Tiny sizes: 2-minute halves, 10 s windows, VLAD_k 4."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from soccer_highlights import synthetic
from soccer_highlights.commands import train as cmb
from soccer_highlights.common.errors import UserError
from tests.argv import train_argv

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn")
    return synthetic.generate_dataset(
        root, n_games=4, half_minutes=2.0, seed=1, splits=(2, 1, 1), event_rate=3.0, progress=False
    )


def args_for(data, tflog, *extra, architecture="concat"):
    """The tiny run with V&D's learning rate, the cache built only where `extra` says so."""
    return train_argv(
        data.lists, tflog, *extra, architecture=architecture, class_map="highlight", LR=0.001, formatdataset=None
    )


def read_events(folder):
    import tensorflow as tf

    tags = set()
    for f in Path(folder).glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(f)):
            tags |= {(v.tag, v.metadata.plugin_data.plugin_name) for v in event.summary.value}
    return tags


@pytest.mark.slow
def test_two_epochs_then_predict_and_ensemble(data, tmp_path):
    tflog = tmp_path / "Model"
    assert cmb.main(args_for(data, tflog, "--max_epoch", "2", "--formatdataset", "1", "--outputPrefix", "t")) == 0
    summary = json.loads((tflog / "t_summary.json").read_text())
    assert summary["classes"] == ["background", "kick", "subs", "card", "goal"]
    assert summary["class_weights"] == [1.0] * 5  # V&D's unit pos_weight for its architecture
    assert summary["best_epoch"] in (1, 2) and summary["epochs"] == 2 and summary["stopped"] == "max_epoch"
    for split in ("valid", "test"):
        assert set(summary[split]["AP"]) == set(summary["classes"])
        assert summary[split]["mAP"] is None or 0 <= summary[split]["mAP"] <= 1
    assert np.array(summary["test"]["confusion_matrix"]).shape == (5, 5)
    assert summary["architecture"]["feature_names"] == {"video": "ResNET_TF2_PCA512", "audio": "VGGish"}

    import keras

    from soccer_highlights import archis

    archis.register_layers()  # keras.models.load_model reads our layers

    model = keras.models.load_model(tflog / "t_best.keras")
    x = {m: np.zeros((3, 20, 512), np.float32) for m in ("video", "audio")}
    assert tuple(model(x).shape) == (3, 5)
    for split in ("training", "validation", "testing"):
        tags = read_events(tflog / f"t_{split}")
        assert {
            ("loss", "scalars"),
            ("AP/0_background", "scalars"),
            ("accuracy", "scalars"),
            ("confusion_matrix", "images"),
        } <= tags, split

    # predict mode reuses the cache (formatdataset 0) and writes per-window logits
    assert cmb.main(args_for(data, tflog, "--mode", "predict", "--outputPrefix", "t")) == 0
    pred = tflog / f"t_predictions_{data.lists['test'].stem}.npz"
    with np.load(pred) as f:
        assert f["logits"].shape == f["labels"].shape and f["logits"].shape[1] == 5
        logits = f["logits"]
    # ensemble of the model with itself: mean of logits gives back its logits' mAP
    assert (
        cmb.main(
            [
                "--mode",
                "ensemble",
                "--ensemble",
                str(pred),
                str(pred),
                "--tflog",
                str(tflog),
                "--outputPrefix",
                "t",
                "--quiet",
            ]
        )
        == 0
    )
    result = json.loads((tflog / "t_ensemble_mean_logits.json").read_text())
    assert result["ensemble"]["mAP"] == result["A"]["mAP"]
    with np.load(tflog / "t_ensemble_mean_logits.npz") as f:
        np.testing.assert_allclose(f["scores"], logits)


@pytest.mark.slow
def test_resume_after_sigkill(data, tmp_path):
    tflog = tmp_path / "Model"
    argv = args_for(data, tflog, "--max_epoch", "4", "--formatdataset", "1", "--outputPrefix", "r")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.Popen(
        [sys.executable, "ClassificationMinuteBased.py", *argv],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    state = tflog / "r_resume" / "state.json"
    deadline = time.time() + 120
    try:
        while not state.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert state.exists(), "the training subprocess never checkpointed"
    done = json.loads(state.read_text())["schedule"]["epoch"]
    assert done < 4
    resumed = [a if a != "1" or argv[i - 1] != "--formatdataset" else "0" for i, a in enumerate(argv)]
    assert cmb.main([*resumed, "--resume"]) == 0
    summary = json.loads((tflog / "r_summary.json").read_text())
    assert [h["epoch"] for h in summary["history"]] == [1, 2, 3, 4] and summary["epochs"] == 4
    assert (tflog / "r_best.keras").is_file()
    kept = sorted(p.name.split("_")[0] for p in (tflog / "r_resume").iterdir())
    assert kept == ["best", "best", "epoch", "epoch", "state.json"]

    # the same run uninterrupted: bit-identical weights, optimizer and dropout-generator states, and history
    prefix = resumed.index("--outputPrefix") + 1
    assert cmb.main([*resumed[:prefix], "u", *resumed[prefix + 1 :]]) == 0
    for name in ("epoch_0004.weights.h5", "epoch_0004.state.npz"):
        a, b = _arrays(tflog / "r_resume" / name), _arrays(tflog / "u_resume" / name)
        assert a.keys() == b.keys() and a, name
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"{name} {key} (resumed after epoch {done})")
    timing = ("train_seconds", "input_wait_seconds")
    uninterrupted = json.loads((tflog / "u_summary.json").read_text())["history"]
    assert [{k: v for k, v in h.items() if k not in timing} for h in summary["history"]] == [
        {k: v for k, v in h.items() if k not in timing} for h in uninterrupted
    ]
    with pytest.raises(UserError, match="other settings.*VLAD_k"):
        cmb.main([*resumed, "--resume", "--VLAD_k", "8"])


def _arrays(path):
    """Every array of a Keras weights file (.h5) or an .npz, by name."""
    if path.suffix == ".npz":
        with np.load(path) as f:
            return {k: f[k] for k in f.files}
    import h5py

    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def test_unknown_architecture_in_process(data, tmp_path):
    with pytest.raises(UserError, match="unknown architecture 'Archi99'.*concat"):
        cmb.main(args_for(data, tmp_path, "--formatdataset", "1", "--max_epoch", "1", architecture="Archi99"))


@pytest.mark.parametrize("case", ["missing_list", "unknown_architecture"])
def test_cli_exit_code_and_one_line_error(data, tmp_path, case):
    argv = args_for(
        data,
        tmp_path,
        "--formatdataset",
        "1",
        "--max_epoch",
        "1",
        architecture="Archi99" if case == "unknown_architecture" else "concat",
    )
    if case == "missing_list":
        argv[argv.index("--training") + 1] = str(tmp_path / "nope.npy")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(
        [sys.executable, "ClassificationMinuteBased.py", *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 2
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr
    assert ("nope.npy: game list not found" if case == "missing_list" else "unknown architecture") in errors[0]
