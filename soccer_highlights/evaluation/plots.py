"""Plots: per-class score timeline with chosen spans and ground truth; mAP against tolerance.

Figures are drawn on matplotlib's Agg canvas without pyplot (no global backend, no GUI) and written
atomically, so a PNG appears only when complete.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from soccer_highlights.common.atomic import atomic_path
from soccer_highlights.common.constants import BACKGROUND
from soccer_highlights.common.timefmt import clock


def _colors(n: int) -> list:
    """Distinct colours for n classes (tab10, or tab20 beyond ten)."""
    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _save(fig: Figure, path: str | os.PathLike) -> None:
    FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)


def _clock(seconds: float, _pos: Any = None) -> str:
    return clock(round(seconds))


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def plot_timeline(
    path: str | os.PathLike,
    probs: np.ndarray,
    class_names: Sequence[str],
    tokens_per_second: float,
    spans: Iterable[Any],
    ground_truth: Iterable[tuple[float, str]] | None = None,
    title: str = "",
) -> None:
    """One row per class (background drawn faintly under each): score curve, its spans shaded in colour (other
    classes' spans in light grey, so clips merged into another class's span still show), its ground-truth
    events marked. `spans`: objects with start, end, label (decoder Spans);
    `ground_truth`: (time in seconds, class name)."""
    probs = np.asarray(probs)
    if probs.ndim != 2 or probs.shape[1] != len(class_names):
        raise ValueError(f"probabilities {probs.shape} do not match {len(class_names)} classes")
    names = [n for n in class_names if n != BACKGROUND] or list(class_names)
    t = np.arange(len(probs)) / tokens_per_second
    spans, truth = list(spans), list(ground_truth or [])
    fig = Figure(figsize=(14, 1.2 + 1.3 * len(names)), layout="constrained")
    axes = fig.subplots(len(names), 1, sharex=True, squeeze=False)[:, 0]
    for ax, name, color in zip(axes, names, _colors(len(names)), strict=True):
        if BACKGROUND in class_names and name != BACKGROUND:
            ax.plot(t, probs[:, list(class_names).index(BACKGROUND)], color="0.8", lw=0.6)
        ax.plot(t, probs[:, list(class_names).index(name)], color=color, lw=0.8)
        for s in spans:  # every clip of the reel, in its own class's colour on its own row
            ax.axvspan(
                s.start, s.end, color=color if s.label == name else "0.5", alpha=0.25 if s.label == name else 0.08, lw=0
            )
        times = [x for x, label in truth if label == name]
        if times:  # (an empty unclipped line would break the layout)
            ax.plot(times, np.full(len(times), 1.02), "v", color="black", ms=6, clip_on=False)
        n_spans = sum(s.label == name for s in spans)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel(name, rotation=0, ha="right", va="center")
        ax.text(
            1.002,
            0.5,
            f"{_count(n_spans, 'span')}\n{_count(len(times), 'event')}",
            transform=ax.transAxes,
            va="center",
            fontsize=8,
        )
        ax.grid(axis="x", alpha=0.3)
    axes[-1].set_xlim(0, max(t[-1] if len(t) else 0, max((s.end for s in spans), default=0), 1))
    axes[-1].xaxis.set_major_formatter(FuncFormatter(_clock))
    axes[-1].set_xlabel("match time (min:s)")
    fig.suptitle(title or "class scores, chosen spans (shaded) and ground truth (v)")
    _save(fig, path)


def plot_map_vs_tolerance(path: str | os.PathLike, scores: Any, title: str = "") -> None:
    """mAP against the tolerance delta: the mean (thick) and each class; `scores` is a metrics.SpottingScores."""
    deltas = np.asarray(scores.deltas)
    per_class = np.asarray(scores.mAP_per_class_per_delta) * 100
    fig = Figure(figsize=(10, 5), layout="constrained")
    ax = fig.subplots()
    for c, (name, color) in enumerate(zip(scores.class_names, _colors(len(scores.class_names)), strict=True)):
        ax.plot(
            deltas,
            per_class[:, c],
            "o-",
            ms=3,
            lw=1,
            color=color,
            alpha=0.8,
            label=f"{name} ({scores.a_mAP_per_class[c] * 100:.1f})",
        )
    ax.plot(
        deltas,
        np.asarray(scores.mAP_per_delta) * 100,
        "o-",
        color="black",
        lw=2.5,
        label=f"mean ({scores.a_mAP * 100:.1f})",
    )
    ax.set_xlabel("tolerance delta (s)")
    ax.set_ylabel("mAP (%)")
    ax.set_ylim(0, 100)
    ax.set_xticks(deltas)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), title="class (average-mAP)", title_fontsize=8)
    ax.set_title(title or f"{scores.metric} average-mAP {scores.a_mAP * 100:.2f} over {scores.n_games} games")
    _save(fig, path)
