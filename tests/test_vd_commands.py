"""V&D's README commands (training, then spotting) run as printed there (only --VLAD_k and --max_epoch made
small) on a generated tree in V&D's layout: Labels.json with v1 names, `<half>_ResNET_PCA512.npy`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from soccer_highlights import synthetic
from soccer_highlights.commands import spot as csb
from soccer_highlights.commands import train as cmb
from soccer_highlights.common.errors import UserError

V1_NAMES = {
    "Yellow card": "y-card",
    "Red card": "r-card",
    "Yellow->red card": "yr-card",
    "Substitution": "substitution-in",
    "Goal": "soccer-ball",
}


def _to_vd_layout(root):
    """SoccerNet v1 as V&D read it: `Labels.json` with v1 label names and `gameTime` only, `<half>_ResNET_PCA512.npy`."""
    for labels in root.rglob("Labels-v2.json"):
        anns = json.loads(labels.read_text())["annotations"]
        v1 = [{"gameTime": a["gameTime"], "label": V1_NAMES[a["label"]]} for a in anns if a["label"] in V1_NAMES]
        (labels.parent / "Labels.json").write_text(json.dumps({"annotations": v1}))
        labels.unlink()
        for half in (1, 2):
            next(labels.parent.glob(f"{half}_ResNET*PCA512.npy")).rename(labels.parent / f"{half}_ResNET_PCA512.npy")


def _lists(root):
    return {s: str(next(root.glob(f"listgame_{s}_*.npy"))) for s in ("Train", "Valid", "Test")}


def _vd_train_command(lists):
    """V&D's README training command, verbatim but for --VLAD_k (512 -> 4) and --max_epoch (200 -> 2)."""
    return (
        f"--architecture AudioVideoArchi5 --training {lists['Train']} --validation {lists['Valid']} "
        f"--testing {lists['Test']} --featuresVideo ResNET --featuresAudio VGGish --PCA --network VLAD --tflog Model "
        "--VLAD_k 4 --WindowSize 20 --outputPrefix vlad-archi5-20sec  --formatdataset 1 --max_epoch 2"
    ).split()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """V&D's training command run in a fresh folder on a generated tree in V&D's layout."""
    work = tmp_path_factory.mktemp("vd")
    synthetic.generate_dataset(work / "data", n_games=5, half_minutes=3, event_rate=8, progress=False)
    _to_vd_layout(work / "data")
    lists = _lists(work / "data")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)
        assert cmb.main(_vd_train_command(lists)) == 0
    return work, lists


@pytest.mark.slow
def test_vd_training_command_on_vd_data_trains_vds_classes_with_unit_weights(trained):
    work, _ = trained
    summary = json.loads((work / "Model" / "vlad-archi5-20sec_summary.json").read_text())
    assert summary["classes"] == ["background", "card", "subs", "goal"]
    assert summary["class_weights"] == [1.0, 1.0, 1.0, 1.0]
    assert summary["architecture"]["class_map"]["name"] == "v1"
    assert summary["architecture"]["training"]["class_weights"] == "unit"
    train_labels = [np.load(p) for p in (work / "Windows_size_20_sec").rglob("labels.npy") if "Train" in str(p)]
    assert len(train_labels) == 1 and (train_labels[0][:, 1:].sum(axis=0) > 0).all()  # positives in every class


