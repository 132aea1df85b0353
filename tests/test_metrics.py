"""average-mAP equals the official SoccerNet evaluator on generated labels and predictions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from SoccerNet.Evaluation.ActionSpotting import evaluate as official_evaluate
from SoccerNet.Evaluation.utils import EVENT_DICTIONARY_V2

from soccer_highlights import dataset
from soccer_highlights.common.errors import UserError
from soccer_highlights.evaluation.metrics import HalfEvents, average_mAP, evaluate_games, match

HIGHLIGHT_ONE_NAME = {"Corner": 0, "Substitution": 1, "Yellow card": 2, "Goal": 3}
HIGHLIGHT_MANY = {
    "Penalty": 0,
    "Corner": 0,
    "Direct free-kick": 0,
    "Indirect free-kick": 0,
    "Substitution": 1,
    "Yellow card": 2,
    "Red card": 2,
    "Yellow->red card": 2,
    "Goal": 3,
    "Shots on target": 3,
}


def _game_time(half: int, ms: int) -> str:
    s = ms // 1000
    return f"{half} - {s // 60:02d}:{s % 60:02d}"


def make_tree(
    tmp: Path, labels: list[str], *, n_games: int = 3, seed: int = 0, skip_label: str | None = None, empty_game: int = 1
) -> tuple[Path, Path, list[str]]:
    """Labels and predictions for a few games: events in both halves, hidden events, events without
    `position`, two events in one frame, near and far predictions, duplicates in one bin, false alarms,
    string and number confidences, one class never annotated, one game with an empty prediction file."""
    rng = np.random.default_rng(seed)
    label_root, pred_root = tmp / "labels", tmp / "preds"
    games = []
    annotated = [x for x in labels if x != skip_label]
    for g in range(n_games):
        game = f"league/2020-2021/game {g}"
        games.append(game)
        anns, preds = [], []
        for half in (1, 2):
            for _ in range(25):
                label = str(rng.choice(annotated))
                ms = int(rng.integers(0, 20 * 60_000))
                ann = {
                    "gameTime": _game_time(half, ms),
                    "label": label,
                    "team": "home",
                    "visibility": "not shown" if rng.random() < 0.25 else "visible",
                }
                if rng.random() < 0.85:
                    ann["position"] = str(ms)
                anns.append(ann)
                if rng.random() < 0.2:  # a second event in the same frame
                    anns.append(dict(ann, visibility="visible"))
                for _ in range(int(rng.integers(0, 3))):  # predictions around the event, up to 40 s off
                    off = int(rng.normal(0, 8000))
                    preds.append((half, max(0, ms + off), label, float(rng.random())))
            for _ in range(30):  # false alarms, any label (also the never-annotated one)
                preds.append((half, int(rng.integers(0, 20 * 60_000)), str(rng.choice(labels)), float(rng.random())))
            # two predictions in one bin: the later one wins
            preds += [(half, 61_200, labels[0], 0.9), (half, 61_400, labels[0], 0.2)]
        if g == empty_game:
            preds = []
        (label_root / game).mkdir(parents=True)
        (label_root / game / "Labels-v2.json").write_text(json.dumps({"annotations": anns}))
        (pred_root / game).mkdir(parents=True)
        rows = [
            {
                "gameTime": _game_time(h, ms),
                "label": lab,
                "position": str(ms),
                "half": str(h),
                "confidence": str(c) if i % 2 else c,
            }
            for i, (h, ms, lab, c) in enumerate(preds)
        ]
        (pred_root / game / "results_spotting.json").write_text(json.dumps({"UrlLocal": game, "predictions": rows}))
    return label_root, pred_root, games


def _official(label_root: Path, pred_root: Path, event_dictionary: dict, metric: str) -> dict:
    return official_evaluate(
        str(label_root),
        str(pred_root),
        prediction_file="results_spotting.json",
        label_files="Labels-v2.json",
        dataset=None,
        version=2,
        metric=metric,
        EVENT_DICTIONARY=event_dictionary,
    )


def _assert_same(ours, theirs: dict, n_classes: int | None = None) -> None:
    n = n_classes or len(ours.a_mAP_per_class)
    for key in ("a_mAP_per_class", "a_mAP_per_class_visible", "a_mAP_per_class_unshown"):
        np.testing.assert_allclose(getattr(ours, key), np.asarray(theirs[key])[:n], rtol=0, atol=1e-12, err_msg=key)
    if n_classes is None:
        for key in ("a_mAP", "a_mAP_visible", "a_mAP_unshown"):
            assert getattr(ours, key) == pytest.approx(theirs[key], abs=1e-12), key


@pytest.mark.parametrize("metric", ["loose", "tight"])
def test_v2_equals_official(tmp_path, metric):
    v2 = dataset.load_class_map("v2")
    assert [v2.label_to_index[k] - 1 for k in EVENT_DICTIONARY_V2] == list(EVENT_DICTIONARY_V2.values())
    label_root, pred_root, games = make_tree(
        tmp_path, list(EVENT_DICTIONARY_V2), n_games=2, skip_label="Yellow->red card"
    )
    ours = evaluate_games(label_root, pred_root, games, v2.classes, v2.label_to_index, metric=metric)
    theirs = _official(label_root, pred_root, EVENT_DICTIONARY_V2, metric)
    _assert_same(ours, theirs)
    assert ours.n_events[v2.label_to_index["Yellow->red card"] - 1] == 0
    assert 0 < ours.a_mAP < 1 and ours.n_games == 2


def test_custom_map_equals_official(tmp_path):
    """highlight map on files that use one label name per class (plus background labels)."""
    cmap = dataset.load_class_map("highlight")
    names = [*HIGHLIGHT_ONE_NAME, "Throw-in", "Foul"]
    label_root, pred_root, games = make_tree(tmp_path, names, n_games=3, seed=1)
    ours = evaluate_games(label_root, pred_root, games, cmap.classes, cmap.label_to_index, metric="loose")
    _assert_same(ours, _official(label_root, pred_root, HIGHLIGHT_ONE_NAME, "loose"))
    assert ours.class_names == ["kick", "subs", "card", "goal"]


def test_many_to_one_map_pools_labels_like_official(tmp_path):
    """With several names per class the official dictionary gets one column per name (extra columns empty,
    AP 0): per-class figures agree, and its mean is ours scaled by 4 / 10."""
    cmap = dataset.load_class_map("highlight")
    label_root, pred_root, games = make_tree(tmp_path, [*HIGHLIGHT_MANY, "Throw-in"], n_games=2, seed=2)
    ours = evaluate_games(label_root, pred_root, games, cmap.classes, cmap.label_to_index, metric="tight")
    theirs = _official(label_root, pred_root, HIGHLIGHT_MANY, "tight")
    _assert_same(ours, theirs, n_classes=4)
    assert ours.a_mAP * 4 / len(HIGHLIGHT_MANY) == pytest.approx(theirs["a_mAP"], abs=1e-12)


def test_perfect_and_empty_predictions():
    gt = HalfEvents(np.array([10, 50, 300]), np.array([0, 0, 1]), np.array([1.0, 1.0, -1.0]))
    perfect = HalfEvents(gt.frame, gt.cls, np.array([0.9, 0.8, 0.7]))
    nothing = HalfEvents.empty()
    both = average_mAP([gt, nothing], [perfect, nothing], ["a", "b", "never"], metric="tight")
    assert both.a_mAP_per_class == [1.0, 1.0, 0.0]  # a class without events scores 0 and counts in the mean
    assert both.a_mAP == pytest.approx(2 / 3)
    none = average_mAP([gt, nothing], [nothing, nothing], ["a", "b", "never"], metric="loose")
    assert none.a_mAP == 0.0 and none.n_predictions == [0, 0, 0]


def test_match_takes_best_unused_prediction_earliest_on_ties():
    pred = np.array([8, 10, 12, 30])
    score = np.array([0.5, 0.5, 0.9, 0.4])
    # event at 10 takes 12 (best), event at 11 takes 8 (earliest of the tied rest), 30 is out of reach (+-5)
    assert match(np.array([10, 11]), pred, score, 5).tolist() == [True, False, True, False]
    assert match(np.array([10]), pred, score, 1).tolist() == [False, True, False, False]


def test_missing_prediction_file_is_an_error_unless_allowed_then_warns_and_scores_zero(tmp_path, capsys):
    cmap = dataset.load_class_map("highlight")
    label_root, pred_root, games = make_tree(tmp_path, list(HIGHLIGHT_ONE_NAME), n_games=2, empty_game=0)
    with_empty = evaluate_games(label_root, pred_root, games, cmap.classes, cmap.label_to_index)
    (pred_root / games[0] / "results_spotting.json").unlink()
    with pytest.raises(UserError, match="1 of 2 games of the list have no predictions"):
        evaluate_games(label_root, pred_root, games, cmap.classes, cmap.label_to_index)
    missing = evaluate_games(label_root, pred_root, games, cmap.classes, cmap.label_to_index, allow_missing=True)
    assert "1 of 2 games have no results_spotting.json" in capsys.readouterr().err
    assert missing == with_empty


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "malformed JSON"),
        ('{"predictions": [{"label": "Goal", "half": "1", "position": "abc", "confidence": 0.5}]}', "prediction 0"),
        ('{"predictions": [{"label": "Goal", "half": "1", "position": "-5000", "confidence": 0.5}]}', "negative"),
        ('{"results": []}', "no 'predictions' list"),
    ],
)
def test_bad_prediction_file_is_one_line_error(tmp_path, text, message):
    cmap = dataset.load_class_map("highlight")
    label_root, pred_root, games = make_tree(tmp_path, list(HIGHLIGHT_ONE_NAME), n_games=1)
    bad = pred_root / games[0] / "results_spotting.json"
    bad.write_text(text)
    with pytest.raises(UserError, match=message) as err:
        evaluate_games(label_root, pred_root, games, cmap.classes, cmap.label_to_index)
    assert str(bad) in str(err.value) and "\n" not in str(err.value)


def test_visibility_split_at_midpoints_equals_official(tmp_path):
    """A prediction exactly on the (floored) midpoint between a visible and a hidden event belongs to the later."""
    game = tmp_path / "labels" / "l" / "s" / "g"
    game.mkdir(parents=True)
    anns = [
        {"gameTime": "1 - 00:05", "label": "Goal", "position": "5000", "visibility": "visible"},
        {"gameTime": "1 - 00:06", "label": "Goal", "position": "6500", "visibility": "not shown"},
        {"gameTime": "2 - 00:05", "label": "Goal", "position": "5000", "visibility": "visible"},
    ]
    (game / "Labels-v2.json").write_text(json.dumps({"annotations": anns}))
    preds = [
        {"label": "Goal", "half": h, "position": p, "confidence": c}
        for h, p, c in [(1, "5500", 0.8), (1, "9000", 0.6), (2, "5200", 0.7), (2, "99000", 0.3)]
    ]
    (tmp_path / "preds" / "l" / "s" / "g").mkdir(parents=True)
    (tmp_path / "preds" / "l" / "s" / "g" / "results_spotting.json").write_text(json.dumps({"predictions": preds}))
    ours = evaluate_games(
        tmp_path / "labels", tmp_path / "preds", ["l/s/g"], ["background", "goal"], {"Goal": 1}, metric="tight"
    )
    _assert_same(ours, _official(tmp_path / "labels", tmp_path / "preds", {"Goal": 0}, "tight"))
    assert ours.a_mAP_visible != ours.a_mAP_unshown


def test_evaluate_cli_table_json_plot(tmp_path, capsys):
    from soccer_highlights.commands import evaluate

    label_root, pred_root, games = make_tree(tmp_path, list(EVENT_DICTIONARY_V2), n_games=2, seed=3)
    np.save(tmp_path / "listgame_Test_2.npy", np.array(games))
    out_json, out_png = tmp_path / "out" / "scores.json", tmp_path / "out" / "map.png"
    assert (
        evaluate.main(
            [
                "--labels",
                str(label_root),
                "--predictions",
                str(pred_root),
                "--game_list",
                str(tmp_path / "listgame_Test_2.npy"),
                "--class_map",
                "v2",
                "--metric",
                "tight",
                "--out",
                str(out_json),
                "--plot",
                str(out_png),
            ]
        )
        == 0
    )
    table = capsys.readouterr().out
    saved = json.loads(out_json.read_text())
    theirs = _official(label_root, pred_root, EVENT_DICTIONARY_V2, "tight")
    assert set(theirs) <= set(saved)
    assert saved["a_mAP"] == pytest.approx(theirs["a_mAP"], abs=1e-12)
    mean = next(line for line in table.splitlines() if line.startswith("mean"))
    assert f"{saved['a_mAP'] * 100:.2f}" in mean and "Yellow->red card" in table
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in out_json.parent.iterdir()) == ["map.png", "scores.json"]  # no temp files


def test_evaluate_cli_errors_exit_2_with_one_line(tmp_path):
    import subprocess
    import sys

    label_root, pred_root, games = make_tree(tmp_path, list(HIGHLIGHT_ONE_NAME), n_games=1)
    (tmp_path / "list.txt").write_text(games[0] + "\n")
    bad = pred_root / games[0] / "results_spotting.json"
    bad.write_text('{"predictions": [')
    cmd = [
        sys.executable,
        "evaluate.py",
        "--labels",
        str(label_root),
        "--predictions",
        str(pred_root),
        "--game_list",
        str(tmp_path / "list.txt"),
        "--out",
        str(tmp_path / "s.json"),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1
    assert str(bad) in proc.stderr and "malformed JSON" in proc.stderr
    assert not (tmp_path / "s.json").exists()
    missing = subprocess.run([*cmd[:5], str(tmp_path / "nope"), *cmd[6:]], capture_output=True, text=True)
    assert missing.returncode == 2 and "--predictions folder not found" in missing.stderr
