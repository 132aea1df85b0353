"""The originals' training data, worked out from their code on small cases: the seed's background label and fixed
class weights, the event time both read (`gameTime`), the label file each reads, the recipe of the seed's deployed
AudioVideoArchi5, and V&D's ensembles' members."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from soccer_highlights import dataset as ds
from soccer_highlights.commands import train as cmb
from soccer_highlights.common.errors import UserError
from soccer_highlights.training import TrainConfig, windows
from soccer_highlights.training.ensemble import ENSEMBLE_MEMBERS, ensemble
from soccer_highlights.training.loop import training_record

D = 8  # feature size of the hand-written games (tiny: only the labels matter here)


def _game(root, name, files, frames=130):
    """A game folder with `files` ({label file name: annotations}) and two halves of `frames` random features."""
    game = root / name
    game.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for half in (1, 2):
        np.save(game / f"{half}_ResNET_TF2_PCA512.npy", rng.standard_normal((frames, D)).astype(np.float32))
        np.save(game / f"{half}_VGGish.npy", rng.standard_normal((frames, D)).astype(np.float32))
    for file_name, events in files.items():
        (game / file_name).write_text(json.dumps({"annotations": events}))
    return game


def _list(root, names, stem="listgame_Train_1"):
    path = root / f"{stem}.npy"
    np.save(path, np.array(names))
    return str(path)


def _ann(game_time, label, position=None):
    a = {"gameTime": game_time, "label": label}
    if position is not None:
        a["position"] = str(position)
    return a


def _cfg(*argv):
    return cmb._config(cmb.build_parser().parse_args(list(argv)))


def _train(lst, architecture, *flags):
    return _cfg("--architecture", architecture, "--training", lst, "--validation", lst, "--testing", lst, *flags)


# --------------------------------------------------------------------------------------------
# Item 2: the seed's background label (its dataset.py, Dataset.prepare_normal, the loop over
# jsonLabel['annotations']): Labels[:, 0] = 1; per event of the half, in file order, Labels[index, 0] = 0 then
# Labels[index, label] = 1, where a label of none of its substrings ("free-kick", "Penalty", "Corner" -> 1,
# "Substitution" -> 2, "card" -> 3, "Goal", "Shots on target" -> 4) is 0; index = int(60/W*minute + int(second/W)).

SEED_EVENTS = [
    _ann("1 - 00:12", "Corner"),  # window 1: kick
    _ann("1 - 00:15", "Throw-in"),  # window 1: label 0 -> background back to 1, kick stays
    _ann("1 - 00:25", "Throw-in"),  # window 2: background cleared and set again
    _ann("1 - 00:28", "Goal"),  # window 2: goal after the throw-in: background 0
    _ann("1 - 00:45", "Foul"),  # window 4: background only
    _ann("2 - 00:05", "Yellow card"),  # the other half
]
# Worked out by hand from the loop above, W = 10 s, six windows, classes background, kick, subs, card, goal.
SEED_HALF1 = [
    [1, 0, 0, 0, 0],
    [1, 1, 0, 0, 0],  # background 1 AND kick
    [0, 0, 0, 0, 1],
    [1, 0, 0, 0, 0],
    [1, 0, 0, 0, 0],
    [1, 0, 0, 0, 0],
]


def test_seeds_background_label_is_its_loops(tmp_path):
    game = _game(tmp_path, "g", {"Labels-v2.json": SEED_EVENTS})
    events = ds.read_labels(game)
    cmap = ds.load_class_map("highlight")
    original = windows.window_labels(events, 1, 6, 10.0, cmap, background="original")
    assert original.tolist() == SEED_HALF1
    exclusive = windows.window_labels(events, 1, 6, 10.0, cmap, background="exclusive")
    assert exclusive[1].tolist() == [0, 1, 0, 0, 0]  # the port's other rule: no background beside a class
    assert (exclusive[[0, 2, 3, 4, 5]] == original[[0, 2, 3, 4, 5]]).all()
    assert windows.window_labels(events, 2, 6, 10.0, cmap, background="original")[0].tolist() == [0, 0, 0, 1, 0]


def test_seed_families_default_to_the_seeds_background_saved_in_the_model(tmp_path):
    game = _game(tmp_path, "g", {"Labels-v2.json": SEED_EVENTS})
    lst = _list(tmp_path, [game.name])
    seed = _train(lst, "GMU")
    assert seed.data.background == "original" and training_record(seed)["background_label"] == "original"
    vd = _train(lst, "AudioVideoArchi5")
    assert vd.data.background == "exclusive" and training_record(vd)["background_label"] == "exclusive"
    assert _train(lst, "GMU", "--background_label", "exclusive").data.background == "exclusive"
    data = replace(seed.data, pca=True, feature_dim=D, window_seconds=10.0)
    cache = windows.open_split(lst, tmp_path / "cache", data, prepare=True, progress=False)
    assert cache.labels[:6].astype(int).tolist() == SEED_HALF1
    assert cache.settings["background"] == "original"


# --------------------------------------------------------------------------------------------
# Item 3: the seed's class weights (its dataset.py, Dataset.__init__): sample_counts 80218, 17730, 2839, 2148, 7523
# for class_0_other, class_1_set_piece, class_2_substitution, class_3_card, class_4_goal_shot; weights =
# [1/n / sum(1/n)], the pos_weight of its trainer.py's BCEWithLogitsLoss. Worked out: 1/80218 ... summed
# 1.02018e-3, so:
SEED_WEIGHTS = [0.01222664, 0.05531848, 0.34547257, 0.45660923, 0.13037307]


def test_seed_class_weights_are_its_fixed_counts_inverse():
    labels = np.zeros((3, 5), np.float32)  # the data plays no part
    w = windows.class_weights(labels, "seed_counts", ["background", "kick", "subs", "card", "goal"])
    np.testing.assert_allclose(w, SEED_WEIGHTS, rtol=1e-6)
    with pytest.raises(UserError, match="seed_counts holds the seed's counts of background, kick"):
        windows.class_weights(np.zeros((3, 4)), "seed_counts", ["background", "card", "subs", "goal"])


def test_seed_counts_is_the_seeds_default_and_another_class_map_says_what_it_uses(tmp_path, capsys):
    v2 = _game(tmp_path, "g2", {"Labels-v2.json": SEED_EVENTS})
    assert _train(_list(tmp_path, [v2.name], "l2"), "GMU").class_weighting == "seed_counts"
    v1 = _game(tmp_path, "g1", {"Labels.json": [_ann("1 - 00:12", "soccer-ball")]})
    lst = _list(tmp_path, [v1.name], "l1")
    capsys.readouterr()
    assert _train(lst, "GMU").class_weighting == "inverse_frequency"  # the seed's counts are of its classes
    assert "class weights: inverse_frequency (the seed's fixed counts" in capsys.readouterr().out
    with pytest.raises(UserError, match="seed_counts holds the seed's counts.*class map v1"):
        _train(lst, "GMU", "--class_weights", "seed_counts")
    assert _train(lst, "GMU", "--class_weights", "inverse_frequency").class_weighting == "inverse_frequency"


# --------------------------------------------------------------------------------------------
# Item 5: the seed's deployed model. Its inference.py loads networks.AudioVideoArchi5, which the seed trained with
# its ClassificationMinuteBased.py (batch_size default 2) over its dataset.py (Labels-v2.json, kick/subs/card/goal,
# the fixed weights, its background loop) and trainer.py (BCEWithLogitsLoss, weights-only restore at a plateau);
# the class has nn.Dropout(p=0.5) and nn.Linear, its NetVLADs nn.BatchNorm1d.


def test_preset_seed_trains_the_seeds_audiovideoarchi5(tmp_path):
    lst = _list(tmp_path, [_game(tmp_path, "g", {"Labels-v2.json": SEED_EVENTS}).name])
    cfg = _train(lst, "AudioVideoArchi5", "--preset", "seed")
    assert cfg.preset == "seed" and training_record(cfg)["preset"] == "seed"
    assert (cfg.batch_size, cfg.class_weighting, cfg.plateau_restore, cfg.dropout) == (2, "seed_counts", "weights", 0.5)
    assert (cfg.batch_norm, cfg.head_init, cfg.data.class_map.name) == ("pytorch", "torch", "highlight")
    assert (cfg.data.labels, cfg.data.background, cfg.data.event_time) == ("v2", "original", "gametime")
    vd = _train(lst, "AudioVideoArchi5")  # V&D's own Archi5 keeps V&D's recipe
    assert (vd.preset, vd.batch_size, vd.class_weighting, vd.dropout) == ("vd_minute", 60, "unit", 0.4)


# --------------------------------------------------------------------------------------------
# Item 6: both originals' dataset.py (prepare_normal) read the event's time from gameTime: Time_Minute =
# int(gameTime[-5:-3]), Time_Second = int(gameTime[-2:]), index = int(60/W*minute + int(second/W)). An event at
# "1 - 00:19" whose position is 20400 ms is in window 1 of 10 s for them (window 2 by its position).


def test_event_time_is_game_time_and_position_by_flag(tmp_path):
    game = _game(tmp_path, "g", {"Labels-v2.json": [_ann("1 - 00:19", "Goal", 20_400)]})
    cmap = ds.load_class_map("highlight")
    goal = cmap.classes.index("goal")
    by_clock = windows.window_labels(ds.read_labels(game, event_time="gametime"), 1, 6, 10.0, cmap)
    by_position = windows.window_labels(ds.read_labels(game, event_time="position"), 1, 6, 10.0, cmap)
    assert by_clock[:, goal].tolist() == [0, 1, 0, 0, 0, 0]
    assert by_position[:, goal].tolist() == [0, 0, 1, 0, 0, 0]
    lst = _list(tmp_path, [game.name])
    cfg = _train(lst, "GMU", "--event_time", "position")
    assert cfg.data.event_time == "position" and training_record(cfg)["event_time"] == "position"
    vd = _train(lst, "concat")
    assert vd.data.event_time == "gametime"
    data = replace(vd.data, pca=True, feature_dim=D, window_seconds=10.0)
    cache = windows.open_split(lst, tmp_path / "cache", data, prepare=True, progress=False)
    assert cache.labels[:6, -1].tolist() == [0, 1, 0, 0, 0, 0]  # goal (vd_v2's last class) by the game clock


def test_a_game_time_past_59_seconds_is_refused_naming_the_file(tmp_path):
    game = _game(tmp_path, "g", {"Labels-v2.json": [_ann("1 - 00:99", "Goal")]})
    with pytest.raises(UserError, match=r"g/Labels-v2.json: annotation 0 has gameTime '1 - 00:99': seconds"):
        ds.read_labels(game)


# --------------------------------------------------------------------------------------------
# Item 8: V&D's dataset.py (prepare_normal) opens Labels.json, the seed's Labels-v2.json.

V1_EVENTS = [_ann("1 - 00:12", "soccer-ball")]
V2_EVENTS = [_ann("1 - 00:12", "Goal"), _ann("1 - 00:35", "Corner")]


def test_each_family_reads_its_originals_label_file_and_says_which(tmp_path, capsys):
    game = _game(tmp_path, "g", {"Labels.json": V1_EVENTS, "Labels-v2.json": V2_EVENTS})
    lst = _list(tmp_path, [game.name])
    vd = _train(lst, "AudioVideoArchi5")
    assert (vd.data.labels, vd.data.labels_only, vd.data.class_map.name) == ("v1", False, "v1")
    seed = _train(lst, "GMU")
    assert (seed.data.labels, seed.data.class_map.name) == ("v2", "highlight")
    v2 = _train(lst, "AudioVideoArchi5", "--labels", "v2")
    assert (v2.data.labels, v2.data.labels_only, v2.data.class_map.name) == ("v2", True, "vd_v2")
    assert training_record(v2)["labels"] == "v2"
    capsys.readouterr()
    cache = windows.open_split(lst, tmp_path / "cache", replace(vd.data, pca=True, feature_dim=D), prepare=True)
    assert f"{lst}: labels read from Labels.json (v1) in 1 game" in capsys.readouterr().out
    assert cache.labels[0].tolist() == [0, 0, 0, 1]  # soccer-ball: goal, from Labels.json
    windows.open_split(lst, tmp_path / "cache", replace(seed.data, pca=True, feature_dim=D), prepare=True)
    assert f"{lst}: labels read from Labels-v2.json (v2) in 1 game" in capsys.readouterr().out


def test_labels_given_reads_only_that_file(tmp_path):
    game = _game(tmp_path, "g", {"Labels-v2.json": V2_EVENTS})
    lst = _list(tmp_path, [game.name])
    assert _train(lst, "AudioVideoArchi5").data.class_map.name == "vd_v2"  # no Labels.json: the v2 file
    cfg = _train(lst, "AudioVideoArchi5", "--labels", "v1", "--class_map", "v1")
    with pytest.raises(UserError, match=r"g: no Labels.json"):
        windows.open_split(lst, tmp_path / "cache", replace(cfg.data, pca=True, feature_dim=D), prepare=True)


# --------------------------------------------------------------------------------------------
# Item 7: V&D's ensembles (networks.py) read fixed members: Archi3Prediction and Archi9Prediction
# Model/Archi1/logits_video.npy (VideoNetwork) and Model/Archi2/logits_audio.npy (AudioNetwork); Archi12Prediction
# and Archi18Prediction Archi10's and Archi11's. Archi3/12: logits = 0.5*video + 0.5*audio; Archi9/18:
# predictions = sigmoid(video) * sigmoid(audio).


def _predictions(path, architecture, logits):
    labels = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0]], np.float32)
    halves = np.array([["g", "1", "0", "4"]])
    kw = {} if architecture is None else {"architecture": np.array(architecture)}
    np.savez(path, logits=logits, labels=labels, classes=np.array(["background", "a", "b"]), halves=halves, **kw)
    return str(path)


LOGITS_V = np.array([[2.0, -1.0, 0.0], [0.5, 1.0, -2.0], [-1.0, 0.0, 3.0], [1.0, 1.0, 1.0]], np.float32)
LOGITS_A = np.array([[0.0, 1.0, -1.0], [1.5, -1.0, 0.0], [1.0, 2.0, -1.0], [-1.0, 0.0, 1.0]], np.float32)


def test_vds_ensembles_combine_their_members_as_vd(tmp_path):
    assert ENSEMBLE_MEMBERS["Archi3Prediction"] == (("Archi1", "video"), ("Archi2", "audio"))
    assert ENSEMBLE_MEMBERS["Archi18Prediction"] == (("Archi10", "video"), ("Archi11", "audio"))
    v = _predictions(tmp_path / "v.npz", "video", LOGITS_V)
    a = _predictions(tmp_path / "a.npz", "audio", LOGITS_A)
    for name, method, expected in (
        ("Archi3Prediction", "mean_logits", 0.5 * LOGITS_V + 0.5 * LOGITS_A),
        ("Archi9Prediction", "product", 1 / (1 + np.exp(-LOGITS_V)) / (1 + np.exp(-LOGITS_A))),
    ):
        cfg = TrainConfig(
            mode="ensemble", ensemble=(v, a), ensemble_method=method, ensemble_of=name, tflog=str(tmp_path)
        )
        ensemble(cfg)
        with np.load(tmp_path / f"concat_ensemble_{method}.npz") as f:
            np.testing.assert_allclose(f["scores"], expected, rtol=1e-6)


def test_vds_named_ensembles_refuse_other_members(tmp_path):
    v = _predictions(tmp_path / "v.npz", "video", LOGITS_V)
    c = _predictions(tmp_path / "c.npz", "concat", LOGITS_A)
    old = _predictions(tmp_path / "old.npz", None, LOGITS_A)
    cfg = TrainConfig(mode="ensemble", ensemble=(v, c), ensemble_of="Archi12Prediction", tflog=str(tmp_path))
    with pytest.raises(UserError, match=r"Archi12Prediction combines V&D's Archi10 \(video\) and Archi11 \(audio\)"):
        ensemble(cfg)
    cfg = TrainConfig(mode="ensemble", ensemble=(v, old), ensemble_of="Archi3Prediction", tflog=str(tmp_path))
    with pytest.raises(UserError, match=r"old.npz: predictions made before they recorded"):
        ensemble(cfg)
    ensemble(TrainConfig(mode="ensemble", ensemble=(v, c), tflog=str(tmp_path)))  # an ensemble V&D did not name


def test_the_command_passes_vds_ensemble_name(tmp_path):
    cfg = _cfg("--mode", "other", "--architecture", "AudioVideoArchi12", "--ensemble", "a.npz", "b.npz")
    assert (cfg.mode, cfg.ensemble_method, cfg.ensemble_of) == ("ensemble", "mean_logits", "AudioVideoArchi12")


def test_predict_mode_labels_windows_as_the_model_was_trained(tmp_path, monkeypatch):
    from types import SimpleNamespace

    lst = _list(tmp_path, [_game(tmp_path, "g", {"Labels.json": V1_EVENTS, "Labels-v2.json": V2_EVENTS}).name])
    model = tmp_path / "m.keras"
    model.write_bytes(b"")  # read through the patched read_spec
    record = {"labels": "v2", "event_time": "position", "background_label": "original"}
    monkeypatch.setattr(cmb, "read_spec", lambda path: SimpleNamespace(training=record, class_map=None))
    cfg = _cfg("--mode", "predict", "--testing", lst, "--model", str(model))
    assert (cfg.data.labels, cfg.data.event_time, cfg.data.background) == ("v2", "position", "original")
    cfg = _cfg("--mode", "predict", "--testing", lst, "--model", str(model), "--event_time", "gametime")
    assert cfg.data.event_time == "gametime"  # a flag given wins
    record["background_label"] = "sometimes"
    with pytest.raises(UserError, match=r"m.keras: its training record has background_label 'sometimes'"):
        _cfg("--mode", "predict", "--testing", lst, "--model", str(model))


def test_truth_and_evaluation_read_the_file_of_the_models_classes(tmp_path):
    """A V&D model of v1 classes (trained on Labels.json, V&D's dataset.py) is scored against Labels.json where a
    game has both files; any other class map against Labels-v2.json, as before."""
    from soccer_highlights.evaluation.metrics import label_file

    game = _game(tmp_path, "g", {"Labels.json": V1_EVENTS, "Labels-v2.json": V2_EVENTS})
    v1, vd_v2 = ds.load_class_map("v1"), ds.load_class_map("vd_v2")
    assert (ds.labels_version(v1.label_to_index), ds.labels_version(vd_v2.label_to_index)) == ("v1", None)
    assert label_file(game, ds.labels_version(v1.label_to_index)).name == "Labels.json"
    assert label_file(game, ds.labels_version(vd_v2.label_to_index)).name == "Labels-v2.json"
