"""The originals' training recipes (`training.presets`): which architecture gets which, the values they fix, that a
flag given wins, and how the command's help shows them."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from soccer_highlights.archis import names as registry
from soccer_highlights.commands import train as cmb
from soccer_highlights.common.errors import UserError
from soccer_highlights.training import TrainConfig
from soccer_highlights.training.presets import DEFAULT_PRESET, PRESETS, RECIPE_FIELDS, SEED, VD_MINUTE, preset_for
from soccer_highlights.training.schedule import SCHEDULES, SELECTION_METRICS
from soccer_highlights.training.windows import CLASS_WEIGHTINGS, LABEL_INDEX_RULES

# The values the command chose before the presets existed (V&D's flag defaults, and the originals' choices that
# followed the architecture): a preset may not change them.
SHARED = {
    "lr": 0.01,
    "max_epoch": 200,
    "schedule": "original",
    "patience_lr": 10,
    "patience_stop": 30,
    "min_lr": 1e-4,
    "selection_metric": "ap",
    "network": "RVLAD",
    "pooling_rule": "original",
    "vlad_k": 64,
    "window_seconds": 60,
    "tokens_per_second": 2,
    "label_index": "original",
    "event_time": "gametime",  # both originals' dataset.py (prepare_normal) read gameTime
}
VD_VALUES = {
    **SHARED,
    "batch_size": 60,
    "class_weighting": "unit",
    "plateau_restore": "weights_and_optimizer",
    "dropout": 0.4,
    "batch_norm": "tf1_slim",
    "head_init": "glorot",
    "bn_eval": "batch",
    "l2_floor": "squared",
    "loss_reduction": "sum_classes",
    "class_map": "vd_v2",
    "labels": "v1",  # V&D's dataset.py reads Labels.json
    "background_label": "exclusive",
}
SEED_VALUES = {
    **SHARED,
    "batch_size": 2,
    "class_weighting": "seed_counts",  # the seed's dataset.py: fixed SoccerNet-v2 counts
    "plateau_restore": "weights",
    "dropout": 0.5,
    "batch_norm": "pytorch",
    "head_init": "torch",
    "bn_eval": "moving",
    "l2_floor": "norm",
    "loss_reduction": "mean_classes",
    "class_map": "highlight",
    "labels": "v2",  # the seed's dataset.py reads Labels-v2.json
    "background_label": "original",  # the seed's dataset.py loop
}
# The config field each preset field fills (the data's live in `cfg.data`).
DATA_FIELDS = ("window_seconds", "tokens_per_second", "label_index", "labels", "event_time")

# Every flag of the command, and those that are V&D's own (its spelling).
VD_FLAGS = {
    "--architecture",
    "--training",
    "--validation",
    "--testing",
    "--featuresVideo",
    "--featuresAudio",
    "--GPU",
    "--PCA",
    "--network",
    "--tflog",
    "--loglevel",
    "--batch_size",
    "--max_epoch",
    "--VLAD_k",
    "--LR",
    "--WindowSize",
    "--featurePerSec",
    "--outputPrefix",
    "--mode",
    "--config",
    "--formatdataset",
    "--system",
}
OUR_FLAGS = {
    "--batch_norm",
    "--batch_windows",
    "--cache_dir",
    "--class_map",
    "--class_weights",
    "--compute_dtype",
    "--dataset_root",
    "--dropout",
    "--ensemble",
    "--ensemble_method",
    "--event_time",
    "--bn_eval",
    "--l2_floor",
    "--loss_reduction",
    "--background_label",
    "--labels",
    "--preset",
    "--head_init",
    "--init_model",
    "--keep_old",
    "--label_index",
    "--memory_budget_gb",
    "--micro_batch_windows",
    "--min_lr",
    "--model",
    "--overwrite",
    "--patience_lr",
    "--patience_stop",
    "--plateau_restore",
    "--pooling_rule",
    "--quiet",
    "--resume",
    "--schedule",
    "--seed",
    "--selection_metric",
    "--skip_bad_games",
    "--verbose",
}


@pytest.fixture
def v2_list(tmp_path):
    game = tmp_path / "g"
    game.mkdir()
    labels = [{"gameTime": "1 - 01:05", "label": "Goal", "position": "65000"}]
    (game / "Labels-v2.json").write_text(json.dumps({"annotations": labels}))
    path = tmp_path / "listgame_g.npy"
    np.save(path, np.array(["g"]))
    return str(path)


def _cfg(lst: str, architecture: str, *flags: str) -> TrainConfig:
    argv = ["--architecture", architecture, "--training", lst, "--validation", lst, "--testing", lst, *flags]
    return cmb._config(cmb.build_parser().parse_args(argv))


def _config_value(cfg: TrainConfig, field: str):
    if field in DATA_FIELDS:
        return getattr(cfg.data, field)
    if field == "class_map":
        return cfg.data.class_map.name
    if field == "background_label":
        return cfg.data.background
    return getattr(cfg, field)


def test_presets_fix_the_values_the_originals_used():
    for preset, expected in ((VD_MINUTE, VD_VALUES), (SEED, SEED_VALUES)):
        assert {f: getattr(preset, f) for f in RECIPE_FIELDS} == expected, preset.name
    assert SEED.dropout_for("transformer") == SEED.dropout_for("LateFusionArchi") == 0.6
    assert (VD_MINUTE.dropout_for("concat"), SEED.dropout_for("GMU"), SEED.dropout_for("")) == (0.4, 0.5, 0.5)


def test_preset_values_are_valid_choices():
    for p in PRESETS.values():
        assert p.class_weighting in CLASS_WEIGHTINGS and p.schedule in SCHEDULES
        assert p.selection_metric in SELECTION_METRICS and p.label_index in LABEL_INDEX_RULES
        assert p.pooling_rule in registry.POOLING_RULES and p.batch_norm in registry.BATCH_NORMS
        assert p.head_init in registry.HEAD_INITS and p.plateau_restore in ("weights_and_optimizer", "weights")


@pytest.mark.parametrize("name", registry.list_architectures(include_aliases=True))
def test_each_architecture_gets_its_originals_preset_and_the_model_defaults_agree(name):
    preset = preset_for(name)
    assert preset is (VD_MINUTE if registry.origin(name) == "vd" else SEED)
    assert preset.dropout_for(name) == registry.default_dropout(name)
    assert preset.batch_norm == registry.default_batch_norm(name)
    assert preset.head_init == registry.default_head_init(name)


def test_no_architecture_is_vds_and_an_unknown_one_is_refused():
    assert preset_for(None) is preset_for("") is DEFAULT_PRESET is VD_MINUTE
    assert {p.origin for p in PRESETS.values()} == {"vd", "seed"}
    with pytest.raises(UserError, match="unknown architecture 'Archi99'"):
        preset_for("Archi99")


def test_train_config_defaults_are_the_default_presets():
    cfg = TrainConfig()
    assert preset_for(cfg.architecture) is DEFAULT_PRESET
    assert {f: _config_value(cfg, f) for f in RECIPE_FIELDS} == VD_VALUES


@pytest.mark.parametrize(
    "architecture, expected",
    [("AudioVideoArchi5", VD_VALUES), ("video", VD_VALUES), ("GMU", SEED_VALUES), ("cmga_mean", SEED_VALUES)],
)
def test_the_command_fills_every_flag_not_given_from_the_architectures_preset(v2_list, architecture, expected):
    cfg = _cfg(v2_list, architecture)
    assert {f: _config_value(cfg, f) for f in RECIPE_FIELDS if f != "network"} == {
        f: v for f, v in expected.items() if f != "network"
    }
    assert cfg.network == "NetRVLAD"  # --network RVLAD, as the model gets it


def test_the_transformer_keeps_its_originals_dropout(v2_list):
    assert _cfg(v2_list, "LateFusionArchi").dropout == 0.6


# A value for each preset flag that no preset has: given, it wins over the preset.
GIVEN = {
    "LR": ("0.5", "lr", 0.5),
    "max_epoch": ("3", "max_epoch", 3),
    "batch_size": ("7", "batch_size", 7),
    "class_weights": ("inverse_frequency", "class_weighting", "inverse_frequency"),
    "schedule": ("since_best", "schedule", "since_best"),
    "patience_lr": ("2", "patience_lr", 2),
    "patience_stop": ("4", "patience_stop", 4),
    "min_lr": ("0.001", "min_lr", 0.001),
    "plateau_restore": ("weights", "plateau_restore", "weights"),
    "selection_metric": ("tf1_pr_auc", "selection_metric", "tf1_pr_auc"),
    "network": ("MAX", "network", "MAX"),
    "pooling_rule": ("network", "pooling_rule", "network"),
    "VLAD_k": ("8", "vlad_k", 8),
    "dropout": ("0.1", "dropout", 0.1),
    "batch_norm": ("keras", "batch_norm", "keras"),
    "head_init": ("torch", "head_init", "torch"),
    "WindowSize": ("20", "window_seconds", 20),
    "featurePerSec": ("1", "tokens_per_second", 1),
    "label_index": ("floor", "label_index", "floor"),
    "bn_eval": ("population", "bn_eval", "population"),
    "l2_floor": ("norm", "l2_floor", "norm"),
    "loss_reduction": ("mean_classes", "loss_reduction", "mean_classes"),
    "labels": ("v2", "labels", "v2"),
    "event_time": ("position", "event_time", "position"),
    "background_label": ("original", "background_label", "original"),
}


def test_every_preset_flag_is_tested():
    assert set(GIVEN) == set(cmb.PRESET_FLAGS)


@pytest.mark.parametrize("flag", sorted(GIVEN))
def test_a_flag_given_wins_over_the_preset(v2_list, flag):
    given, field, expected = GIVEN[flag]
    cfg = _cfg(v2_list, "AudioVideoArchi5", f"--{flag}", given)
    assert _config_value(cfg, field) == expected
    others = {f: _config_value(cfg, f) for f in RECIPE_FIELDS if f not in (field, "network")}
    assert others == {f: v for f, v in VD_VALUES.items() if f not in (field, "network")}


def test_seed_flags_on_a_vd_architecture_and_back(v2_list):
    seed_like = _cfg(v2_list, "concat", "--batch_size", "2", "--class_weights", "inverse_frequency")
    assert (seed_like.batch_size, seed_like.class_weighting, seed_like.plateau_restore) == (
        2,
        "inverse_frequency",
        "weights_and_optimizer",
    )
    vd_like = _cfg(v2_list, "gmu", "--batch_norm", "tf1_slim", "--dropout", "0.4")
    assert (vd_like.batch_norm, vd_like.dropout, vd_like.head_init) == ("tf1_slim", 0.4, "torch")


# --------------------------------------------------------------------------------------------
# The help


@pytest.fixture(scope="module")
def help_text() -> str:
    return cmb.build_parser().format_help()


def _entries(text: str) -> dict[str, str]:
    """Each option's help, its wrapped lines joined: {"--LR": "--LR LR (V&D) learning rate (preset: ...)"}."""
    entries: dict[str, str] = {}
    current = None
    for line in text.splitlines():
        match = re.match(r"  (-h, )?(--\w+)", line)
        if match:
            current = match.group(2)
            entries[current] = line.strip()
        elif current and line.startswith(" " * 10):
            entries[current] += " " + line.strip()
        else:
            current = None
    return entries


