"""The model file carries its class map and feature recipe: a custom map end to end (train -> spot -> evaluate
with no --class_map), overrides checked for agreement, recipe and token-rate mismatches, older files."""

from __future__ import annotations

import json
import logging
import zipfile
from pathlib import Path

import pytest

from soccer_highlights import synthetic
from soccer_highlights.commands import evaluate, inference
from soccer_highlights.commands import spot as csb
from soccer_highlights.commands import train as cmb
from soccer_highlights.common.errors import UserError
from soccer_highlights.common.modelfile import read_spec
from tests.argv import train_argv

CUSTOM = {"name": "mine", "labels": {"score": ["Goal", "Shots on target"], "booking": ["Yellow card", "Red card"]}}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny model trained with a custom class map on games whose extraction.json records an "rgb" recipe."""
    root = tmp_path_factory.mktemp("syn")
    data = synthetic.generate_dataset(
        root, n_games=3, half_minutes=1.0, seed=2, splits=(1, 1, 1), event_rate=8.0, progress=False
    )
    for labels in root.rglob("Labels-v2.json"):
        (labels.parent / "extraction.json").write_text(
            json.dumps({"frames_per_second": 2, "recipe": {"video": "rgb", "audio": "channel_mean"}})
        )
    cmap = root / "mine.json"
    cmap.write_text(json.dumps(CUSTOM))
    tflog = root / "Model"
    argv = train_argv(data.lists, tflog, max_epoch=1, class_map=cmap, outputPrefix="m")
    assert cmb.main(argv) == 0
    return data, tflog / "m_best.keras", cmap


def test_model_records_class_map_and_recipe(trained):
    _, model, _ = trained
    spec = read_spec(model)
    assert spec.class_names == ("background", "score", "booking")
    assert spec.class_map["labels"] == CUSTOM["labels"]
    assert spec.feature_recipe == {"video": "rgb", "audio": "channel_mean"}


def test_custom_map_spot_and_evaluate_without_class_map_flag(trained, tmp_path, capsys):
    data, model, _ = trained
    test_list = data.lists["test"]
    out = tmp_path / "spotted"
    assert csb.main(["--testing", str(test_list), "--model", str(model), "--output", str(out), "--quiet"]) == 0
    predictions = [p for f in out.rglob("results_spotting.json") for p in json.loads(f.read_text())["predictions"]]
    assert predictions and {p["label"] for p in predictions} <= {"Goal", "Yellow card"}  # SoccerNet labels
    capsys.readouterr()
    assert (
        evaluate.main(["--labels", str(test_list.parent), "--predictions", str(out), "--game_list", str(test_list)])
        == 0
    )
    table = capsys.readouterr().out
    assert "\nscore " in table and "\nbooking " in table and "kick" not in table
    assert (
        evaluate.main(
            [
                "--labels",
                str(test_list.parent),
                "--predictions",
                str(out),
                "--game_list",
                str(test_list),
                "--model",
                str(model),
            ]
        )
        == 0
    )
    with pytest.raises(UserError, match="disagrees with the class map 'mine'"):
        evaluate.main(
            [
                "--labels",
                str(test_list.parent),
                "--predictions",
                str(out),
                "--game_list",
                str(test_list),
                "--class_map",
                "highlight",
            ]
        )


def test_inference_keeps_ground_truth_for_a_custom_map(trained, tmp_path, capsys):
    data, model, _ = trained
    game = next(data.root.rglob("Labels-v2.json")).parent
    assert (
        inference.main(
            [
                "--model",
                str(model),
                "--game_dir",
                str(game),
                "--out",
                str(tmp_path / "o"),
                "--threshold",
                "0.05",
                "--quiet",
            ]
        )
        == 0
    )
    assert "true events covered" in capsys.readouterr().out
    labels = {p["label"] for p in json.loads((tmp_path / "o" / "results_spotting.json").read_text())["predictions"]}
    assert labels <= {"Goal", "Yellow card"}


def test_class_map_flag_must_agree_with_the_model(trained, tmp_path):
    data, model, cmap = trained
    argv = ["--testing", str(data.lists["test"]), "--model", str(model), "--output", str(tmp_path / "o"), "--quiet"]
    assert csb.main([*argv, "--class_map", str(cmap)]) == 0
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"labels": {"score": ["Goal"], "booking": ["Yellow card", "Red card"]}}))
    with pytest.raises(UserError, match="otherwise than the map 'mine'"):
        csb.main([*argv, "--class_map", str(other)])
    with pytest.raises(UserError, match="differ from those of"):
        csb.main([*argv, "--class_map", "highlight"])


def _copy_games(data, root: Path, record: dict) -> Path:
    """The test list's games copied under `root` with another extraction.json; returns the copied list."""
    import shutil

    import numpy as np

    dest = root / "copy"
    games = [data.lists["test"].parent / g for g in np.load(data.lists["test"])]
    for game in games:
        shutil.copytree(game, dest / game.relative_to(data.lists["test"].parent))
        (dest / game.relative_to(data.lists["test"].parent) / "extraction.json").write_text(json.dumps(record))
    shutil.copy(data.lists["test"], dest / data.lists["test"].name)
    return dest / data.lists["test"].name


def test_recipe_mismatch_warns_once_and_token_rate_mismatch_fails(trained, tmp_path, caplog):
    data, model, _ = trained
    legacy = _copy_games(data, tmp_path / "legacy", {"frames_per_second": 2})  # old record: rgb + ffmpeg_downmix
    with caplog.at_level(logging.WARNING):
        assert (
            csb.main(["--testing", str(legacy), "--model", str(model), "--output", str(tmp_path / "o"), "--quiet"]) == 0
        )
    warnings = [r.getMessage() for r in caplog.records if "another recipe" in r.getMessage()]
    assert len(warnings) == 1 and "audio 'ffmpeg_downmix' (model trained on 'channel_mean')" in warnings[0]
    fast = _copy_games(data, tmp_path / "fast", {"frames_per_second": 5})
    with pytest.raises(UserError, match="features are 5 tokens/s but the model expects 2"):
        csb.main(["--testing", str(fast), "--model", str(model), "--output", str(tmp_path / "o2"), "--quiet"])


def test_older_model_files_without_the_fields_still_load(trained, tmp_path):
    from soccer_highlights import archis

    _, model, _ = trained
    old = tmp_path / "old.keras"
    with zipfile.ZipFile(model) as src, zipfile.ZipFile(old, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "config.json":
                config = json.loads(data)
                for key in ("class_map", "feature_recipe"):
                    del config["config"]["spec"][key]
                data = json.dumps(config).encode()
            dst.writestr(item, data)
    spec = archis.model_info(archis.load_model(old))
    assert spec.class_map is None and spec.feature_recipe is None
    assert spec.class_names == ("background", "score", "booking")
