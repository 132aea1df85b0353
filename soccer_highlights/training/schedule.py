"""The schedule: plateau counter, LR cut, restore of the best epoch, early stop. Pure, so tests script it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from soccer_highlights.common.errors import UserError

SCHEDULES = ("original", "since_best")


SELECTION_METRICS = ("ap", "tf1_pr_auc")


@dataclass(frozen=True)
class SchedulePolicy:
    """`original` (V&D): one counter of epochs without gain, reset by a gain and by each LR cut; when it
    passes `patience_lr` and LR > `min_lr`: LR / 10, best weights and optimizer state restored; when it
    passes `patience_stop` (so counted from the last cut): stop. `since_best` (this port's earlier rule):
    LR / 10 and best weights only restored `patience_lr` epochs after the best epoch or the last cut; stop
    `patience_stop` epochs after the best epoch. Both stop at `max_epoch`."""

    kind: str = "original"
    patience_lr: int = 10
    patience_stop: int = 30
    min_lr: float = 1e-4
    max_epoch: int = 200
    restore_optimizer: bool = True  # `original` cuts restore the Adam state too (V&D); False: weights only (seed)

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:  # the one check of --schedule
            raise UserError(f"unknown --schedule {self.kind!r}; valid: {', '.join(SCHEDULES)}")


@dataclass(frozen=True)
class ScheduleState:
    """Where the schedule stands after `epoch` epochs (JSON-able: the resume state stores it)."""

    lr: float
    epoch: int = 0
    best_score: float = -1.0
    best_epoch: int = 0
    plateau: int = 0  # epochs without gain since the best epoch or the last LR cut
    since_best: int = 0  # epochs since the best epoch


@dataclass(frozen=True)
class ScheduleStep:
    """What to do after one epoch: the new state, whether it was the best so far, whether to cut the LR
    (restoring the best weights, and the optimizer state when `restore_optimizer`), why to stop (or None)."""

    state: ScheduleState
    improved: bool
    cut_lr: bool
    restore_optimizer: bool
    stop: str | None


def schedule_step(state: ScheduleState, score: float, policy: SchedulePolicy) -> ScheduleStep:
    """The decision after one more epoch whose validation score is `score` (higher is better)."""
    epoch = state.epoch + 1
    improved = score > state.best_score
    if improved:
        new = replace(state, epoch=epoch, best_score=score, best_epoch=epoch, plateau=0, since_best=0)
    else:
        new = replace(state, epoch=epoch, plateau=state.plateau + 1, since_best=state.since_best + 1)
    original = policy.kind == "original"
    due = new.plateau > policy.patience_lr if original else new.plateau >= policy.patience_lr
    cut = due and new.lr > policy.min_lr
    if cut:
        new = replace(new, lr=new.lr / 10, plateau=0)
    if original:
        plateau_stop = not cut and new.plateau > policy.patience_stop
    else:
        plateau_stop = new.since_best >= policy.patience_stop
    stop = "plateau" if plateau_stop else "max_epoch" if epoch >= policy.max_epoch else None
    return ScheduleStep(new, improved, cut, cut and original and policy.restore_optimizer, stop)


def selection_score(metrics: dict[str, Any], selection: str) -> float:
    """The validation number the schedule maximises: `ap` (mAP, classes with a positive) or `tf1_pr_auc`."""
    value = metrics[{"ap": "mAP", "tf1_pr_auc": "mAP_tf1_pr_auc"}[selection]]
    return float(value) if value is not None else 0.0
