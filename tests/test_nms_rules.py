"""Spotting NMS: V&D's rule (default) and the symmetric one, on curves where they differ."""

import numpy as np
import pytest

from soccer_highlights.common.errors import UserError
from soccer_highlights.spotting.spots import nms_mask, nms_spots

CLASSES = ["background", "goal"]


def _vd_reference(per_second: np.ndarray, threshold: float) -> list[int]:
    """The rule as stated, one second at a time: > threshold, > the previous 30 s, >= the next 29 s, and
    never in the first or last 30 s of the half."""
    n, kept = len(per_second), []
    for t in range(n):
        if t <= 30 or t >= n - 30:
            continue
        v = per_second[t]
        if v > threshold and v > per_second[t - 30 : t].max() and v >= per_second[t + 1 : t + 30].max():
            kept.append(t)
    return kept


def test_vd_rule_spots_nothing_in_the_first_or_last_30_s():
    scores = np.full((600, 2), 0.1)  # 300 s at 2 tokens per second
    for second in (10, 150, 290):
        scores[2 * second : 2 * second + 2, 1] = 0.9
    vd = [s.seconds for s in nms_spots(scores, CLASSES, 1, threshold=0.0)]
    sym = [s.seconds for s in nms_spots(scores, CLASSES, 1, threshold=0.0, rule="symmetric")]
    assert vd == [150.0]
    assert sym == [10.0, 150.0, 290.0]


def test_vd_rule_window_is_30_s_before_and_29_s_after():
    scores = np.full((400, 2), 0.1)  # 200 s
    scores[2 * 60, 1] = scores[2 * 60 + 1, 1] = 0.8
    scores[2 * 89, 1] = scores[2 * 89 + 1, 1] = 0.8  # equal peak 29 s later: ties-or-beats the next 29 s
    scores[2 * 130, 1] = scores[2 * 130 + 1, 1] = 0.8  # 30 s later than the next one: ties it, still kept
    scores[2 * 160, 1] = scores[2 * 160 + 1, 1] = 0.8  # exactly 30 s after: not strictly above -> suppressed
    assert [s.seconds for s in nms_spots(scores, CLASSES, 1)] == [60.0, 130.0]
    assert [s.seconds for s in nms_spots(scores, CLASSES, 1, threshold=0.2, rule="symmetric")] == [60.0, 130.0]


@pytest.mark.parametrize("tokens_per_second", [1, 2])
def test_vd_rule_matches_the_per_second_statement_on_random_curves(tokens_per_second):
    rng = np.random.default_rng(tokens_per_second)
    for _ in range(20):
        per_second = np.round(rng.random(int(rng.integers(40, 300))), 1)  # rounding makes ties common
        threshold = float(rng.choice([0.0, 0.3, 0.5]))
        tokens = np.repeat(per_second, tokens_per_second)[:, None]
        kept = np.flatnonzero(nms_mask(tokens, tokens_per_second=tokens_per_second, threshold=threshold)[:, 0])
        assert (kept // tokens_per_second).tolist() == _vd_reference(per_second, threshold)
        assert (kept % tokens_per_second == 0).all(), "a second is spotted once, at its first token"


def test_unknown_rule_is_a_user_error():
    with pytest.raises(UserError, match="unknown NMS rule 'other'; valid: vd, symmetric"):
        nms_mask(np.zeros((10, 2)), rule="other")
