"""SoccerNet action-spotting average-mAP, computed as the official evaluator does (SoccerNet 0.2.0,
`SoccerNet.Evaluation.ActionSpotting`), on sparse event arrays instead of dense [14400, C] vectors.

Rules reproduced from the official package:
- each half is binned at `tokens_per_second` frames per second (the official `framerate`; frame =
  int(tokens_per_second * position_ms / 1000), capped at the last frame of a 2-hour half); ground truth falls back to
  the `gameTime` seconds without `position`, and takes its half from the first character of `gameTime`; a later entry
  in the same half, class and frame replaces an earlier one (predictions and ground truth alike); ground truth of
  halves other than 1 and 2 is ignored. Unlike the official code, a prediction of another half, with a confidence
  outside [0, 1] (NaN included) or with a label neither the class map nor SoccerNet knows is an error naming it, not
  silently dropped or scored.
- per class and tolerance delta (seconds; the full window, so +-delta/2): ground-truth events, in time order,
  each take the highest-scoring unused prediction within +-delta/2 frames (ties: the earlier frame).
- precision / recall at 200 thresholds in [0, 1], detections pooled over all halves; AP = 11-point
  interpolated; a class without ground truth or predictions has AP 0 and still counts in the mean.
- average-mAP = trapezoidal area under mAP(delta) / (number of deltas - 1); one delta: mAP itself.
- visibility variants: a detection counts for "visible" / "unshown" when the ground-truth event nearest to it
  (midpoint boundaries) in its half and class is visible / "not shown" (no event in the half: unshown);
  overall `a_mAP_unshown` is multiplied by 17/13 as the official code does (its v2 class count ratio).

Class maps: every label name maps to a class through `ClassMap.label_to_index`; labels of background (index 0)
or absent from the map are ignored. Several label names may share one class (e.g. `highlight`: kick = Penalty,
Corner, free kicks): their events and predictions are pooled into that class; two of them in the same half
and frame become one event, as two events of one label do in the official code.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from soccer_highlights import dataset
from soccer_highlights.common.atomic import read_json
from soccer_highlights.common.constants import LABEL_FILES, TOKENS_PER_SECOND
from soccer_highlights.common.errors import UserError

DELTAS: dict[str, np.ndarray] = {
    "loose": np.arange(12) * 5 + 5,
    "tight": np.arange(5) * 1 + 1,
    **{f"at{d}": np.array([d]) for d in range(1, 6)},
}
THRESHOLDS = np.linspace(0, 1, 200)
RECALL_LEVELS = np.arange(11) / 10
HALF_SECONDS = 120 * 60  # the official vectors hold two hours per half
PREDICTION_FILE = "results_spotting.json"


class HalfEvents(NamedTuple):
    """Events of one half, one per (class, frame): ground truth value +1 visible / -1 not shown, or a
    prediction's confidence."""

    frame: np.ndarray  # int64
    cls: np.ndarray  # int64, scored class index (0 = first class after background)
    value: np.ndarray  # float64

    @staticmethod
    def empty() -> HalfEvents:
        return HalfEvents(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))


def scored_classes(classes: Sequence[str], label_to_index: Mapping[str, int]) -> tuple[list[str], dict[str, int]]:
    """Class names without background and label -> scored class index (class index - 1; background dropped)."""
    return list(classes[1:]), {label: idx - 1 for label, idx in label_to_index.items() if idx > 0}


def _binned(
    half: list[int], frame: list[int], cls: list[int], value: list[float], tokens_per_second: float, keep_negative: bool
) -> tuple[HalfEvents, HalfEvents]:
    """Rows -> halves 1 and 2, frames capped, the last row of each (class, frame) kept."""
    h, f, c, v = (np.asarray(x) for x in (half, frame, cls, value))
    f = np.minimum(f.astype(np.int64), int(HALF_SECONDS * tokens_per_second) - 1)
    out = []
    for which in (1, 2):
        rows = np.flatnonzero(h == which)[::-1]  # reversed: np.unique keeps the first = the last written
        _, first = np.unique(np.stack([c[rows], f[rows]]), axis=1, return_index=True)
        rows = rows[first]
        if not keep_negative:
            rows = rows[v[rows] >= 0]
        out.append(HalfEvents(f[rows].astype(np.int64), c[rows].astype(np.int64), v[rows].astype(np.float64)))
    return out[0], out[1]


