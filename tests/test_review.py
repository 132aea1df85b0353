"""Review mode of report.html in a real headless Chromium (Selenium + chromium-driver, tests/chrome.py), its
Labels-v2.json download, the training-set command that reads it and fine-tuning with --init_model: the whole loop
from an inference output to a model that scores the reviewed match better than the one it started from."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from soccer_highlights import dataset as ds
from soccer_highlights import synthetic
from soccer_highlights.commands import inference, spot, trainset
from soccer_highlights.commands import train as train_cmd
from soccer_highlights.common.errors import UserError
from soccer_highlights.common.modelfile import read_spec
from soccer_highlights.evaluation.metrics import evaluate_games
from soccer_highlights.report.labels import Reviewed, file_digest, labels_document
from tests.chrome import Browser

SMALL = ["--PCA", "--network", "VLAD", "--VLAD_k", "4", "--WindowSize", "4", "--formatdataset", "1"]


def _train(root: Path, lists: dict[str, Path], prefix: str, *extra: str) -> Path:
    argv = [
        "--training",
        str(lists["train"]),
        "--validation",
        str(lists["valid"]),
        "--testing",
        str(lists["test"]),
        "--batch_windows",
        "8",
        "--tflog",
        str(root / "model"),
        "--outputPrefix",
        prefix,
        "--cache_dir",
        str(root / f"cache_{prefix}"),
        "--quiet",
        *extra,
    ]
    assert train_cmd.main(argv) == 0
    return root / "model" / f"{prefix}_best.keras"


def _score(model: Path, game_list: Path, root: Path, out: Path) -> float:
    """average-mAP (loose) of `model`'s spots on the games of `game_list`, against their Labels-v2.json."""
    argv = ["--testing", str(game_list), "--model", str(model), "--output", str(out), "--nms_window", "20", "--quiet"]
    assert spot.main(argv) == 0
    cmap = ds.class_map_from_json(read_spec(model).class_map, str(model))
    games = [str(g) for g in np.load(game_list)]
    return float(evaluate_games(root, out, games, cmap.classes, cmap.label_to_index).a_mAP)


@pytest.fixture(scope="module")
def reviewed_run(tmp_path_factory):
    """A model trained briefly on one generated league, and its inference output on a game of another seed."""
    root = tmp_path_factory.mktemp("review")
    data = synthetic.generate_dataset(root / "league", n_games=5, half_minutes=1.5, seed=0, progress=False)
    base = _train(
        root, data.lists, "base", "--architecture", "concat", *SMALL, "--max_epoch", "4", "--class_map", "highlight"
    )
    match = synthetic.make_game(0, seed=11, half_minutes=4, event_rate=3)  # a match of another seed, busier
    game = synthetic.write_game(match, root / "other" / "game")
    out = root / "out"
    assert inference.main(["--model", str(base), "--out", str(out), "--game_dir", str(game), "--quiet"]) == 0
    return root, base, game, out


@pytest.fixture(scope="module")
def browser():
    with Browser(width=1280, height=1000) as b:
        yield b


def _fresh(browser: Browser, page: Path) -> None:
    browser.open(page)
    browser.eval("localStorage.clear()")
    browser.reload()
    browser.clear_log()


def _true_events(game: Path, cmap: ds.ClassMap) -> list[Reviewed]:
    return [
        Reviewed(e.half, e.position_ms / 1000, cmap.classes[cmap.label_to_index[e.label]])
        for e in ds.read_labels(game)
        if e.label in cmap.label_to_index
    ]


def _state(browser: Browser) -> dict:
    return browser.eval("JSON.parse(JSON.stringify({items: rv.items, order: rv.order, cur: rv.cur}))")


