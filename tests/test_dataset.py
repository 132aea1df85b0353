"""dataset.py on hand-written SoccerNet folders: label files, class maps, feature names, windows, cache."""

import json
import logging

import numpy as np
import pytest

from soccer_highlights import dataset as ds
from soccer_highlights.commands import train as cmb
from soccer_highlights.common.errors import UserError
from soccer_highlights.training import windows
from tests.argv import train_argv

D = 512


def write_game(
    root,
    name,
    labels,
    frames=(130, 130),
    audio_frames=None,
    video_name="ResNET_TF2_PCA512",
    labels_file="Labels-v2.json",
    seed=0,
):
    game = root / name
    game.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for half, t in enumerate(frames, start=1):
        np.save(game / f"{half}_{video_name}.npy", rng.standard_normal((t, D)).astype(np.float32))
        ta = (audio_frames or frames)[half - 1]
        np.save(game / f"{half}_VGGish.npy", rng.standard_normal((ta, D)).astype(np.float32))
    (game / labels_file).write_text(json.dumps({"annotations": labels}))
    return game


def write_list(root, names, stem="listgame_Train_1"):
    path = root / f"{stem}.npy"
    np.save(path, np.array(names))
    return path


def ann(game_time, label, position=None):
    a = {"gameTime": game_time, "label": label, "team": "home", "visibility": "visible"}
    if position is not None:
        a["position"] = str(position)
    return a


def test_v2_labels_position_by_flag_partial_window_and_ignored_classes(tmp_path):
    # 130 frames at 2 fps = 65 s -> six 10 s windows, the last 5 s dropped
    game = write_game(
        tmp_path,
        "g",
        [
            ann("1 - 00:05", "Goal", position=25_000),  # position (25 s) wins over gameTime (5 s) by flag
            ann("1 - 01:03", "Corner", position=63_000),  # in the dropped tail -> last window
            ann("1 - 00:12", "Throw-in", position=12_000),  # not a highlight: background
            ann("2 - 00:45", "Yellow card"),  # no position: gameTime, second half only
        ],
    )
    assert ds.read_labels(game, event_time="gametime")[0] == ds.Event(1, 5_000, "Goal")  # as both originals
    events = ds.read_labels(game, event_time="position")
    assert ds.Event(1, 25_000, "Goal") in events and ds.Event(2, 45_000, "Yellow card") in events
    cmap = ds.load_class_map("highlight")
    first = windows.window_labels(events, 1, 6, 10.0, cmap)
    second = windows.window_labels(events, 2, 6, 10.0, cmap)
    goal, kick, card = (cmap.classes.index(c) for c in ("goal", "kick", "card"))
    assert first[2, goal] == 1 and first[0, goal] == 0
    assert first[5, kick] == 1
    assert first[1].tolist() == [1, 0, 0, 0, 0]  # the throw-in window stays background
    assert first[:, 0].tolist() == [1, 1, 0, 1, 1, 0]
    assert second[4, card] == 1 and second[:, card].sum() == 1 and first[:, card].sum() == 0


def test_v1_labels_json_and_v1_class_map(tmp_path):
    game = write_game(
        tmp_path,
        "g",
        [ann("1 - 00:31", "soccer-ball"), ann("1 - 00:31", "y-card"), ann("2 - 00:02", "substitution-in")],
        video_name="ResNET_PCA512",
        labels_file="Labels.json",
    )
    cmap = ds.load_class_map("v1")
    assert cmap.classes == ["background", "card", "subs", "goal"]
    assert cmap.index_to_label[3] == "soccer-ball"
    labels = windows.window_labels(ds.read_labels(game), 1, 6, 10.0, cmap)
    assert labels[3].tolist() == [0, 1, 0, 1]  # two classes in one window, no background
    assert windows.window_labels(ds.read_labels(game), 2, 6, 10.0, cmap)[0].tolist() == [0, 0, 1, 0]
    # v1 feature naming is found by the same --featuresVideo ResNET --PCA
    assert ds.find_feature_file(game, 1, "ResNET", True).name == "1_ResNET_PCA512.npy"