@pytest.mark.slow
def test_vd_predict_then_archi9prediction_ensembles_by_product(trained, monkeypatch, tmp_path):
    work, lists = trained
    monkeypatch.chdir(work)
    config = tmp_path / "props.txt"
    config.write_text("logits_video\npredictions_video\n")
    base = [
        "--architecture",
        "AudioVideoArchi5",
        "--testing",
        lists["Test"],
        "--tflog",
        "Model",
        "--WindowSize",
        "20",
        "--PCA",
    ]
    assert cmb.main([*base, "--outputPrefix", "vlad-archi5-20sec", "--mode", "predict", "--config", str(config)]) == 0
    npz = work / "Model" / f"vlad-archi5-20sec_predictions_{Path(lists['Test']).stem}.npz"
    with np.load(npz) as f:
        assert set(f.files) >= {"logits", "probabilities"}
        logits = f["logits"]
    argv = ["--mode", "other", "--architecture", "Archi9Prediction", "--ensemble", str(npz), str(npz)]
    # V&D's Archi9Prediction combines Archi1's (video) and Archi2's (audio) predictions (networks.py): not Archi5's
    with pytest.raises(UserError, match=r"Archi9Prediction combines V&D's Archi1 \(video\) and Archi2 \(audio\)"):
        cmb.main([*argv, "--tflog", "Model", "--outputPrefix", "e9"])
    argv = ["--mode", "ensemble", "--ensemble_method", "product", "--ensemble", str(npz), str(npz)]
    assert cmb.main([*argv, "--tflog", "Model", "--outputPrefix", "e9"]) == 0
    with np.load(work / "Model" / "e9_ensemble_product.npz") as f:
        np.testing.assert_allclose(f["scores"], (1 / (1 + np.exp(-logits))) ** 2, rtol=1e-6)


def _spotting(lists, *extra):
    return [
        "--testing",
        lists["Test"],
        "--featuresVideo",
        "ResNET",
        "--featuresAudio",
        "VGGish",
        "--architecture",
        "AudioVideoArchi5",
        "--network",
        "VLAD",
        "--VLAD_k",
        "4",
        "--WindowSize",
        "20",
        "--PCA",
        "--output",
        "VLAD-Archi5-20sec-Spotting",
        *extra,
    ]


@pytest.mark.slow
def test_vd_spotting_command_finds_the_model_and_writes_per_half_scores(trained, monkeypatch, capsys):
    work, lists = trained
    monkeypatch.chdir(work)
    assert csb.main(_spotting(lists)) == 0
    assert "model: Model/vlad-archi5-20sec_best.keras" in capsys.readouterr().out
    out = work / "VLAD-Archi5-20sec-Spotting"
    game = next(out.rglob("results_spotting.json")).parent
    features = work / "data" / game.relative_to(out)
    for half in (1, 2):
        scores = np.load(game / f"VLAD-Archi5-20sec-Spotting_Half_{half}.npy")
        tokens = len(np.load(features / f"{half}_VGGish.npy"))
        assert scores.shape == (tokens // 2, 4) and scores.dtype == np.float32  # one row per whole second (V&D)
        assert ((scores >= 0) & (scores <= 1)).all()
    assert json.loads((game / "results_spotting.json").read_text())["predictions"]


@pytest.mark.slow
def test_vd_flags_must_agree_with_the_model_file(trained, monkeypatch):
    work, lists = trained
    monkeypatch.chdir(work)
    model = "Model/vlad-archi5-20sec_best.keras"
    with pytest.raises(UserError, match=r"the flags ask for vlad_k 8 \(model: 4\)"):
        csb.main(_spotting(lists, "--model", model, "--VLAD_k", "8"))
    with pytest.raises(UserError, match="no trained model .* architecture gmu"):
        csb.main([*_spotting(lists), "--architecture", "GMU"])


@pytest.mark.parametrize(
    ("architecture", "method"),
    [
        ("Archi3Prediction", "mean_logits"),
        ("Archi9Prediction", "product"),
        ("Archi12Prediction", "mean_logits"),
        ("Archi18Prediction", "product"),
        ("AudioVideoArchi9", "product"),  # the spelling earlier versions documented: an alias
        (None, "mean_logits"),
    ],
)
def test_mode_other_is_vds_ensemble(architecture, method):
    argv = ["--mode", "other", "--ensemble", "a.npz", "b.npz"] + (
        ["--architecture", architecture] if architecture else []
    )
    cfg = cmb._config(cmb.build_parser().parse_args(argv))
    assert (cfg.mode, cfg.ensemble_method) == ("ensemble", method)


def test_an_explicit_ensemble_method_that_contradicts_the_architecture_is_refused():
    argv = [
        "--mode",
        "other",
        "--ensemble",
        "a.npz",
        "b.npz",
        "--architecture",
        "Archi9Prediction",
        "--ensemble_method",
        "mean_logits",
    ]
    with pytest.raises(UserError, match="is the product ensemble, not --ensemble_method mean_logits"):
        cmb._config(cmb.build_parser().parse_args(argv))
