"""ClassificationSecondBased.py: a test list -> results_spotting.json tree in the SoccerNet layout + average-mAP."""

from __future__ import annotations

import json

import pytest

from soccer_highlights import synthetic
from soccer_highlights.commands import spot as csb
from soccer_highlights.common.errors import UserError


def test_spotting_tree_and_average_map(tmp_path, capsys, tiny_model):
    synthetic.generate_dataset(tmp_path / "data", n_games=3, half_minutes=1, progress=False)
    test_list = next((tmp_path / "data").glob("listgame_Test_*.npy"))
    model = tiny_model
    out = tmp_path / "outputs"
    assert csb.main(["--testing", str(test_list), "--model", str(model), "--output", str(out), "--quiet"]) == 0
    files = sorted(out.rglob("results_spotting.json"))
    assert len(files) == 1 and files[0].parent.relative_to(out).parts[0] == "synthetic_league"
    result = json.loads(files[0].read_text())
    assert result["UrlLocal"] == str(files[0].parent.relative_to(out))
    assert {p["half"] for p in result["predictions"]} == {"1", "2"}
    report = json.loads((out / "average_mAP.json").read_text())
    assert set(report) == {"loose", "tight"} and 0 <= report["loose"]["a_mAP"] <= 1
    assert "average-mAP loose" in capsys.readouterr().out


@pytest.mark.slow
def test_a_users_file_in_the_spotting_tree_is_never_replaced(tmp_path, tiny_model):
    """issue 30.1: a re-run replaces its own files as it wrote them; a file the user edited refuses the run before
    any work, and --keep_old keeps it as results_spotting.old-1.json."""
    synthetic.generate_dataset(tmp_path / "data", n_games=3, half_minutes=1, progress=False)
    test_list = next((tmp_path / "data").glob("listgame_Test_*.npy"))
    out = tmp_path / "outputs"
    args = ["--testing", str(test_list), "--model", str(tiny_model), "--output", str(out), "--quiet"]
    assert csb.main(args) == 0
    assert csb.main(args) == 0  # its own files, as it wrote them: replaced
    files = sorted(out.rglob("results_spotting.json"))
    files[0].write_text("the user's edits")
    with pytest.raises(UserError, match="results_spotting.json was not written by this project"):
        csb.main(args)
    assert files[0].read_text() == "the user's edits"
    assert csb.main([*args, "--keep_old"]) == 0
    assert (files[0].parent / "results_spotting.old-1.json").read_text() == "the user's edits"


def test_classes_without_a_class_map_are_refused(tmp_path):
    from soccer_highlights import archis

    synthetic.generate_dataset(tmp_path / "data", n_games=3, half_minutes=1, progress=False)
    model = tmp_path / "m.keras"
    archis.build_model("concat", vlad_k=4, window_seconds=4, class_names=("background", "a", "b")).save(model)
    with pytest.raises(UserError, match="records no class map"):
        csb.main(
            [
                "--testing",
                str(next((tmp_path / "data").glob("listgame_Test_*.npy"))),
                "--model",
                str(model),
                "--output",
                str(tmp_path / "o"),
                "--quiet",
            ]
        )


def test_shards_spot_disjoint_games_and_evaluate_as_one_run(tmp_path, capsys, monkeypatch, tiny_model):
    from soccer_highlights.commands import evaluate

    data = synthetic.generate_dataset(tmp_path / "data", n_games=3, half_minutes=1, splits=(1, 0, 2), progress=False)
    test_list = str(data.lists["test"])
    args = ["--testing", test_list, "--model", str(tiny_model), "--quiet"]
    assert csb.main([*args, "--output", str(tmp_path / "one")]) == 0
    one = json.loads((tmp_path / "one" / "average_mAP.json").read_text())["loose"]["a_mAP"]

    shards = tmp_path / "shards"
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")  # an array task of --array=0-1: shard 1 of 2
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "2")
    assert csb.main([*args, "--output", str(shards)]) == 0
    assert len(list(shards.rglob("results_spotting.json"))) == 1
    assert not (shards / "average_mAP.json").exists()
    assert "shard 1/2: average-mAP skipped" in capsys.readouterr().out
    assert csb.main([*args, "--output", str(shards), "--shard_index", "0"]) == 0  # the flag wins
    assert len(list(shards.rglob("results_spotting.json"))) == 2

    report = tmp_path / "eval.json"
    labels = str(data.lists["test"].parent)
    assert (
        evaluate.main(["--labels", labels, "--predictions", str(shards), "--list", test_list, "--json", str(report)])
        == 0
    )
    assert json.loads(report.read_text())["a_mAP"] == pytest.approx(one)