def _frame(position: Any, tokens_per_second: float) -> int:
    frame = int(tokens_per_second * (int(position) / 1000))
    if frame < 0:
        raise ValueError(f"negative position {position!r}")
    return frame


def _annotations(data: Any, key: str, source: str) -> list:
    items = data.get(key) if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise UserError(f"{source}: no '{key}' list")
    return items


def label_events(
    labels: Mapping[str, Any],
    label_to_class: Mapping[str, int],
    tokens_per_second: float = TOKENS_PER_SECOND,
    source: str = "labels",
) -> tuple[HalfEvents, HalfEvents]:
    """Ground truth of both halves from a Labels(-v2).json object; events of unknown labels or of other
    halves are reported in one warning line."""

    rows: tuple[list, list, list, list] = ([], [], [], [])
    ignored: Counter[str] = Counter()
    events = dataset.parse_labels(labels, source)
    for i, ev in enumerate(events):
        if ev.label not in label_to_class:
            if ev.label not in dataset.KNOWN_LABELS:
                ignored[f"unknown label {ev.label!r}"] += 1
            continue
        if ev.half not in (1, 2):
            ignored[f"half {ev.half}"] += 1
            continue
        try:
            frame = _frame(ev.position_ms, tokens_per_second)
        except ValueError as exc:
            raise UserError(f"{source}: annotation {i} is malformed ({exc})") from exc
        for col, x in zip(rows, (ev.half, frame, label_to_class[ev.label], 1.0 if ev.visible else -1.0), strict=True):
            col.append(x)
    dataset.report_ignored(source, len(events), ignored)
    return _binned(*rows, tokens_per_second=tokens_per_second, keep_negative=True)


