"""Spotting: window views and edge padding, batched scoring equals one window at a time, NMS, JSON format."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from soccer_highlights.common.errors import UserError
from soccer_highlights.spotting.spots import (
    Scorer,
    Spot,
    complete_windows,
    local_maxima,
    nms_spots,
    token_rows,
    window_range,
    window_view,
    write_results_spotting,
)

N, D = 8, 4


def _probe_model() -> keras.Model:
    """Logits = video[first, 0], video[centre, 0], video[last, 0], audio[centre, 1]: shows what each window holds."""
    v = keras.Input((N, D), name="video")
    a = keras.Input((N, D), name="audio")
    out = keras.layers.Lambda(
        lambda t: keras.ops.stack([t[0][:, 0, 0], t[0][:, N // 2, 0], t[0][:, -1, 0], t[1][:, N // 2, 1]], axis=-1)
    )([v, a])
    return keras.Model({"video": v, "audio": a}, out)


def _dense_model() -> keras.Model:
    v = keras.Input((N, D), name="video")
    a = keras.Input((N, D), name="audio")
    x = keras.layers.Concatenate()([keras.layers.Flatten()(v), keras.layers.Flatten()(a)])
    return keras.Model({"video": v, "audio": a}, keras.layers.Dense(3, kernel_initializer="glorot_normal")(x))


def _logit(p):
    return np.log(p / (1 - p))


def test_window_view_is_a_view_with_edge_padding():
    x = np.arange(10 * D, dtype=np.float32).reshape(10, D)
    w = window_view(x, N, stride=2)
    assert w.shape == (5, N, D) and not w.flags.owndata
    # window centred on token 0: four copies of row 0 in front, rows 0..3 after
    np.testing.assert_array_equal(w[0, :, 0], x[[0, 0, 0, 0, 0, 1, 2, 3], 0])
    # window centred on token 8: rows 4..9 then the last row repeated
    np.testing.assert_array_equal(w[4, :, 0], x[[4, 5, 6, 7, 8, 9, 9, 9], 0])
    assert w[2, N // 2, 0] == x[4, 0]


@pytest.mark.parametrize("stride", [1, 2, 3])
def test_scores_shapes_and_padding(stride):
    t = 23
    video = np.zeros((t, D), np.float32)
    video[:, 0] = np.arange(t) * 0.01
    audio = np.zeros((t + 3, D), np.float32)  # longer stream: truncated to the shorter
    audio[:t, 1] = -np.arange(t) * 0.01
    probs = Scorer(_probe_model(), batch_size=4).score_half(video, audio, stride=stride, progress=False)
    assert probs.shape == (t, 4) and probs.dtype == np.float32
    logits = _logit(probs.astype(np.float64))
    centres = (np.arange(t) // stride) * stride  # each token carries the score of its window's centre
    np.testing.assert_allclose(logits[:, 0], np.maximum(centres - N // 2, 0) * 0.01, atol=1e-5)
    np.testing.assert_allclose(logits[:, 1], centres * 0.01, atol=1e-5)
    np.testing.assert_allclose(logits[:, 2], np.minimum(centres + N - 1 - N // 2, t - 1) * 0.01, atol=1e-5)
    np.testing.assert_allclose(logits[:, 3], -centres * 0.01, atol=1e-5)


def test_batched_equals_one_window_at_a_time():
    keras.utils.set_random_seed(1)
    model = _dense_model()
    rng = np.random.default_rng(0)
    video, audio = rng.normal(size=(2, 37, D)).astype(np.float32)
    batched = Scorer(model, batch_size=256).score_half(video, audio, progress=False)
    single = Scorer(model, batch_size=1).score_half(video, audio, progress=False)
    vw, aw = window_view(video, N), window_view(audio, N)
    loop = np.stack(
        [
            keras.ops.convert_to_numpy(keras.ops.sigmoid(model({"video": vw[i : i + 1], "audio": aw[i : i + 1]})))[0]
            for i in range(len(vw))
        ]
    )
    np.testing.assert_allclose(batched, single, atol=1e-6)
    np.testing.assert_allclose(batched[::2], loop, atol=1e-6)
    np.testing.assert_array_equal(batched[0:36:2], batched[1:37:2])  # both tokens of a second share a window


def test_window_range_is_the_slice_of_window_view_on_the_tokens_so_far():
    x = np.arange(23 * D, dtype=np.float32).reshape(23, D)
    for stride in (1, 2, 3):
        whole = window_view(x, N, stride)
        for first, last in ((0, 1), (2, 5), (0, len(whole)), (len(whole) - 2, len(whole)), (4, 4)):
            np.testing.assert_array_equal(window_range(x, first, last, N, stride), whole[first:last])
        # the windows whose tokens all exist among the first t are those of the whole half
        for t in range(1, 24):
            done = complete_windows(t, N, stride)
            assert done == sum(1 for m in range(len(whole)) if m * stride + N - 1 - N // 2 < t)
            np.testing.assert_array_equal(window_range(x[:t], 0, done, N, stride), whole[:done])


@pytest.mark.parametrize("batch_size", [1, 3, 256])
def test_scores_of_windows_scored_as_tokens_come_are_exactly_score_half(batch_size):
    """The live order (each window once its last token exists, the last ones padded at the end) through the
    Scorer's one path gives score_half's windows: the probe model's scores are their inputs, bit for bit when
    every call holds one window (TensorFlow's kernels, the sigmoid's too, may round a row otherwise in a batch
    of another size: float noise)."""
    rng = np.random.default_rng(0)
    t, stride = 41, 2
    video, audio = rng.normal(size=(2, t, D)).astype(np.float32)
    scorer = Scorer(_probe_model(), batch_size=batch_size)
    parts, done, ready = [], 0, 0
    while ready < t:
        ready = min(t, ready + int(rng.integers(1, 6)))
        total = scorer.complete_windows(ready, stride)
        parts.append(scorer.score_range(video[:ready], audio[:ready], done, total, stride=stride))
        done = total
    parts.append(scorer.score_range(video, audio, done, stride=stride))  # the end: every window left
    live = token_rows(np.concatenate(parts), stride)[:t]
    offline = scorer.score_half(video, audio, stride=stride, progress=False)
    if batch_size == 1:
        np.testing.assert_array_equal(live, offline)
    else:
        np.testing.assert_allclose(live, offline, rtol=0, atol=1e-6)


def test_feature_width_mismatch_is_a_user_error():
    scorer = Scorer(_dense_model())
    with pytest.raises(UserError, match=r"game X: video features have shape \(5, 7\), the model expects \[T, 4\]"):
        scorer.score_half(np.zeros((5, 7), np.float32), np.zeros((5, D), np.float32), what="game X")


def test_local_maxima_window_threshold_and_ties():
    s = np.array([0.1, 0.9, 0.9, 0.2, 0.3, 0.35, 0.3, 0.0, 0.8, 0.1])[:, None]
    # plateau 0.9 at 1-2 keeps the earlier token; 0.35 at 5 is 3 tokens from 8 (0.8) -> suppressed with h=3
    assert np.nonzero(local_maxima(s, 3)[:, 0])[0].tolist() == [1, 8]
    assert np.nonzero(local_maxima(s, 2)[:, 0])[0].tolist() == [1, 5, 8]
    assert np.nonzero(local_maxima(s, 2, threshold=0.5)[:, 0])[0].tolist() == [1, 8]
    assert np.nonzero(local_maxima(s, 0, threshold=0.85)[:, 0])[0].tolist() == [1, 2]


def test_nms_spots_skip_background_and_use_seconds():
    scores = np.zeros((400, 3), np.float32)
    scores[:, 0] = 0.99  # background never becomes a spot
    scores[100:102, 1] = 0.7  # one second, two tokens
    scores[150, 1] = 0.6  # 25 s later: inside +-30 s of the stronger peak
    scores[250, 1] = 0.65  # 75 s later: its own spot
    scores[300, 2] = 0.4
    spots = nms_spots(scores, ["background", "kick", "goal"], half=2, window_sec=60, threshold=0.3)
    assert [(s.label, s.token, s.seconds, s.position_ms) for s in spots] == [
        ("kick", 100, 50.0, 50000),
        ("kick", 250, 125.0, 125000),
        ("goal", 300, 150.0, 150000),
    ]
    assert all(s.half == 2 for s in spots)


def test_results_spotting_json_format(tmp_path):
    spots = [Spot(2, 3001, 4, "goal", 0.25), Spot(1, 625, 1, "kick", 0.9375)]
    path = tmp_path / "g" / "results_spotting.json"
    write_results_spotting(path, "england_epl/2015-2016/a - b", spots, {1: "Corner", 4: "Goal"})
    data = json.loads(path.read_text())
    assert data == {
        "UrlLocal": "england_epl/2015-2016/a - b",
        "predictions": [
            {"gameTime": "1 - 05:12", "label": "Corner", "position": "312500", "half": "1", "confidence": "0.9375"},
            {"gameTime": "2 - 25:00", "label": "Goal", "position": "1500500", "half": "2", "confidence": "0.25"},
        ],
    }
