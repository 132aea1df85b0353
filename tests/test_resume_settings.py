"""A resumed run shares every choice that changes what it trains (issue 28): batch-norm constants and statistics at
evaluation, the L2 floor, the loss reduction, the class weights, and how windows are labelled. A different one
refuses the resume, naming it; a state saved before they were recorded (version 2) is refused."""

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


def _saved(tmp_path, cfg: TrainConfig) -> Checkpointer:
    ckpt = Checkpointer(tmp_path / "r_resume")
    ckpt.dir.mkdir()
    state = LoopState(schedule=ScheduleState(lr=cfg.lr, epoch=2), settings=model_settings(cfg), weights="e.h5")
    write_json(ckpt.state_path, state.to_json())
    return ckpt


def _cfg(tmp_path, architecture="AudioVideoArchi5") -> TrainConfig:
    return TrainConfig(architecture=architecture, tflog=str(tmp_path), output_prefix="r", resume=True)


CHANGES = [
    ("bn_eval", lambda c: replace(c, bn_eval="population")),
    ("l2_floor", lambda c: replace(c, l2_floor="norm" if c.l2_floor == "squared" else "squared")),
    ("loss_reduction", lambda c: replace(c, loss_reduction="mean_classes")),
    ("class_weights", lambda c: replace(c, class_weighting="seed_counts")),
    ("batch_norm", lambda c: replace(c, batch_norm="pytorch")),
    ("head_init", lambda c: replace(c, head_init="torch")),
    ("pooling_rule", lambda c: replace(c, pooling_rule="network")),
    ("labels", lambda c: replace(c, data=replace(c.data, labels="v1" if c.data.labels == "v2" else "v2"))),
    ("event_time", lambda c: replace(c, data=replace(c.data, event_time="position"))),
    ("background_label", lambda c: replace(c, data=replace(c.data, background="original"))),
    ("label_index", lambda c: replace(c, data=replace(c.data, label_index="floor"))),
]


@pytest.mark.parametrize(("name", "change"), CHANGES, ids=[n for n, _ in CHANGES])
def test_a_resumed_run_refuses_another_choice(tmp_path, name, change):
    cfg = _cfg(tmp_path)
    ckpt = _saved(tmp_path, cfg)
    state = training_loop._saved_state(cfg, ckpt)  # the same choices: resumed
    assert state is not None and state.settings == model_settings(cfg) and state.schedule.epoch == 2
    other = change(cfg)
    assert model_settings(other)[name] != model_settings(cfg)[name]
    with pytest.raises(UserError, match=rf"used other settings \({name}\)"):
        training_loop._saved_state(other, ckpt)


def test_an_unset_choice_is_recorded_as_the_architectures():
    """None (the architecture's) and the architecture's value named are the same run; the seed's GMU records
    PyTorch's batch-norm at running averages, F.normalize's floor; V&D's concat TF1's with batch statistics."""
    seed = model_settings(TrainConfig(architecture="gmu", batch_norm=None, bn_eval=None, l2_floor=None))
    assert (seed["batch_norm"], seed["bn_eval"], seed["l2_floor"]) == ("pytorch", "moving", "norm")
    vd = model_settings(TrainConfig(architecture="concat", batch_norm=None, bn_eval=None, l2_floor=None))
    assert (vd["batch_norm"], vd["bn_eval"], vd["l2_floor"]) == ("tf1_slim", "batch", "squared")


def test_a_state_saved_before_the_choices_were_recorded_is_refused(tmp_path):
    cfg = _cfg(tmp_path)
    ckpt = _saved(tmp_path, cfg)
    data = {**LoopState.from_json(json.loads(ckpt.state_path.read_text()), ckpt.state_path).to_json(), "version": 2}
    write_json(ckpt.state_path, data)
    assert STATE_VERSION == 3
    with pytest.raises(UserError, match="resume state of another version"):
        training_loop._saved_state(cfg, ckpt)
