"""The epoch loop's state (`checkpoints.LoopState`): its state.json form, and resuming a state saved before the
command filled --dropout from the preset."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from soccer_highlights.common.atomic import write_json
from soccer_highlights.common.errors import UserError
from soccer_highlights.training import TrainConfig
from soccer_highlights.training import loop as training_loop
from soccer_highlights.training.checkpoints import STATE_VERSION, Checkpointer, LoopState, model_settings
from soccer_highlights.training.schedule import ScheduleState

# The keys of state.json as the loop wrote them when its state was a dict (tests and tools read them).
STATE_KEYS = {
    "schedule",
    "history",
    "finished_training",
    "stopped",
    "settings",
    "best_valid",
    "version",
    "weights",
    "optimizer",
    "best_weights",
    "best_optimizer",
}


def _state() -> LoopState:
    return LoopState(
        schedule=ScheduleState(lr=0.001, epoch=3, best_score=0.5, best_epoch=2, plateau=1, since_best=1),
        settings={"architecture": "concat", "dropout": 0.4},
        history=[{"epoch": 1, "lr": 0.01}],
        best_valid={"mAP": 0.5, "AP": {"goal": 0.5}},
        weights="epoch_0003.weights.h5",
        optimizer="epoch_0003.state.npz",
        best_weights="best_0002.weights.h5",
        best_optimizer="best_0002.state.npz",
    )


def test_state_json_keeps_its_keys_and_reads_back(tmp_path):
    data = json.loads(json.dumps(_state().to_json()))
    assert set(data) == STATE_KEYS and data["version"] == STATE_VERSION
    assert data["schedule"] == {
        "lr": 0.001,
        "epoch": 3,
        "best_score": 0.5,
        "best_epoch": 2,
        "plateau": 1,
        "since_best": 1,
    }
    assert LoopState.from_json(data, tmp_path / "state.json") == _state()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"version": 1}, "resume state of another version"),
        ({"schedule": {"epoch": 3}}, "resume state unreadable"),
        ({"settings": None, "schedule": None}, "resume state unreadable"),
    ],
)
def test_a_state_of_another_version_or_malformed_is_a_user_error(tmp_path, change, message):
    data = {**_state().to_json(), **change}
    with pytest.raises(UserError, match=message):
        LoopState.from_json(data, tmp_path / "state.json")


def test_restore_refuses_a_state_without_checkpoint_files(tmp_path):
    with pytest.raises(UserError, match="names no checkpoint files"):
        Checkpointer(tmp_path).restore(None, None, replace(_state(), best_weights=None))


def test_a_state_saved_with_dropout_none_resumes_at_the_architectures_rate(tmp_path):
    cfg = TrainConfig(architecture="AudioVideoArchi5", tflog=str(tmp_path), output_prefix="r", resume=True)
    ckpt = Checkpointer(tmp_path / "r_resume")
    ckpt.dir.mkdir()
    legacy = replace(_state(), settings={**model_settings(cfg), "dropout": None})  # what --dropout unset recorded
    write_json(ckpt.state_path, legacy.to_json())
    state = training_loop._saved_state(cfg, ckpt)
    assert state is not None and state.settings == model_settings(cfg) and state.settings["dropout"] == 0.4
    with pytest.raises(UserError, match=r"used other settings \(dropout\)"):
        training_loop._saved_state(replace(cfg, dropout=0.1), ckpt)
