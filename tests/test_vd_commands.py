"""V&D's README commands (training, then spotting) run as printed there, with paths and sizes made small."""

from __future__ import annotations

import json

import numpy as np
import pytest

import ClassificationMinuteBased as cmb
import ClassificationSecondBased as csb
import synthetic
from common.errors import UserError


def _lists(root):
    return {s: str(next(root.glob(f"listgame_{s}_*.npy"))) for s in ("Train", "Valid", "Test")}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """V&D's training command (VLAD_k 512 -> 4, WindowSize 20 -> 4, two epochs), run in a fresh folder."""
    work = tmp_path_factory.mktemp("vd")
    synthetic.generate_dataset(work / "data", n_games=5, half_minutes=2, progress=False)
    lists = _lists(work / "data")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)
        assert (
            cmb.main(
                [
                    "--architecture",
                    "AudioVideoArchi5",
                    "--training",
                    lists["Train"],
                    "--validation",
                    lists["Valid"],
                    "--testing",
                    lists["Test"],
                    "--featuresVideo",
                    "ResNET",
                    "--featuresAudio",
                    "VGGish",
                    "--PCA",
                    "--network",
                    "VLAD",
                    "--tflog",
                    "Model",
                    "--VLAD_k",
                    "4",
                    "--WindowSize",
                    "4",
                    "--outputPrefix",
                    "vlad-archi5-20sec",
                    "--formatdataset",
                    "1",
                    "--max_epoch",
                    "2",
                ]
            )
            == 0
        )
    return work, lists


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
        "4",
        "--PCA",
        "--output",
        "VLAD-Archi5-20sec-Spotting",
        "--quiet",
        *extra,
    ]


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
        assert scores.shape == ((tokens + 1) // 2, 5) and scores.dtype == np.float32  # one row per second
        assert ((scores >= 0) & (scores <= 1)).all()
    assert json.loads((game / "results_spotting.json").read_text())["predictions"]


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
    [("AudioVideoArchi3", "mean_logits"), ("AudioVideoArchi9", "product"), (None, "mean_logits")],
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
        "AudioVideoArchi9",
        "--ensemble_method",
        "mean_logits",
    ]
    with pytest.raises(UserError, match="is the product ensemble, not --ensemble_method mean_logits"):
        cmb._config(cmb.build_parser().parse_args(argv))