def prediction_events(
    predictions: Mapping[str, Any],
    label_to_class: Mapping[str, int],
    tokens_per_second: float = TOKENS_PER_SECOND,
    source: str = "predictions",
) -> tuple[HalfEvents, HalfEvents]:
    """Predictions of both halves from a results_spotting.json object."""

    rows: tuple[list, list, list, list] = ([], [], [], [])
    for i, pred in enumerate(_annotations(predictions, "predictions", source)):
        try:
            label = pred["label"]
            row = (
                int(pred["half"]),
                _frame(pred["position"], tokens_per_second),
                label_to_class.get(label),
                float(pred["confidence"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"{source}: prediction {i} is malformed ({type(exc).__name__}: {exc})") from exc
        problem = (
            f"half {pred['half']!r} (1 or 2)"
            if row[0] not in (1, 2)
            else f"confidence {pred['confidence']!r} (a probability in [0, 1])"
            if not 0 <= row[3] <= 1
            else f"unknown label {label!r}"
            if row[2] is None and label not in dataset.KNOWN_LABELS
            else None
        )
        if problem:
            raise UserError(f"{source}: prediction {i} has {problem}")
        if row[2] is not None:
            for col, x in zip(rows, row, strict=True):
                col.append(x)
    return _binned(*rows, tokens_per_second=tokens_per_second, keep_negative=False)


# --------------------------------------------------------------------------------------------
# The metric


@dataclass
class SpottingScores:
    """average-mAP and the mAP(delta) curve behind it (per-class arrays follow `class_names`)."""

    metric: str
    deltas: list[float]
    class_names: list[str]
    a_mAP: float
    a_mAP_per_class: list[float]
    a_mAP_visible: float
    a_mAP_per_class_visible: list[float]
    a_mAP_unshown: float
    a_mAP_per_class_unshown: list[float]
    mAP_per_delta: list[float]
    mAP_per_class_per_delta: list[list[float]]
    n_events: list[int] = field(default_factory=list)
    n_predictions: list[int] = field(default_factory=list)
    n_games: int = 0

    def to_json(self) -> dict[str, Any]:
        return dict(vars(self))


class _ClassData(NamedTuple):
    """One class over all halves laid end to end (half k starts at frame k * stride)."""

    gt: np.ndarray  # sorted global frames
    gt_value: np.ndarray
    pred: np.ndarray  # sorted global frames
    score: np.ndarray
    closest: np.ndarray  # value of the nearest ground truth of each prediction (-1 if none in its half)


def _class_data(halves: Sequence[HalfEvents], c: int, stride: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(global frames sorted, values, half index) of class c."""
    frames, values, units = [], [], []
    for k, h in enumerate(halves):
        sel = h.cls == c
        frames.append(h.frame[sel] + k * stride)
        values.append(h.value[sel])
        units.append(np.full(int(sel.sum()), k))
    f, v, u = (np.concatenate(x) if x else np.zeros(0) for x in (frames, values, units))
    order = np.argsort(f, kind="stable")
    return f[order].astype(np.int64), v[order].astype(np.float64), u[order].astype(np.int64)


def _closest(
    gt: np.ndarray, gt_value: np.ndarray, gt_unit: np.ndarray, pred: np.ndarray, pred_unit: np.ndarray, stride: int
) -> np.ndarray:
    """Value of the ground truth owning each prediction's frame: event i owns the frames from the midpoint
    (floored) with its predecessor in the half (or the half's start) to the midpoint with its successor."""
    if len(gt) == 0:
        return np.full(len(pred), -1.0)
    first_in_half = np.concatenate([[True], gt_unit[1:] != gt_unit[:-1]])
    bounds = np.where(first_in_half, gt_unit * stride, (np.concatenate([[0], gt[:-1]]) + gt) // 2)
    owner = np.searchsorted(bounds, pred, side="right") - 1
    valid = (owner >= 0) & (gt_unit[np.maximum(owner, 0)] == pred_unit)
    return np.where(valid, gt_value[np.maximum(owner, 0)], -1.0)


def _prepare(
    targets: Sequence[HalfEvents], detections: Sequence[HalfEvents], num_classes: int, stride: int
) -> list[_ClassData]:
    out = []
    for c in range(num_classes):
        gt, gt_value, gt_unit = _class_data(targets, c, stride)
        pred, score, pred_unit = _class_data(detections, c, stride)
        out.append(_ClassData(gt, gt_value, pred, score, _closest(gt, gt_value, gt_unit, pred, pred_unit, stride)))
    return out


def match(gt: np.ndarray, pred: np.ndarray, score: np.ndarray, half_width: float) -> np.ndarray:
    """True-positive flag per prediction: ground truth in time order takes the best unused prediction
    within +-half_width frames (ties: the earlier). `gt`, `pred` sorted."""
    lo = np.searchsorted(pred, gt - half_width, side="left")
    hi = np.searchsorted(pred, gt + half_width, side="right")
    free = score.copy()
    tp = np.zeros(len(pred), bool)
    for g in np.flatnonzero(hi > lo):  # greedy and order-dependent: one step per event with candidates
        j = lo[g] + int(np.argmax(free[lo[g] : hi[g]]))
        if free[j] >= 0:
            tp[j] = True
            free[j] = -np.inf
    return tp


def average_precision(score: np.ndarray, tp: np.ndarray, n_gt: int) -> float:
    """11-point interpolated AP from precision/recall at the 200 official thresholds."""
    order = np.argsort(score, kind="stable")
    tp_above = np.concatenate([np.cumsum(tp[order][::-1])[::-1], [0]])  # TPs among scores[order][i:]
    first = np.searchsorted(score[order], THRESHOLDS, side="left")
    n_tp, n_det = tp_above[first].astype(np.float64), (len(score) - first).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.nan_to_num(n_tp / n_det)
        recall = np.nan_to_num(n_tp / n_gt)
    best = np.where(recall[None, :] >= RECALL_LEVELS[:, None], precision[None, :], 0.0).max(axis=1)
    return float(best.sum() / 11)


def _trapezoid(curve: np.ndarray) -> np.ndarray:
    """Official average over deltas (axis 0): trapezoids / (n - 1), or the value itself for one delta."""
    if len(curve) == 1:
        return curve[0]
    return ((curve[:-1] + curve[1:]) / 2).sum(axis=0) / (len(curve) - 1)


def average_mAP(
    targets: Sequence[HalfEvents],
    detections: Sequence[HalfEvents],
    class_names: Sequence[str],
    metric: str = "loose",
    tokens_per_second: float = TOKENS_PER_SECOND,
    deltas: Sequence[float] | np.ndarray | None = None,
) -> SpottingScores:
    """average-mAP of detections against targets (same length: one entry per half, paired)."""
    if len(targets) != len(detections):
        raise ValueError("targets and detections must list the same halves")
    if deltas is None:
        if metric not in DELTAS:
            raise UserError(f"unknown metric {metric!r}; valid: {', '.join(DELTAS)}")
        deltas = DELTAS[metric]
    tolerances = np.asarray(deltas, dtype=np.float64)
    stride = int(HALF_SECONDS * tokens_per_second + tolerances.max() * tokens_per_second) + 1
    classes = _prepare(targets, detections, len(class_names), stride)
    ap = np.zeros((3, len(tolerances), len(classes)))  # all / visible / unshown
    for c, d in enumerate(classes):
        visible, unshown = d.closest > 0.5, d.closest < -0.5
        n_vis, n_uns = int((d.gt_value > 0).sum()), int((d.gt_value < 0).sum())
        for k, delta in enumerate(tolerances * tokens_per_second):
            tp = match(d.gt, d.pred, d.score, np.floor(delta / 2))
            ap[0, k, c] = average_precision(d.score, tp, n_vis + n_uns)
            ap[1, k, c] = average_precision(d.score[visible], tp[visible], n_vis)
            ap[2, k, c] = average_precision(d.score[unshown], tp[unshown], n_uns)
    per_class = [_trapezoid(a) for a in ap]
    overall = [float(_trapezoid(a.mean(axis=1))) for a in ap]
    if len(tolerances) > 1:
        overall[2] *= 17 / 13
    return SpottingScores(
        metric=metric,
        deltas=tolerances.tolist(),
        class_names=list(class_names),
        a_mAP=overall[0],
        a_mAP_per_class=per_class[0].tolist(),
        a_mAP_visible=overall[1],
        a_mAP_per_class_visible=per_class[1].tolist(),
        a_mAP_unshown=overall[2],
        a_mAP_per_class_unshown=per_class[2].tolist(),
        mAP_per_delta=ap[0].mean(axis=1).tolist(),
        mAP_per_class_per_delta=ap[0].tolist(),
        n_events=[len(d.gt) for d in classes],
        n_predictions=[len(d.pred) for d in classes],
        n_games=len(targets) // 2,
    )


# --------------------------------------------------------------------------------------------
# Files


def label_file(game_dir: Path, prefer: str | None = None) -> Path:
    """The game's label file, `prefer`'s version first (`dataset.labels_path`)."""
    found = dataset.labels_path(game_dir, prefer)
    if found is None:
        raise UserError(f"{game_dir}: no {' or '.join(LABEL_FILES)}")
    return found


def evaluate_games(
    labels_root: str | os.PathLike,
    predictions_root: str | os.PathLike,
    games: Sequence[str],
    classes: Sequence[str],
    label_to_index: Mapping[str, int],
    metric: str = "loose",
    tokens_per_second: float = TOKENS_PER_SECOND,
    prediction_file: str = PREDICTION_FILE,
    allow_missing: bool = False,
) -> SpottingScores:
    """Score `predictions_root/<game>/results_spotting.json` against `labels_root/<game>/Labels(-v2).json`.

    `classes` / `label_to_index` as in `dataset.ClassMap`. A game without a prediction file is a UserError
    (before any scoring: a wrong --predictions root would score 0.00); with `allow_missing` it counts as a game
    with no predictions (its events are all misses) and is reported on stderr.
    """
    if metric not in DELTAS:
        raise UserError(f"unknown metric {metric!r}; valid: {', '.join(DELTAS)}")
    if not games:
        raise UserError("no games to evaluate")
    absent = [str(Path(predictions_root) / g / prediction_file) for g in games]
    absent = [p for p in absent if not Path(p).is_file()]
    if absent and not allow_missing:
        raise UserError(
            f"{absent[0]}: no such file; {len(absent)} of {len(games)} games of the list have no predictions "
            "(is --predictions the root the games' folders are in? --allow_missing scores them as no predictions)"
        )
    names, label_to_class = scored_classes(classes, label_to_index)
    targets: list[HalfEvents] = []
    detections: list[HalfEvents] = []
    missing = []
    prefer = dataset.labels_version(label_to_index)  # a v1 class map reads Labels.json where a game has both
    for game in games:
        path = label_file(Path(labels_root) / game, prefer)
        targets.extend(label_events(read_json(path), label_to_class, tokens_per_second, str(path)))
        pred_path = Path(predictions_root) / game / prediction_file
        if pred_path.is_file():
            detections.extend(
                prediction_events(read_json(pred_path), label_to_class, tokens_per_second, str(pred_path))
            )
        else:
            missing.append(str(pred_path))
            detections.extend((HalfEvents.empty(), HalfEvents.empty()))
    if missing:
        print(
            f"warning: {len(missing)} of {len(games)} games have no {prediction_file} (scored as no predictions),"
            f" e.g. {missing[0]}",
            file=sys.stderr,
        )
    return average_mAP(targets, detections, names, metric=metric, tokens_per_second=tokens_per_second)
