"""Local maxima of score curves: the one peak picker that spotting's NMS and the highlight decoder share.

A token is a peak when its score clears the threshold, is strictly greater than every score of the `before`
previous tokens and at least every score of the `after` next ones (of its class), so on a plateau only the
first token is kept. Beyond the curve's ends nothing competes. When few tokens clear the threshold (the
decoder's usual case) only those are examined: their windows are rows of a strided view of the padded
curve, so the work is (candidates x window), not (tokens x window); when most do (spotting's threshold 0)
one vectorised pass over all windows is faster.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

DENSE_FRACTION = 0.75  # above this share of candidates, one pass over all windows beats picking candidates


def peak_mask(
    scores: np.ndarray, before: int, after: int, threshold: float, *, at_threshold: bool = False
) -> np.ndarray:
    """Boolean array shaped like `scores` ([T] or [T, C], time on axis 0): True at its peaks.

    A candidate needs score > threshold, or score >= threshold with `at_threshold`.
    """
    b, a = max(0, int(before)), max(0, int(after))
    x = np.ascontiguousarray(np.moveaxis(scores, 0, -1))  # time last: each window in contiguous memory
    above = x >= threshold if at_threshold else x > threshold
    if not above.any():  # no candidate (an empty curve included)
        return np.zeros(scores.shape, bool)
    windows = sliding_window_view(
        np.pad(x, ((0, 0),) * (x.ndim - 1) + ((b, a),), constant_values=-np.inf), b + a + 1, axis=-1
    )  # [..., T, b + a + 1], centre at b
    if np.count_nonzero(above) > DENSE_FRACTION * above.size:
        return np.moveaxis(above & _is_peak(x, windows, b), -1, 0)
    cand = np.nonzero(above)
    mask = np.zeros(x.shape, bool)
    mask[cand] = _is_peak(x[cand], windows[cand], b)
    return np.moveaxis(mask, -1, 0)


def peak_indices(
    scores: np.ndarray, before: int, after: int, threshold: float, *, at_threshold: bool = False
) -> tuple[np.ndarray, ...]:
    """`np.nonzero` of `peak_mask`."""
    return np.nonzero(peak_mask(scores, before, after, threshold, at_threshold=at_threshold))


def _is_peak(centre: np.ndarray, windows: np.ndarray, b: int) -> np.ndarray:
    return (centre > windows[..., :b].max(axis=-1, initial=-np.inf)) & (
        centre >= windows[..., b + 1 :].max(axis=-1, initial=-np.inf)
    )
