"""The training schedule (plateau counter, LR cut, restore of the best epoch, early stop) driven by scripted
validation scores, the restore of the optimizer state, V&D's validation metric, and the refusal to write
over an earlier run. Training runs are tiny: 2-minute halves, 10 s windows, VLAD_k 4."""

import json
from pathlib import Path

import numpy as np
import pytest

from soccer_highlights import synthetic, training
from soccer_highlights.commands import train as cmb
from soccer_highlights.common.errors import UserError
from soccer_highlights.training import loop as training_loop
from soccer_highlights.training import metrics as training_metrics
from soccer_highlights.training.schedule import SchedulePolicy, ScheduleState, schedule_step
from tests.argv import train_argv


def drive(scores, **policy):
    """Feed `scores` (one per epoch) to the schedule from LR 0.01; the steps taken until it stops."""
    policy = SchedulePolicy(**{"max_epoch": 1000, **policy})
    state, steps = ScheduleState(lr=0.01), []
    for score in scores:
        step = schedule_step(state, score, policy)
        steps.append(step)
        state = step.state
        if step.stop:
            break
    return steps


def cuts(steps):
    return [s.state.epoch for s in steps if s.cut_lr]


def test_original_counter_restarts_at_each_cut_and_stops_after_the_last():
    steps = drive([0.5] + [0.4] * 100)
    # the counter passes 10 at epoch 12 and again 11 epochs after that cut; LR 1e-4 is not above min_lr,
    # so the counter then runs on until it passes 30: epoch 23 + 31
    assert cuts(steps) == [12, 23]
    assert [s.state.lr for s in steps if s.cut_lr] == pytest.approx([1e-3, 1e-4])
    assert all(s.restore_optimizer for s in steps if s.cut_lr)
    assert steps[-1].state.epoch == 54 and steps[-1].stop == "plateau"
    assert steps[-1].state.best_epoch == 1 and steps[-1].state.plateau == 31


def test_since_best_is_the_earlier_rule():
    steps = drive([0.5] + [0.4] * 100, kind="since_best")
    assert cuts(steps) == [11, 21]
    assert not any(s.restore_optimizer for s in steps)
    assert steps[-1].state.epoch == 31 and steps[-1].stop == "plateau"


def test_a_gain_resets_the_counter_and_moves_the_best_epoch():
    scores = [0.1, 0.2] + [0.2] * 10 + [0.3] + [0.25] * 11 + [0.1] * 100
    steps = drive(scores)
    # epochs 3..12 tie the best (no gain): the counter reaches 10 without passing it; epoch 13 gains
    assert not any(s.cut_lr for s in steps[:13])
    assert [s.state.epoch for s in steps if s.improved] == [1, 2, 13]
    assert cuts(steps)[0] == 24 and steps[23].state.best_epoch == 13
    # after the gain the same cut/stop pattern follows from epoch 13
    assert cuts(steps) == [24, 35] and steps[-1].state.epoch == 66


def test_no_cut_at_or_below_min_lr_and_max_epoch_stops():
    steps = drive([0.5] + [0.4] * 100, min_lr=0.01)
    assert cuts(steps) == [] and steps[-1].state.epoch == 32 and steps[-1].stop == "plateau"
    steps = drive([0.5] + [0.4] * 100, max_epoch=7)
    assert steps[-1].state.epoch == 7 and steps[-1].stop == "max_epoch"
    steps = drive([0.5] + [0.4] * 100, patience_lr=1, patience_stop=2, max_epoch=3)
    assert cuts(steps) == [3] and steps[-1].stop == "max_epoch"


def test_unknown_schedule_is_a_user_error():
    with pytest.raises(UserError, match="unknown --schedule 'weekly'"):
        schedule_step(ScheduleState(lr=0.1), 0.5, SchedulePolicy(kind="weekly"))


def test_the_command_refuses_an_unknown_schedule_before_any_work(tmp_path):
    from soccer_highlights.commands import train as cmb

    lists = [a for flag in ("--training", "--validation", "--testing") for a in (flag, str(tmp_path / "none.npy"))]
    argv = [*lists, "--architecture", "concat", "--tflog", str(tmp_path / "Model"), "--schedule", "weekly"]
    with pytest.raises(UserError, match="unknown --schedule 'weekly'; valid: original, since_best"):
        cmb.main(argv)
    assert not (tmp_path / "Model").exists()


