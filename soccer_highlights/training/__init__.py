"""Training, prediction and ensembles over window caches (`ClassificationMinuteBased.py` is the command).

Modules, in the order a run meets them: `presets` (the originals' recipes, one per original), `config` (what the
run is told), `windows` (windows, labels, the window cache), `slurm` (the tasks of an srun step made workers),
`cluster` (strategy and chief/worker role), `memory` (the memory plan), `step` (micro-batched optimiser steps),
`schedule` (plateau schedule, pure), `checkpoints` (resume state, best epoch, outputs), `metrics` (window metrics,
TensorBoard), `loop` (setup, one epoch, finish), `ensemble` (prediction mode, V&D's ensembles).
"""

from __future__ import annotations

import math
from typing import Any

from soccer_highlights.common.errors import UserError
from soccer_highlights.training.config import PREDICT_OUTPUTS, TrainConfig
from soccer_highlights.training.schedule import SELECTION_METRICS

__all__ = ["PREDICT_OUTPUTS", "TrainConfig", "run"]


def run(cfg: TrainConfig) -> Any:
    """Dispatch on `cfg.mode`."""
    from soccer_highlights.training.ensemble import ensemble, predict  # deferred: loads TensorFlow (start-up)
    from soccer_highlights.training.loop import train  # deferred: loads TensorFlow (start-up)

    modes = {"train": train, "predict": predict, "ensemble": ensemble}
    if cfg.mode not in modes:
        raise UserError(f"unknown --mode {cfg.mode!r}; valid: {', '.join(modes)}")
    if not math.isfinite(cfg.lr) or cfg.lr <= 0:
        raise UserError(f"--LR must be positive, got {cfg.lr}")
    cfg.schedule_policy  # noqa: B018 - checks --schedule before any work
    if cfg.selection_metric not in SELECTION_METRICS:
        raise UserError(f"unknown --selection_metric {cfg.selection_metric!r}; valid: {', '.join(SELECTION_METRICS)}")
    return modes[cfg.mode](cfg)