def test_v2_map_and_json_class_map(tmp_path):
    v2 = ds.load_class_map("v2")
    assert len(v2.classes) == 18 and v2.label_to_index["Yellow->red card"] == 17
    path = tmp_path / "map.json"
    path.write_text(json.dumps({"classes": ["background", "shot"], "labels": {"shot": ["Goal", "Shots off target"]}}))
    cmap = ds.load_class_map(str(path))
    assert cmap.label_to_index == {"Goal": 1, "Shots off target": 1} and cmap.index_to_label == {1: "Goal"}
    path.write_text("{not json")
    with pytest.raises(UserError, match="malformed JSON"):
        ds.load_class_map(str(path))


def test_feature_file_selection(tmp_path):
    game = tmp_path / "g"
    game.mkdir()
    for name in ("1_ResNET_TF2_PCA512.npy", "1_ResNET_PCA512_float16.npy", "1_ResNET_TF2.npy", "1_VGGish.npy"):
        np.save(game / name, np.zeros((4, D), np.float32))
    assert ds.find_feature_file(game, 1, "ResNET", True).name == "1_ResNET_TF2_PCA512.npy"
    assert ds.find_feature_file(game, 1, "ResNET", False).name == "1_ResNET_TF2.npy"
    assert ds.find_feature_file(game, 1, "VGGish", None).name == "1_VGGish.npy"
    np.save(game / "1_ResNET_PCA512.npy", np.zeros((4, D), np.float32))  # v1 and v2 names side by side
    assert ds.find_feature_file(game, 1, "ResNET", True).name == "1_ResNET_PCA512.npy"  # exact name wins
    with pytest.raises(UserError, match="no feature file"):
        ds.find_feature_file(game, 2, "ResNET", True)


def test_truncation_warns_once_per_half(tmp_path, caplog):
    game = write_game(tmp_path, "g", [], frames=(130, 130), audio_frames=(127, 130))
    with caplog.at_level(logging.WARNING, logger="dataset"):
        video, audio = ds.load_half(game, 1)
        ds.load_half(game, 2)
    assert video.shape == audio.shape == (127, D)
    assert len([r for r in caplog.records if "truncating" in r.message]) == 1


def test_window_shapes_cache_round_trip_and_settings_check(tmp_path):
    names = ["a", "b"]
    for i, name in enumerate(names):
        write_game(tmp_path, name, [ann("1 - 00:15", "Goal", 15_000)], frames=(130, 90), seed=i)
    lst = write_list(tmp_path, names)
    cfg = windows.DataConfig(pca=True, window_seconds=10.0)
    cache = windows.open_split(lst, tmp_path / "cache", cfg, prepare=True, progress=False)
    assert cache.window_shape == (20, D)
    assert cache.n_windows == 2 * (6 + 4) and cache.labels.shape == (20, 5)
    assert cache.feature_files == {"video": "ResNET_TF2_PCA512", "audio": "VGGish"}
    video, audio = ds.load_half(tmp_path / "b", 2, pca=True)
    b2 = next(h for h in cache.halves if h["game"].endswith("b") and h["half"] == 2)
    cv, ca = cache.read(b2["start"], b2["start"] + b2["count"])
    np.testing.assert_array_equal(cv, np.asarray(video[:80]).reshape(4, 20, D))
    np.testing.assert_array_equal(ca, np.asarray(audio[:80]).reshape(4, 20, D))
    reopened = windows.open_split(lst, tmp_path / "cache", cfg, prepare=False)
    np.testing.assert_array_equal(reopened.labels, cache.labels)
    rows = np.array([7, 2, 15, 0])
    v, a, lab = reopened.read_rows(rows)  # in window order, rows and labels aligned
    np.testing.assert_array_equal(lab, reopened.labels[np.sort(rows)])
    for k, i in enumerate(np.sort(rows)):
        one_v, one_a = reopened.read(i, i + 1)
        np.testing.assert_array_equal(v[k], one_v[0])
        np.testing.assert_array_equal(a[k], one_a[0])
    batches = [reopened.read_rows(idx) for idx in reopened.step_indices(np.random.default_rng(0), batch_windows=6)]
    assert sum(len(b[2]) for b in batches) == 20 and all(b[0].shape[1:] == (20, D) for b in batches)
    steps = reopened.step_indices(np.random.default_rng(0), batch_halves=3)
    assert [len(reopened.read_rows(idx)[2]) for idx in steps] in ([16, 4], [14, 6], [18, 2], [12, 8])
    with pytest.raises(UserError, match="other settings.*WindowSize"):
        windows.open_split(lst, tmp_path / "cache", windows.DataConfig(pca=True, window_seconds=5.0), prepare=False)
    with pytest.raises(UserError, match="no window cache"):
        windows.open_split(lst, tmp_path / "elsewhere", cfg, prepare=False)