def test_tf1_pr_auc_equals_tensorflow_v1_metric():
    import tensorflow as tf

    rng = np.random.default_rng(0)
    labels = (rng.random((300, 3)) < [0.1, 0.4, 0.0]).astype(np.float32)
    probs = np.clip(labels * 0.3 + rng.random((300, 3)) * 0.7, 0, 1).astype(np.float32)
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
        aucs = [tf.compat.v1.metrics.auc(labels[:, c], probs[:, c], num_thresholds=200, curve="PR") for c in range(3)]
        sess.run(tf.compat.v1.local_variables_initializer())
        sess.run([update for _, update in aucs])
        expected = sess.run([value for value, _ in aucs])
    ours = [training_metrics.tf1_pr_auc(probs[:, c], labels[:, c]) for c in range(3)]
    np.testing.assert_allclose(ours, expected, atol=2e-5)
    assert ours[2] == 0.0  # no positive: V&D counted the class as 0 in its mean
    logits = np.log(probs / (1 - probs + 1e-7) + 1e-7)
    metrics = training_metrics.evaluate_scores(
        np.c_[np.zeros(300), logits], np.c_[np.zeros(300), labels], ["background", "a", "b", "c"]
    )
    assert metrics["AP"]["c"] is None and metrics["mAP_tf1_pr_auc"] == pytest.approx(np.mean(ours), abs=1e-4)


def test_adam_epsilon_is_tf1s():
    cfg = training.TrainConfig(architecture="video", vlad_k=4)
    _, _, optimizer = training_loop._build(cfg, (20, 512), None)
    assert optimizer.epsilon == 1e-8


# --------------------------------------------------------------------------------------------
# End to end


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn")
    return synthetic.generate_dataset(
        root, n_games=4, half_minutes=2.0, seed=1, splits=(2, 1, 1), event_rate=3.0, progress=False
    )


def args_for(data, tflog, *extra):
    return train_argv(data.lists, tflog, *extra, class_map="highlight", LR=0.001, cache_dir=tflog.parent / "cache")


def _npz(path):
    with np.load(path) as f:
        return {k: f[k] for k in f.files if k.startswith("optimizer_")}


@pytest.mark.slow
@pytest.mark.parametrize("schedule", ["original", "since_best"])
def test_plateau_restores_best_weights_and_optimizer_state(data, tmp_path, monkeypatch, schedule):
    scores = iter([0.5, 0.1, 0.1])
    monkeypatch.setattr(training_loop, "selection_score", lambda metrics, selection: next(scores))
    tflog = tmp_path / "Model"
    # original: the counter passes 1 at epoch 3; since_best: it reaches 1 at epoch 2
    assert (
        cmb.main(
            args_for(
                data, tflog, "--max_epoch", "3", "--patience_lr", "1", "--schedule", schedule, "--outputPrefix", "p"
            )
        )
        == 0
    )
    state = json.loads((tflog / "p_resume" / "state.json").read_text())
    assert state["schedule"]["best_epoch"] == 1 and state["stopped"] == "max_epoch"
    resume = tflog / "p_resume"
    best, last = _npz(resume / state["best_optimizer"]), _npz(resume / state["optimizer"])
    differ = [k for k in best if not np.array_equal(best[k], last[k])]
    import keras

    from soccer_highlights import archis

    archis.register_layers()  # keras.models.load_model reads our layers

    model = keras.models.load_model(tflog / "p_best.keras")
    model.load_weights(resume / state["weights"])
    epoch3 = model.get_weights()
    model.load_weights(resume / state["best_weights"])
    if schedule == "original":
        # the cut at epoch 3 put back epoch 1's weights and every optimizer variable but the learning rate
        assert state["schedule"]["lr"] == pytest.approx(1e-4)
        assert len(differ) == 1 and best[differ[0]] == pytest.approx(1e-3) and last[differ[0]] == pytest.approx(1e-4)
        for a, b in zip(epoch3, model.get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)
    else:
        # the cut at epoch 2 (LR 1e-4 is then the floor) restored the weights only: the step count ran on
        assert state["schedule"]["lr"] == pytest.approx(1e-4)
        assert int(last["optimizer_0"]) > int(best["optimizer_0"]) and len(differ) > 1


@pytest.mark.slow
def test_rerun_refused_unless_overwrite_which_clears_the_old_events(data, tmp_path):
    tflog = tmp_path / "Model"
    argv = args_for(data, tflog, "--max_epoch", "1", "--outputPrefix", "o")
    assert cmb.main(argv) == 0
    best = (tflog / "o_best.keras").read_bytes()
    with pytest.raises(
        UserError,
        match=r"o_best.keras: an earlier run wrote o_best.keras, o_summary.json, "
        r"o_resume, o_training, o_validation, o_testing in .*--overwrite",
    ) as info:
        cmb.main(argv)
    assert "\n" not in str(info.value)
    assert (tflog / "o_best.keras").read_bytes() == best
    with pytest.raises(UserError, match="give one of them"):
        cmb.main([*argv, "--resume", "--overwrite"])
    assert cmb.main([*argv, "--overwrite"]) == 0
    for split in ("training", "validation", "testing"):
        assert len(list(Path(tflog / f"o_{split}").glob("events.out.tfevents.*"))) == 1, split
    # --resume of a finished run continues it (nothing to train) instead of refusing
    assert cmb.main([*argv, "--resume"]) == 0
    assert json.loads((tflog / "o_summary.json").read_text())["epochs"] == 1
