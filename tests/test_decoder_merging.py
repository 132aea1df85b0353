"""Decoder across classes: the seed's sorted, never-merged spans by default; an optional merge that keeps
every event and never outgrows its classes' maximum length unless asked."""

from __future__ import annotations

import numpy as np
import pytest

from soccer_highlights.common.constants import TOKENS_PER_SECOND
from soccer_highlights.common.errors import UserError
from soccer_highlights.highlights.decoder import ClassRule, DecoderConfig, Event, decode

NAMES = ["background", "kick", "subs", "card", "goal"]


def _curve(rng: np.random.Generator, seconds: int) -> np.ndarray:
    """[T, 5] smooth random bumps: many events, often close together across classes."""
    t = np.arange(int(seconds * TOKENS_PER_SECOND)) / TOKENS_PER_SECOND
    p = np.full((len(t), len(NAMES)), 0.02)
    for c in range(1, len(NAMES)):
        for centre in rng.uniform(0, seconds, size=rng.integers(3, 12)):
            p[:, c] = np.maximum(p[:, c], rng.uniform(0.5, 1.0) * np.exp(-0.5 * ((t - centre) / 3) ** 2))
    p[:, 0] = rng.uniform(0, 0.2, size=len(t))
    return p


def _max_length(cfg: DecoderConfig, span) -> float:
    return max(cfg.rule(label).max_length for label in span.labels)


@pytest.mark.parametrize("merge", [False, True], ids=["seed: no cross-class merge", "merge_classes"])
def test_no_span_outgrows_its_classes_max_length_on_random_curves(merge):
    rng = np.random.default_rng(0)
    cfg = DecoderConfig(merge_classes=merge)
    spans = []
    for _ in range(30):
        spans += decode(_curve(rng, 900), NAMES, 900.0, cfg, tokens_per_second=TOKENS_PER_SECOND)
    assert len(spans) > 100
    too_long = [s for s in spans if s.duration > _max_length(cfg, s) + 1e-9]
    assert not too_long, too_long[:3]
    if merge:
        assert any(len(s.labels) > 1 for s in spans), "some clips join several classes"


def test_merge_beyond_max_is_what_lets_a_clip_outgrow_it():
    rng = np.random.default_rng(1)
    cfg = DecoderConfig(merge_classes=True, merge_beyond_max=True)
    spans = [
        s for _ in range(10) for s in decode(_curve(rng, 900), NAMES, 900.0, cfg, tokens_per_second=TOKENS_PER_SECOND)
    ]
    assert any(s.duration > _max_length(cfg, s) for s in spans)


def _two_overlapping() -> np.ndarray:
    p = np.zeros((400, len(NAMES)))
    p[100, NAMES.index("kick")] = 0.7  # kick at 50 s: [40, 60]
    p[110, NAMES.index("card")] = 0.9  # card at 55 s: [45, 65]
    return p


RULE = ClassRule(before=10, after=10, threshold=0.5, min_peak_distance=5, merge_gap=0, min_length=0, max_length=30)


def test_by_default_overlapping_spans_of_two_classes_both_stay_sorted_by_start():
    spans = decode(
        _two_overlapping(), NAMES, 200.0, DecoderConfig(rules={}, default=RULE), tokens_per_second=TOKENS_PER_SECOND
    )
    assert [(s.start, s.end, s.label, s.events) for s in spans] == [(40, 60, "kick", ()), (45, 65, "card", ())]


def test_a_merged_clip_keeps_every_event():
    cfg = DecoderConfig(rules={}, default=RULE, merge_classes=True)
    (span,) = decode(_two_overlapping(), NAMES, 200.0, cfg, tokens_per_second=TOKENS_PER_SECOND)
    assert (span.start, span.end, span.label, span.labels) == (40, 65, "card", ("kick", "card"))
    assert span.events == (Event("kick", 50.0, 0.7), Event("card", 55.0, 0.9))
    narrow = DecoderConfig(rules={}, default=ClassRule(**{**RULE.__dict__, "max_length": 22}), merge_classes=True)
    assert len(decode(_two_overlapping(), NAMES, 200.0, narrow, tokens_per_second=TOKENS_PER_SECOND)) == 2, (
        "25 s > 22 s: not merged"
    )


def test_merge_switches_round_trip_and_are_checked(tmp_path):
    cfg = DecoderConfig(merge_classes=True, merge_beyond_max=True)
    cfg.to_json(tmp_path / "d.json")
    assert DecoderConfig.from_json(tmp_path / "d.json") == cfg
    with pytest.raises(UserError, match="merge_classes must be true or false"):
        DecoderConfig.from_dict({"merge_classes": 1})