def test_class_weights_are_normalised_inverse_frequencies():
    labels = np.array([[1, 0, 0], [1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 1, 1]], np.float32)
    w = windows.class_weights(labels)
    np.testing.assert_allclose(w, np.array([1 / 3, 1 / 2, 1]) / (1 / 3 + 1 / 2 + 1), rtol=1e-6)


def test_skip_bad_games_records_them(tmp_path):
    write_game(tmp_path, "good", [])
    bad = write_game(tmp_path, "bad", [])
    (bad / "2_VGGish.npy").unlink()
    lst = write_list(tmp_path, ["good", "bad"])
    cfg = windows.DataConfig(pca=True, window_seconds=10.0)
    with pytest.raises(UserError, match="bad: no feature file 2_"):
        windows.open_split(lst, tmp_path / "cache", cfg, prepare=True, progress=False)
    cfg = windows.DataConfig(pca=True, window_seconds=10.0, skip_bad_games=True)
    cache = windows.open_split(lst, tmp_path / "cache", cfg, prepare=True, progress=False)
    assert [g["game"].endswith("bad") for g in cache.bad_games] == [True] and cache.n_windows == 12


@pytest.fixture
def bad_input_args(tmp_path):
    write_game(tmp_path, "g", [ann("1 - 00:15", "Goal")])
    lst = write_list(tmp_path, ["g"])
    args = train_argv(lst, tmp_path / "m", network=None, batch_size=None, cache_dir=tmp_path / "c")
    return tmp_path / "g", lst, args


@pytest.mark.parametrize(
    "breakage, message",
    [
        ("missing_list", "game list not found"),
        ("missing_feature", "no feature file 1_"),
        ("wrong_width", r"expected shape \[T, 512\], found \[130, 256\]"),
        ("nan", "NaN or infinite value at row 7"),
        ("malformed_json", "Labels-v2.json: malformed JSON"),
        ("long_window", "shorter than one window of 100 s"),
    ],
)
def test_bad_inputs_are_one_line_user_errors(bad_input_args, breakage, message):
    game, lst, args = bad_input_args
    if breakage == "missing_list":
        lst.unlink()
    elif breakage == "missing_feature":
        (game / "1_VGGish.npy").unlink()
    elif breakage == "wrong_width":
        np.save(game / "1_VGGish.npy", np.zeros((130, 256), np.float32))
    elif breakage == "nan":
        video = np.load(game / "1_ResNET_TF2_PCA512.npy")
        video[7, 3] = np.nan
        np.save(game / "1_ResNET_TF2_PCA512.npy", video)
    elif breakage == "malformed_json":
        (game / "Labels-v2.json").write_text('{"annotations": [')
    elif breakage == "long_window":
        args[args.index("--WindowSize") + 1] = "100"
    with pytest.raises(UserError, match=message) as info:
        cmb.main(args)
    assert "\n" not in str(info.value)
