"""The shared peak picker against a plain per-token loop: both strategies (few / most tokens above the
threshold), both threshold comparisons, 1-D and [T, C] curves, ties and plateaus."""

from __future__ import annotations

import numpy as np
import pytest

from soccer_highlights.spotting.peaks import peak_indices, peak_mask


def loop_peaks(x: np.ndarray, before: int, after: int, threshold: float, at_threshold: bool) -> np.ndarray:
    mask = np.zeros(x.shape, bool)
    for t in range(len(x)):
        prev, nxt = x[max(0, t - before) : t], x[t + 1 : t + 1 + after]
        clears = x[t] >= threshold if at_threshold else x[t] > threshold
        mask[t] = clears and all(x[t] > prev) and all(x[t] >= nxt)
    return mask


@pytest.mark.parametrize("threshold", [0.0, 0.5, 0.9])  # 0.0: the one-pass path; 0.9: candidates only
@pytest.mark.parametrize("at_threshold", [False, True])
@pytest.mark.parametrize("reach", [(0, 0), (3, 3), (4, 3), (2, 0)])
def test_matches_a_per_token_loop(threshold, at_threshold, reach):
    rng = np.random.default_rng(1)
    curves = np.round(rng.random((200, 3)), 1)  # coarse values: many ties and plateaus, some exactly 0.5 / 0.9
    got = peak_mask(curves, *reach, threshold, at_threshold=at_threshold)
    want = np.stack([loop_peaks(c, *reach, threshold, at_threshold) for c in curves.T], axis=1)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(
        peak_indices(curves[:, 1], *reach, threshold, at_threshold=at_threshold)[0], np.flatnonzero(want[:, 1])
    )


def test_empty_and_flat_curves():
    assert peak_indices(np.zeros(0), 2, 2, 0.0)[0].size == 0
    assert peak_indices(np.full(6, 0.7), 2, 2, 0.5)[0].tolist() == [0]  # a plateau keeps its first token
