"""Defaults that follow the original an architecture comes from (V&D or the seed), and V&D's small rules."""

from __future__ import annotations

import json

import numpy as np
import pytest

from soccer_highlights import dataset as ds
from soccer_highlights.archis.names import architecture_pooling
from soccer_highlights.commands import spot as csb
from soccer_highlights.commands import train as cmb
from soccer_highlights.common.errors import UserError
from soccer_highlights.spotting.spots import nms_mask
from soccer_highlights.training import windows


def _game(root, name, label_file, annotations):
    game = root / name
    game.mkdir(parents=True)
    (game / label_file).write_text(json.dumps({"annotations": annotations}))
    return game


def _list(root, games):
    path = root / f"listgame_{games[0].name}.npy"
    np.save(path, np.array([str(g.relative_to(root)) for g in games]))
    return str(path)


def _cfg(*argv):
    return cmb._config(cmb.build_parser().parse_args(list(argv)))


@pytest.fixture
def v1_list(tmp_path):
    game = _game(tmp_path, "g1", "Labels.json", [{"gameTime": "1 - 01:05", "label": "soccer-ball"}])
    return _list(tmp_path, [game])


@pytest.fixture
def v2_list(tmp_path):
    game = _game(tmp_path, "g2", "Labels-v2.json", [{"gameTime": "1 - 01:05", "label": "Goal", "position": "65000"}])
    return _list(tmp_path, [game])


def _train_args(lst, architecture):
    return ["--architecture", architecture, "--training", lst, "--validation", lst, "--testing", lst]


def test_vd_architecture_on_labels_json_trains_vds_v1_classes_with_unit_weights(v1_list):
    cfg = _cfg(*_train_args(v1_list, "AudioVideoArchi5"))
    assert cfg.data.class_map.name == "v1" and cfg.data.class_map.classes == ["background", "card", "subs", "goal"]
    assert cfg.class_weighting == "unit"


def test_on_v2_labels_vd_gets_its_three_classes_and_the_seed_its_four(v2_list):
    assert _cfg(*_train_args(v2_list, "AudioVideoArchi5")).data.class_map.classes == [
        "background",
        "card",
        "subs",
        "goal",
    ]
    seed = _cfg(*_train_args(v2_list, "GMU"))
    assert seed.data.class_map.name == "highlight" and seed.class_weighting == "seed_counts"


def test_class_map_and_class_weight_flags_choose_the_other_behaviour(v1_list):
    cfg = _cfg(
        *_train_args(v1_list, "AudioVideoArchi5"), "--class_map", "highlight", "--class_weights", "inverse_frequency"
    )
    assert cfg.data.class_map.name == "highlight" and cfg.class_weighting == "inverse_frequency"


def test_unit_class_weights_are_one_for_every_class():
    labels = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 1]], np.float32)
    np.testing.assert_array_equal(windows.class_weights(labels, "unit"), [1, 1, 1])
    assert windows.class_weights(labels, "inverse_frequency").sum() == pytest.approx(1)


def test_a_class_without_positive_window_stops_training_naming_class_files_and_map(v1_list):
    cfg = _cfg(*_train_args(v1_list, "AudioVideoArchi5"), "--class_map", "highlight")
    labels = np.array([[1, 0, 0, 0, 0], [0, 0, 0, 0, 1]], np.float32)
    with pytest.raises(
        UserError,
        match=r"classes kick, subs, card have no positive training window \(label files "
        r"Labels.json; class map highlight looks for kick: Penalty",
    ):
        windows.check_positives(labels, v1_list, cfg.data)


def test_few_positives_give_one_warning_with_counts(v1_list, caplog):
    cfg = _cfg(*_train_args(v1_list, "AudioVideoArchi5"))
    labels = np.array([[1, 0, 0, 0]] * 50 + [[0, 1, 1, 1]] * 2, np.float32)
    windows.check_positives(labels, v1_list, cfg.data)
    assert [r.getMessage() for r in caplog.records] == [
        f"{v1_list}: few positive training windows: card 2, subs 2, goal 2 (of 52 windows)"
    ]


@pytest.mark.parametrize("name", ["AudioVideoArchi4", "AudioVideoArchi6", "AudioVideoArchi7", "AudioVideoArchi8"])
def test_vd_archis_4_6_7_8_pool_with_netrvlad_whatever_the_network(name):
    assert architecture_pooling(name, "VLAD") == "NetRVLAD"
    assert architecture_pooling(name, "VLAD", "network") == "NetVLAD"


def test_vd_archis_10_and_11_pool_only_under_rvlad():
    assert architecture_pooling("AudioVideoArchi10", "RVLAD") == "NetRVLAD"
    with pytest.raises(UserError, match="pools only with --network RVLAD"):
        architecture_pooling("AudioVideoArchi11", "VLAD")
    assert architecture_pooling("VideoNetwork", "VLAD") == "NetVLAD"
    assert architecture_pooling("AudioVideoArchi5", "VLAD") == "NetVLAD"