@pytest.mark.slow
def test_review_in_the_browser_download_training_set_and_fine_tuning_improve_the_match(reviewed_run, browser):
    root, base, game, out = reviewed_run
    spans = json.loads((out / "spans.json").read_text())
    identity = spans["identity"]
    cmap = ds.class_map_from_json(identity["class_map"], "spans.json")
    truth = _true_events(game, cmap)
    assert truth, "the generated game should hold highlight events"
    _fresh(browser, out / "report.html")

    keys = browser.eval("document.getElementById('review-keys').textContent")  # every key is shown on the page
    for key in ("A", "R", "M", "L", "N", "J", "K", "Z", "Y", "D", "1"):
        assert f"{key}" in keys
    items = browser.eval("rv.order.map(id => byId(id)).map(it => Math.abs(it.conf - thresholdOf(it.cls)))")
    assert len(items) >= 2 and items == sorted(items)  # the least certain first
    first = browser.eval("current().id")
    browser.keys("r")  # reject the first
    assert browser.eval(f"byId({json.dumps(first)}).status") == "rejected"
    assert browser.eval("document.getElementById('review-counts').textContent").startswith("1 reviewed")

    # the next item: relabelled to the first true event's class, moved onto it (the player seeks there)
    e0, rest = truth[0], truth[1:]
    offset = browser.eval(f"halfOf({e0.half}).offset")
    second = browser.eval("current().id")
    browser.eval(f"seek({offset + e0.seconds})")
    browser.keys(str(cmap.classes.index(e0.cls)), "l", "m")
    moved = browser.eval(f"byId({json.dumps(second)})")
    assert (moved["cls"], moved["half"], moved["status"]) == (e0.cls, e0.half, "accepted")
    assert moved["t"] == pytest.approx(e0.seconds, abs=1e-6)
    browser.keys("z")  # undo the move, then redo it
    assert browser.eval(f"byId({json.dumps(second)}).t") == pytest.approx(moved["t0"])
    browser.click("#rv-redo")
    assert browser.eval(f"byId({json.dumps(second)}).t") == pytest.approx(e0.seconds, abs=1e-6)

    for e in rest:  # the events the model missed or mislabelled: added at the playhead
        browser.eval(f"seek(halfOf({e.half}).offset + {e.seconds})")
        browser.keys(str(cmap.classes.index(e.cls)), "n")
    browser.click("#rv-next")  # the player seeks to the item under review
    g = browser.eval("itemTime(current())")
    assert browser.eval("cursorAt") == pytest.approx(g)

    before = _state(browser)
    browser.reload()  # the review survives a reload
    assert _state(browser) == before
    assert browser.errors() == []

    browser.click("#rv-download")
    downloaded = browser.wait_for_download("Labels-v2.json")
    got = json.loads(downloaded.read_text())
    want = labels_document(identity, truth)
    assert got["identity"] == identity
    key = lambda a: (a["gameTime"], a["label"], a["position"])  # noqa: E731
    assert sorted(map(key, got["annotations"])) == sorted(map(key, want["annotations"]))
    assert got["review"]["left"] == browser.eval("rv.items.filter(it => it.status === 'pending').length")

    dataset = root / "reviewed"
    assert trainset.main(["--out", str(dataset), "--match", str(out), str(downloaded)]) == 0
    games = dataset / "listgame_Train_1.npy"
    lists = {"train": games, "valid": games, "test": games}
    tuned = _train(dataset, lists, "tuned", "--init_model", str(base), "--max_epoch", "12", "--formatdataset", "1")
    record = read_spec(tuned).init_model
    assert record == {**record, "file": base.name, "sha256": file_digest(base), "head": "kept"}
    before_map = _score(base, games, dataset, root / "spots_base")
    after_map = _score(tuned, games, dataset, root / "spots_tuned")
    assert after_map > before_map, (before_map, after_map)


@pytest.mark.slow  # the module's fixture trains a model
def test_labels_of_another_match_are_refused_in_one_line(reviewed_run, tmp_path, capsys):
    root, _, _, out = reviewed_run
    identity = json.loads((out / "spans.json").read_text())["identity"]
    other = {**identity, "files": [{**identity["files"][0], "sha256": "0" * 64}, *identity["files"][1:]]}
    labels = tmp_path / "Labels-v2.json"
    labels.write_text(json.dumps(labels_document(other, [Reviewed(1, 5.0, "goal")])))
    with pytest.raises(UserError, match=r"Labels-v2.json: reviewed on another match .* refused") as err:
        trainset.main(["--out", str(tmp_path / "set"), "--match", str(out), str(labels)])
    assert "\n" not in str(err.value)
    labels.write_text(json.dumps({"annotations": []}))  # a hand-written file: no identity to check
    with pytest.raises(UserError, match="no match identity"):
        trainset.main(["--out", str(tmp_path / "set"), "--match", str(out), str(labels)])


@pytest.mark.slow  # the module's fixture trains a model
def test_a_changed_feature_file_is_refused(reviewed_run, tmp_path):
    import shutil

    root, _, game, out = reviewed_run
    copy = tmp_path / "game"
    shutil.copytree(game, copy)
    spans = json.loads((out / "spans.json").read_text())
    spans["source"]["game_dir"] = str(copy)
    moved = tmp_path / "out"
    moved.mkdir()
    (moved / "spans.json").write_text(json.dumps(spans))
    labels = tmp_path / "Labels-v2.json"
    labels.write_text(json.dumps(labels_document(spans["identity"], [Reviewed(1, 5.0, "goal")])))
    arr = np.load(copy / "1_VGGish.npy")
    np.save(copy / "1_VGGish.npy", arr + 1)
    with pytest.raises(UserError, match=r"1_VGGish.npy: changed since .* refused"):
        trainset.main(["--out", str(tmp_path / "set"), "--match", str(moved), str(labels)])