def test_help_keeps_every_flag(help_text):
    assert set(_entries(help_text)) == VD_FLAGS | OUR_FLAGS | {"--help"}


def test_help_says_each_default_once(help_text):
    assert "(default: None)" not in help_text and "(default: )" not in help_text
    for flag, entry in _entries(help_text).items():
        said = entry.count("default") + entry.count("preset:")
        assert said <= 1, entry
        if flag.lstrip("-") in cmb.PRESET_FLAGS:
            assert "(preset: " in entry, entry


def test_help_shows_the_presets_values(help_text):
    entries = _entries(help_text)
    assert "(preset: V&D minute-based 60, seed 2)" in entries["--batch_size"]
    assert "(preset: V&D minute-based unit, seed seed_counts)" in entries["--class_weights"]
    assert "(preset: V&D minute-based 0.4, seed 0.5, transformer 0.6)" in entries["--dropout"]
    assert "(preset: 0.01, every preset)" in entries["--LR"]
    assert "(default: 0)" in entries["--seed"] and "(default: Model)" in entries["--tflog"]


def test_help_marks_vds_flags(help_text):
    for flag, entry in _entries(help_text).items():
        assert ("(V&D)" in entry) == (flag in VD_FLAGS), entry


def test_help_groups_flags_by_task(help_text):
    groups = re.findall(r"^(\S[^\n]*):$", help_text, re.M)
    assert "original flags" not in groups and "extensions" not in groups
    titles = " | ".join(groups)
    for task in ("mode", "data", "model", "optimisation", "outputs", "resume"):
        assert task in titles, titles
    at = {name: help_text.index(name) for name in ("\ndata:", "\nmodel:", "\noptimisation:", "\noutputs:")}
    assert at["\ndata:"] < help_text.index("  --WindowSize") < at["\nmodel:"]
    assert at["\nmodel:"] < help_text.index("  --dropout") < at["\noptimisation:"]
    assert at["\noptimisation:"] < help_text.index("  --LR") < at["\noutputs:"]


def test_help_lists_the_architectures_by_preset(help_text):
    tail = help_text[help_text.index("architectures (") :]
    for name in [*registry.list_architectures(include_aliases=True), *registry.ENSEMBLES]:
        assert re.search(rf"\b{name}\b", tail), name
    vd_line = tail[tail.index("V&D minute-based:") : tail.index("seed:")]
    assert "AudioVideoArchi5" in vd_line and "GMU" not in vd_line