def test_training_config_gets_the_rule_s_pooling(v1_list):
    assert _cfg(*_train_args(v1_list, "AudioVideoArchi7"), "--network", "VLAD").network == "NetRVLAD"


def test_label_window_is_vds_minute_second_rule_unless_floor():
    # W = 7 s, event at 1:05: V&D int(60/7 * 1 + 5 // 7) = 8; floor(65 / 7) = 9
    assert windows.label_window(65_000, 7) == 8
    assert windows.label_window(65_000, 7, "floor") == 9
    assert windows.label_window(65_000, 20) == windows.label_window(65_000, 20, "floor") == 3


def test_per_second_scores_have_vds_row_count():
    probs = np.arange(2 * 121, dtype=np.float32).reshape(121, 2)
    assert csb.per_second(probs, 2.0).shape == (60, 2)  # V&D: int(121 / 2)


def test_nms_end_edge_uses_the_whole_seconds_of_the_half():
    # 241 tokens = 120 whole seconds (V&D's rows); the edge starts at second 120 - 30 = 90, not 120.5 - 30
    scores = np.zeros((241, 2), np.float32)
    scores[180, 1] = 0.9  # second 90.0: on V&D's edge
    assert not nms_mask(scores, tokens_per_second=2.0, window_sec=60, threshold=0.5).any()


def test_ftp_flag_is_accepted():
    assert csb.parse_args(["--testing", "x.npy", "--FTP"]).FTP


def test_predict_config_accepts_vds_property_names(tmp_path):
    config = tmp_path / "props"
    config.write_text("logits_video\npredictions_audio\n")
    assert cmb._predict_outputs(config, ("logits", "probabilities", "labels")) == ("logits", "probabilities")
    config.write_text("scores\n")
    with pytest.raises(UserError, match="found \\['scores'\\]"):
        cmb._predict_outputs(config, ("logits", "probabilities", "labels"))


def test_v1_label_files_are_detected(v1_list, v2_list):
    assert ds.default_class_map(ds.read_game_list(v1_list), vd=False).name == "v1"
    assert ds.default_class_map(ds.read_game_list(v2_list), vd=True).name == "vd_v2"


def test_seed_defaults_batch_size_batch_norm_plateau_and_heads(v2_list):
    seed = _cfg(*_train_args(v2_list, "GMU"))
    vd = _cfg(*_train_args(v2_list, "AudioVideoArchi5"))
    assert (seed.batch_size, seed.plateau_restore) == (2, "weights")
    assert (vd.batch_size, vd.plateau_restore) == (60, "weights_and_optimizer")
    other = _cfg(*_train_args(v2_list, "GMU"), "--batch_size", "60", "--plateau_restore", "weights_and_optimizer")
    assert (other.batch_size, other.plateau_restore) == (60, "weights_and_optimizer")


def _batch_norms(model):
    import keras

    return {
        (round(layer.momentum, 6), layer.epsilon)
        for layer in model._flatten_layers()
        if isinstance(layer, keras.layers.BatchNormalization)
    }


def test_batch_norm_constants_and_head_init_follow_the_original_and_are_saved(tmp_path):
    from soccer_highlights import archis

    vd = archis.build_model("AudioVideoArchi5", vlad_k=2, window_seconds=2, seed=0)
    seed = archis.build_model("GMU", vlad_k=2, window_seconds=2, seed=0)
    assert _batch_norms(vd) == {(0.999, 1e-3)} and _batch_norms(seed) == {(0.9, 1e-5)}
    bound = 1 / np.sqrt(512)  # PyTorch's nn.Linear: weights and bias uniform in +-1/sqrt(fan_in)
    kernel, bias = seed.get_layer("logits").get_weights()
    assert np.abs(kernel).max() <= bound and np.abs(bias).max() > 0
    assert not vd.get_layer("logits").get_weights()[1].any()  # TF1's fully_connected: zero bias
    seed.save(tmp_path / "m.keras")
    loaded = archis.load_model(tmp_path / "m.keras")
    assert archis.model_info(loaded).batch_norm == "pytorch" and _batch_norms(loaded) == {(0.9, 1e-5)}


def test_plateau_cut_restores_weights_only_when_asked():
    from soccer_highlights.training.schedule import SchedulePolicy, ScheduleState, schedule_step

    state = ScheduleState(lr=0.01, epoch=3, best_score=0.5, best_epoch=1, plateau=1)
    for restore in (True, False):
        step = schedule_step(state, 0.1, SchedulePolicy(patience_lr=1, restore_optimizer=restore))
        assert step.cut_lr and step.restore_optimizer is restore