def test_labels_document_writes_soccernet_times_and_the_maps_labels():
    identity = {"match": "m", "files": [], "labels": {"goal": "Goal", "kick": "Corner"}}
    doc = labels_document(identity, [Reviewed(2, 61.999, "goal", team="home"), Reviewed(1, 5.0, "kick")])
    assert doc["annotations"] == [
        {"gameTime": "1 - 00:05", "label": "Corner", "position": "5000"},
        {"gameTime": "2 - 01:01", "label": "Goal", "position": "61999", "team": "home"},
    ]
    assert [e.half for e in ds.parse_labels(doc, "doc")] == [1, 2]


@pytest.mark.slow
def test_init_weights_keeps_every_weight_or_reinitialises_a_new_class_maps_head(tmp_path):
    from soccer_highlights import archis
    from soccer_highlights.training.loop import init_weights

    start = archis.build_model("concat", vlad_k=4, window_seconds=4, seed=0)
    start.save(tmp_path / "start.keras")
    same = archis.build_model("concat", vlad_k=4, window_seconds=4, seed=1)
    assert (
        init_weights(same, tmp_path / "start.keras")
        == f"init_model {tmp_path / 'start.keras'}: every weight (same class map)"
    )
    for a, b in zip(same.get_weights(), start.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    other = archis.build_model("concat", class_names=["background", "goal", "card"], vlad_k=4, window_seconds=4, seed=1)
    fresh = other.get_layer("logits").get_weights()[0].copy()
    line = init_weights(other, tmp_path / "start.keras")
    assert "\n" not in line and "classification head (logits), re-initialised: new class map (goal, card" in line
    np.testing.assert_array_equal(other.get_layer("logits").get_weights()[0], fresh)
    np.testing.assert_array_equal(
        other.get_layer("video_pool").get_weights()[0], start.get_layer("video_pool").get_weights()[0]
    )
    wider = archis.build_model("concat", vlad_k=8, window_seconds=4, seed=1)
    with pytest.raises(UserError, match="start.keras: its layer video_pool differs"):
        init_weights(wider, tmp_path / "start.keras")


@pytest.mark.slow
def test_one_stream_of_features_becomes_a_game_split_at_its_middle(tiny_model, tmp_path):
    game = synthetic.write_game(synthetic.make_game(1, seed=3, half_minutes=1), tmp_path / "game")
    feats = [str(game / "1_ResNET_TF2_PCA512.npy"), str(game / "1_VGGish.npy")]
    out = tmp_path / "out"
    argv = ["--model", str(tiny_model), "--out", str(out), "--features_video", feats[0], "--features_audio", feats[1]]
    assert inference.main([*argv, "--quiet"]) == 0
    identity = json.loads((out / "spans.json").read_text())["identity"]
    assert [f["role"] for f in identity["files"]] == ["features_video", "features_audio"]
    assert identity["files"][0]["sha256"] == file_digest(feats[0])
    tokens = len(np.load(feats[0]))
    mid = tokens // 2 / 2  # seconds
    labels = tmp_path / "Labels-v2.json"
    labels.write_text(json.dumps(labels_document(identity, [Reviewed(1, 3.0, "goal"), Reviewed(1, mid + 2.5, "card")])))
    assert trainset.main(["--out", str(tmp_path / "set"), "--match", str(out), str(labels)]) == 0
    written = tmp_path / "set" / "out"
    assert len(np.load(written / "1_VGGish.npy")) + len(np.load(written / "2_VGGish.npy")) == tokens
    events = ds.read_labels(written)
    assert [(e.half, e.position_ms, e.label) for e in events] == [(1, 3000, "Goal"), (2, 2500, "Yellow card")]
    assert [str(g) for g in np.load(tmp_path / "set" / "listgame_Train_1.npy")] == ["out"]


@pytest.mark.slow  # the session's tiny model is built by the first test that asks for it
def test_init_model_keeps_the_start_and_takes_the_fine_tuning_preset(tiny_model):
    from soccer_highlights.training.presets import FINETUNE

    lists = ["--training", "t.npy", "--validation", "v.npy", "--testing", "t.npy"]
    args = train_cmd.build_parser().parse_args(["--init_model", str(tiny_model), "--VLAD_k", "8", *lists])
    with pytest.raises(UserError, match=r"--VLAD_k 8: .*tiny.keras has 4 \(fine-tuning keeps it\)"):
        train_cmd._from_init_model(args)
    args = train_cmd.build_parser().parse_args(["--init_model", str(tiny_model), "--architecture", "GMU", *lists])
    with pytest.raises(UserError, match="is a concat model"):
        train_cmd._from_init_model(args)
    args = train_cmd.build_parser().parse_args(["--init_model", str(tiny_model), "--LR", "0.0005", *lists])
    train_cmd._from_init_model(args)
    assert (args.architecture, args.VLAD_k, args.WindowSize, args.LR, args.max_epoch, args.PCA) == (
        "concat",
        4,
        4,
        0.0005,
        FINETUNE.max_epoch,
        True,
    )
