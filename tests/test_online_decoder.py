"""The online decoder gives out exactly the offline decoder's spans, each as soon as it is final."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from soccer_highlights.highlights.decoder import ClassRule, DecoderConfig, decode
from soccer_highlights.highlights.online import OnlineDecoder

NAMES = ["background", "kick", "subs", "card", "goal"]
TPS = 2.0


def _curve(rng: np.random.Generator, tokens: int) -> np.ndarray:
    """Smooth random scores with bumps, some rounded so that plateaus and ties occur."""
    p = np.zeros((tokens, len(NAMES)))
    for c in range(len(NAMES)):
        noise = np.convolve(rng.random(tokens + 8), np.ones(9) / 9, mode="valid")[:tokens]
        bumps = np.zeros(tokens)
        for t in rng.integers(0, tokens, rng.integers(0, 8)):
            bumps += rng.random() * np.exp(-0.5 * ((np.arange(tokens) - t) / rng.uniform(1, 12)) ** 2)
        p[:, c] = np.clip(0.3 * noise + bumps, 0, 1)
    p[:, 0] *= rng.uniform(0, 0.6)
    return np.round(p, int(rng.integers(1, 4)))


def _rule(rng: np.random.Generator) -> ClassRule:
    min_length = float(rng.choice([0, 2, 6, 12]))
    return ClassRule(
        before=float(rng.choice([0, 3, 14, 30])),
        after=float(rng.choice([0, 5, 11, 55])),
        threshold=float(rng.uniform(0.05, 0.7)),
        min_peak_distance=float(rng.choice([0.5, 3, 10, 20])),
        nms_iou=float(rng.choice([0.2, 0.5, 1.0])),
        merge_gap=float(rng.choice([0, 2, 4, 9])),
        min_length=min_length,
        max_length=min_length + float(rng.choice([0, 10, 40])),
    )


def _config(rng: np.random.Generator) -> DecoderConfig:
    return DecoderConfig(
        rules={n: _rule(rng) for n in NAMES[1:] if rng.random() < 0.8},
        default=_rule(rng),
        min_gap_sec=float(rng.choice([0, 2, 7])),
        min_lead_sec=float(rng.choice([0, 5])),
        merge_classes=bool(rng.random() < 0.4),
        merge_beyond_max=bool(rng.random() < 0.3),
    )


def _stream(decoder: OnlineDecoder, probs: np.ndarray, rng: np.random.Generator) -> list[tuple[int, object]]:
    """Push `probs` in random chunks; (tokens known when given out, span) for every span, the end's last."""
    given, t = [], 0
    while t < len(probs):
        n = int(rng.integers(1, 12))
        given += [(t + n, s) for s in decoder.push(probs[t : t + n])]
        t += n
    return given + [(len(probs) + 1, s) for s in decoder.close(len(probs) / TPS)]


def _key(span) -> tuple:
    return (span.start, span.end, span.label)


@pytest.mark.parametrize("seed", range(60))
def test_online_spans_equal_offline_spans_on_random_curves(seed):
    rng = np.random.default_rng(seed)
    probs = _curve(rng, int(rng.integers(20, 900)))
    cfg = _config(rng)
    given = [s for _, s in _stream(OnlineDecoder(NAMES, cfg, TPS), probs, rng)]
    offline = decode(probs, NAMES, len(probs) / TPS, cfg, tokens_per_second=TPS)
    assert sorted(given, key=_key) == offline
    for label in NAMES[1:]:  # each class's spans come out in time order
        if not cfg.merge_classes:
            assert [s for s in given if s.label == label] == [s for s in offline if s.label == label]


def _lone_peak(seconds: float, at: float, value: float = 0.9) -> np.ndarray:
    p = np.zeros((int(seconds * TPS), len(NAMES)))
    p[int(at * TPS), NAMES.index("goal")] = value
    return p


RULE = ClassRule(before=10, after=20, threshold=0.5, min_peak_distance=5, merge_gap=4, min_length=0, max_length=60)


def test_a_lone_span_is_final_once_no_later_peak_could_reach_it():
    cfg = DecoderConfig(rules={}, default=RULE, min_gap_sec=0)
    given = _stream(OnlineDecoder(NAMES, cfg, TPS), _lone_peak(600, 100), np.random.default_rng(0))
    ((tokens, span),) = given
    assert (span.start, span.end) == (90, 120)
    # a later goal peak's span starts `before` earlier: it cannot reach this one once it is past end + gap + before
    assert (120 + 4 + 10) * TPS < tokens <= (120 + 4 + 10) * TPS + 12


def test_a_later_peak_that_merges_with_a_span_holds_it_back():
    p = _lone_peak(600, 100)
    p[int(130 * TPS), NAMES.index("goal")] = 0.8  # span [120, 150]: merged with [90, 120]
    cfg = DecoderConfig(rules={}, default=RULE, min_gap_sec=0)
    ((tokens, span),) = _stream(OnlineDecoder(NAMES, cfg, TPS), p, np.random.default_rng(1))
    assert (span.start, span.end, span.score) == (90, 150, 0.9)
    assert tokens > (150 + 4 + 10) * TPS


def test_the_budget_is_left_to_the_end_and_nms_iou_zero_classes_wait_for_it():
    p = _lone_peak(600, 100)
    p[int(400 * TPS), NAMES.index("goal")] = 0.95
    budget = DecoderConfig(rules={}, default=RULE, min_gap_sec=0, max_total_sec=30)
    given = _stream(OnlineDecoder(NAMES, budget, TPS), p, np.random.default_rng(2))
    assert [(s.start, s.end) for _, s in given] == [(90, 120), (390, 420)]  # every span, the budget unapplied
    assert [(s.start, s.end) for s in decode(p, NAMES, 600, budget)] == [(390, 420)]
    global_nms = dataclasses.replace(budget, default=dataclasses.replace(RULE, nms_iou=0.0), max_total_sec=None)
    given = _stream(OnlineDecoder(NAMES, global_nms, TPS), p, np.random.default_rng(3))
    assert [(t, s.start) for t, s in given] == [(len(p) + 1, 390)]
