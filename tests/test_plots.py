"""Plots: PNGs are written atomically and actually show the spans, ground truth and curves given."""

from __future__ import annotations

import matplotlib.image as mpimg
import numpy as np
import pytest

from soccer_highlights.common.errors import UserError
from soccer_highlights.evaluation.metrics import HalfEvents, average_mAP
from soccer_highlights.evaluation.plots import plot_map_vs_tolerance, plot_timeline
from soccer_highlights.highlights.decoder import Span

NAMES = ["background", "kick", "subs", "card", "goal"]


def _probs(seconds: int = 600) -> np.ndarray:
    rng = np.random.default_rng(0)
    p = rng.random((seconds * 2, len(NAMES))) * 0.2
    p[400:410, 4] = 0.9
    return p


def _pixels(path) -> np.ndarray:
    return mpimg.imread(path)


def test_timeline_draws_spans_and_ground_truth(tmp_path):
    p = _probs()
    spans = [Span(190.0, 235.0, "goal", 0.9, 200.0), Span(400.0, 425.0, "kick", 0.7, 414.0)]
    plot_timeline(tmp_path / "bare.png", p, NAMES, 2.0, [])
    plot_timeline(tmp_path / "spans.png", p, NAMES, 2.0, spans)
    plot_timeline(tmp_path / "full.png", p, NAMES, 2.0, spans, ground_truth=[(200.0, "goal"), (414.0, "kick")])
    bare, with_spans, full = (_pixels(tmp_path / f"{n}.png") for n in ("bare", "spans", "full"))
    assert bare.shape == with_spans.shape == full.shape and bare.shape[1] == 1400
    assert np.abs(bare - with_spans).sum() > 1000  # shaded spans
    assert np.abs(with_spans - full).sum() > 10  # ground-truth markers
    assert sorted(x.name for x in tmp_path.iterdir()) == ["bare.png", "full.png", "spans.png"]


def test_timeline_rejects_mismatched_classes_without_writing(tmp_path):
    with pytest.raises(ValueError, match="do not match"):
        plot_timeline(tmp_path / "t.png", _probs()[:, :4], NAMES, 2.0, [])
    assert list(tmp_path.iterdir()) == []


def test_map_vs_tolerance_plot(tmp_path):
    gt = HalfEvents(np.array([10, 100]), np.array([0, 1]), np.array([1.0, 1.0]))
    det = HalfEvents(np.array([12, 100]), np.array([0, 1]), np.array([0.9, 0.8]))
    scores = average_mAP([gt], [det], ["kick", "goal"], metric="loose")
    plot_map_vs_tolerance(tmp_path / "a" / "map.png", scores)
    worse = average_mAP([gt], [HalfEvents.empty()], ["kick", "goal"], metric="loose")
    plot_map_vs_tolerance(tmp_path / "a" / "zero.png", worse)
    assert np.abs(_pixels(tmp_path / "a" / "map.png") - _pixels(tmp_path / "a" / "zero.png")).sum() > 1000


def test_unwritable_folder_is_a_user_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(UserError, match="cannot write here"):
        plot_timeline(blocker / "t.png", _probs(), NAMES, 2.0, [])
