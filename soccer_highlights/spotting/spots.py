"""Spotting: a window classifier slid over a whole half -> per-token class probabilities -> NMS spots.

One window is centred on every `stride`-th token (default 2 = one per second at 2 features/s), the half
padded at both ends by repeating its first / last feature (V&D). Windows are strided views of the padded
half (no per-window Python loop), copied one large batch at a time into a compiled model call. Each
window's probabilities fill the `stride` tokens it stands for. One method scores windows,
`Scorer.score_range`: a whole half offline (`score_half`), and a live stream's windows as their last token
comes (`live.runner`). Spots are per-class local maxima above a threshold, written as SoccerNet
`results_spotting.json`. Two NMS rules (`NMS_RULES`):

- `vd` (default, V&D's `compute_mAP.py`): a second is kept if its score is above the threshold, strictly
  above every score of the previous window/2 (30 s) and at least every score of the next window/2 - 1
  (29 s); nothing is spotted in the first or last window/2 of a half.
- `symmetric`: the maximum within +-window/2, earliest token on ties, up to the edges of the half
  (the common simplification; it can spot events in the first and last 30 s).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from tqdm import tqdm

from soccer_highlights import (
    archis,  # light: its names load on first use
    dataset,
)
from soccer_highlights.common.atomic import write_json
from soccer_highlights.common.cli import NMS_RULES, check_nms
from soccer_highlights.common.constants import BACKGROUND, TOKENS_PER_SECOND
from soccer_highlights.common.errors import UserError
from soccer_highlights.common.timefmt import game_time
from soccer_highlights.spotting.peaks import peak_mask

if TYPE_CHECKING:
    import keras

    from soccer_highlights.common.modelspec import ModelSpec
    from soccer_highlights.dataset import ClassMap


@dataclass(frozen=True)
class Spot:
    """One detected action: class index and name, token index in its half, probability."""

    half: int
    token: int
    class_index: int
    label: str
    confidence: float
    tokens_per_second: float = TOKENS_PER_SECOND

    @property
    def seconds(self) -> float:
        return self.token / self.tokens_per_second

    @property
    def position_ms(self) -> int:
        return round(self.token * 1000 / self.tokens_per_second)


def pad_edges(features: np.ndarray, window_frames: int) -> np.ndarray:
    """The half with `window_frames // 2` copies of its first row in front and the rest of the copies of its
    last row behind, so the window centred on token t is padded[t : t + window_frames]."""
    left = window_frames // 2
    return _padded(features, -left, len(features) + window_frames - 1 - left)


def _padded(features: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Rows `lo` .. `hi - 1` of `features` extended at both ends: a row before 0 is the first row, one from
    len(features) on the last (float32)."""
    t = len(features)
    front, back = max(0, -lo), max(0, hi - t)
    middle = features[max(0, lo) : min(t, hi)]
    return np.concatenate(
        [np.repeat(features[:1], front, axis=0), middle, np.repeat(features[-1:], back, axis=0)]
    ).astype(np.float32, copy=False)


def window_count(tokens: int, stride: int = 2) -> int:
    """The windows of a half of `tokens` tokens: one centred on every `stride`-th token, the last one included."""
    return -(-tokens // stride)


def complete_windows(tokens: int, window_frames: int, stride: int = 2) -> int:
    """The windows (in order from the first) whose tokens all exist among the first `tokens` of a half: the
    window centred on token c needs tokens up to c + window_frames - 1 - window_frames // 2 (those before 0 are
    the edge padding, the same whatever comes later)."""
    right = window_frames - 1 - window_frames // 2
    return max(0, (tokens - 1 - right) // stride + 1)


def available_memory() -> int:
    """Bytes of memory this machine can give now (MemAvailable; all physical memory where it is not known)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_scoring_memory(tokens: int, window_frames: int, feature_dim: int, batch_size: int, what: str) -> None:
    """UserError (naming `what`) before any allocation when scoring a half would need more memory than the
    machine has free: both streams padded by a window, and a batch of windows of both streams copied for the
    model, with as much again for its activations."""
    needed = 4 * feature_dim * 2 * (tokens + window_frames + 2 * min(batch_size, tokens + 1) * window_frames)
    free = available_memory()
    if needed > free:
        raise UserError(
            f"{what}: scoring windows of {window_frames} tokens of {feature_dim} features needs about "
            f"{needed / 2**30:.1f} GiB, more than the {free / 2**30:.1f} GiB free on this machine "
            "(is the model's window_seconds right?)"
        )


def window_range(features: np.ndarray, first: int, last: int, window_frames: int, stride: int = 2) -> np.ndarray:
    """Read-only view [last - first, window_frames, D] of windows `first` .. `last - 1` of the edge-padded half.

    Window m is centred on token m*stride and covers tokens [m*stride - window_frames//2, ... + window_frames);
    a token before 0 is the first row, one from T = len(features) on the last (the half's edges, or the end of
    the tokens so far). Only the rows these windows cover are copied, with their padding.
    """
    if features.ndim != 2 or len(features) == 0:
        raise ValueError(f"expected features [T>0, D], got {features.shape}")
    if stride < 1 or window_frames < 1:
        raise ValueError("stride and window_frames must be >= 1")
    if not 0 <= first <= last:
        raise ValueError(f"expected 0 <= first <= last, got windows {first} .. {last}")
    if first == last:
        return np.zeros((0, window_frames, features.shape[1]), np.float32)
    lo = first * stride - window_frames // 2  # the first token of window `first`
    padded = _padded(features, lo, (last - 1 - first) * stride + window_frames + lo)
    windows = sliding_window_view(padded, window_frames, axis=0)  # [rows, D, N]
    return windows[::stride].transpose(0, 2, 1)


def window_view(features: np.ndarray, window_frames: int, stride: int = 2) -> np.ndarray:
    """Read-only view [M, window_frames, D] of the windows centred on tokens 0, stride, 2*stride, ...

    Window m covers tokens [m*stride - window_frames//2, ... + window_frames) of the edge-padded half.
    """
    if stride < 1:
        raise ValueError("stride and window_frames must be >= 1")
    return window_range(features, 0, window_count(len(features), stride), window_frames, stride)


class Scorer:
    """Runs a window model (inputs {"video","audio"} [B, N, D] -> logits [B, C]) over whole halves.

    The model runs through `archis.predict_function` (compiled once, no retracing across batches or
    halves); probabilities are sigmoid(logits) in float32 whatever the compute dtype.
    """

    def __init__(self, model: keras.Model, *, batch_size: int = 256, jit_compile: bool = False):
        from soccer_highlights.archis.predict import predict_function, set_predictor  # deferred: loads TensorFlow

        self.model = model
        self.batch_size = int(batch_size)
        if self.batch_size < 1:
            raise UserError(f"--windows_per_call must be >= 1, got {batch_size}")
        shape = tuple(model.inputs[0].shape)
        self.window_frames, self.feature_dim = int(shape[1]), int(shape[2])
        self.num_classes = int(model.outputs[0].shape[-1])
        self._fn = predict_function(model, sigmoid=True, jit_compile=jit_compile)
        # batch-norm with batch statistics (V&D's): those of the whole half (score_half); a range of a half (live
        # mode) normalises with the moving averages, the half's statistics being unknown until its end
        self._set = set_predictor(model, sigmoid=True, jit_compile=jit_compile)

    def check_features(self, video: np.ndarray, audio: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
        """Both streams [T, D] with the model's D; truncated to the shorter T. UserError naming `what`."""
        for name, x in (("video", video), ("audio", audio)):
            if x.ndim != 2 or x.shape[1] != self.feature_dim:
                raise UserError(
                    f"{what}: {name} features have shape {tuple(x.shape)}, the model expects [T, {self.feature_dim}]"
                )
            if len(x) == 0:
                raise UserError(f"{what}: {name} features are empty")
        t = min(len(video), len(audio))
        return video[:t], audio[:t]

    def score_windows(
        self,
        video_windows: np.ndarray,
        audio_windows: np.ndarray,
        *,
        progress: bool = True,
        desc: str = "windows",
        whole_half: bool = False,
    ) -> np.ndarray:
        """Probabilities [M, C] for window views [M, N, D], `batch_size` windows per model call. `whole_half`: the
        windows are a whole half (batch-norm evaluated `batch` then normalises with their moments; otherwise with
        its moving averages)."""
        m = len(video_windows)
        if self._set.per_set and whole_half:
            return self._set(
                lambda: (
                    (
                        np.ascontiguousarray(video_windows[i : i + self.batch_size]),
                        np.ascontiguousarray(audio_windows[i : i + self.batch_size]),
                    )
                    for i in range(0, m, self.batch_size)
                )
            )
        out = np.empty((m, self.num_classes), np.float32)
        fn = self._set.moving if self._set.per_set else self._fn
        with tqdm(total=m, desc=desc, unit="win", disable=not progress, leave=False) as bar:
            for i in range(0, m, self.batch_size):
                j = min(m, i + self.batch_size)
                out[i:j] = fn(
                    np.ascontiguousarray(video_windows[i:j]), np.ascontiguousarray(audio_windows[i:j])
                ).numpy()
                bar.update(j - i)
        return out

    def score_range(
        self,
        video: np.ndarray,
        audio: np.ndarray,
        first: int = 0,
        last: int | None = None,
        *,
        stride: int = 2,
        progress: bool = False,
        what: str = "windows",
    ) -> np.ndarray:
        """Probabilities [last - first, C] of windows `first` .. `last - 1` (window m centred on token m*stride) of
        the half whose tokens so far are `video` and `audio` (T = the shorter; edge padding as `window_range`);
        `last` None: up to the half's last window (`window_count(T)`, its end padded).

        The one way windows are scored: `score_half` scores all of a half's windows; a live run scores those whose
        tokens all exist (`complete_windows`) as the tokens come, then the rest once the stream has ended, and so
        gets exactly `score_half`'s windows (and its scores, but for a model whose batch-norm is evaluated with batch
        statistics: the whole half, `first` 0 and `last` None, normalises with its own moments; a range with the
        moving averages)."""
        if stride < 1:
            raise UserError(f"--stride must be >= 1 token, got {stride}")
        video, audio = self.check_features(video, audio, what)
        check_scoring_memory(len(video), self.window_frames, self.feature_dim, self.batch_size, what)
        whole_half = first == 0 and last is None
        last = window_count(len(video), stride) if last is None else last
        return self.score_windows(
            window_range(video, first, last, self.window_frames, stride),
            window_range(audio, first, last, self.window_frames, stride),
            progress=progress,
            desc=what,
            whole_half=whole_half,
        )

    def complete_windows(self, tokens: int, stride: int = 2) -> int:
        """The windows whose tokens all exist among the first `tokens` (see the module's `complete_windows`)."""
        return complete_windows(tokens, self.window_frames, stride)

    def score_half(
        self, video: np.ndarray, audio: np.ndarray, *, stride: int = 2, progress: bool = True, what: str = "half"
    ) -> np.ndarray:
        """Per-token probabilities [T, C] for one half (T = the shorter of the two streams): each window's
        probabilities fill the `stride` tokens from its centre (`token_rows`)."""
        probs = self.score_range(video, audio, stride=stride, progress=progress, what=what)
        return token_rows(probs, stride)[: min(len(video), len(audio))]


def token_rows(window_probs: np.ndarray, stride: int) -> np.ndarray:
    """Per-token rows [M * stride, C] of consecutive windows' probabilities [M, C]: each window's row for the
    `stride` tokens from its centre on."""
    return np.repeat(window_probs, stride, axis=0)


def with_compute_dtype(model: keras.Model, compute_dtype: str | None) -> keras.Model:
    """The same model computing in `compute_dtype` ("float32" / "bfloat16"): rebuilt by archis, weights copied."""

    spec = archis.model_info(model)
    if not compute_dtype or compute_dtype == spec.compute_dtype:
        return model
    twin = archis.build_model(spec, compute_dtype=compute_dtype)
    twin.set_weights(model.get_weights())
    return twin


def local_maxima(scores: np.ndarray, before: int, threshold: float = 0.0, after: int | None = None) -> np.ndarray:
    """Boolean [T, C]: score > threshold, > every score of the `before` previous tokens of its class and
    >= every score of the `after` next ones (default `before`). On a plateau only its first token is kept."""
    return peak_mask(scores, before, before if after is None else after, threshold)


def nms_mask(
    scores: np.ndarray,
    *,
    tokens_per_second: float = TOKENS_PER_SECOND,
    window_sec: float = 60.0,
    threshold: float = 0.0,
    rule: str = "vd",
) -> np.ndarray:
    """Boolean [T, C] of the tokens kept by the NMS `rule` (see the module docstring)."""
    if rule not in NMS_RULES:
        raise UserError(f"unknown NMS rule {rule!r}; valid: {', '.join(NMS_RULES)}")
    h = round(window_sec * tokens_per_second / 2)
    if rule == "symmetric":
        return local_maxima(scores, h, threshold)
    keep = local_maxima(scores, h, threshold, after=h - 1)  # the next 29 s: through the end of second t + 29
    seconds = np.arange(len(scores)) / tokens_per_second
    # V&D's edges on its per-second rows: a half of T tokens has int(T / tokens_per_second) of them
    edge = (seconds <= window_sec / 2) | (seconds >= len(scores) // tokens_per_second - window_sec / 2)
    keep[edge] = False
    return keep


def nms_spots(
    scores: np.ndarray,
    class_names: Sequence[str],
    half: int,
    *,
    tokens_per_second: float = TOKENS_PER_SECOND,
    window_sec: float = 60.0,
    threshold: float = 0.0,
    rule: str = "vd",
) -> list[Spot]:
    """Spots of one half from probabilities [T, C]: per-class NMS (`rule`), background skipped, time order."""
    check_nms(window_sec, threshold)
    keep = nms_mask(scores, tokens_per_second=tokens_per_second, window_sec=window_sec, threshold=threshold, rule=rule)
    skip = [i for i, n in enumerate(class_names) if n == BACKGROUND]
    keep[:, skip] = False
    tokens, classes = np.nonzero(keep)
    return [
        Spot(half, int(t), int(c), class_names[int(c)], float(scores[t, c]), tokens_per_second)
        for t, c in zip(tokens, classes, strict=True)
    ]


def match_class_map(class_names: Sequence[str]) -> ClassMap | None:
    """The built-in `dataset.ClassMap` (highlight, v1, v2) whose classes are `class_names`, else None."""

    for spec in ("highlight", "v1", "v2"):
        cmap = dataset.load_class_map(spec)
        if list(cmap.classes) == list(class_names):
            return cmap
    return None


def model_class_map(spec: ModelSpec, override: str | None = None, model: str = "the model") -> ClassMap | None:
    """The class map a model was trained with: the one its file records, else (older files) the built-in map
    with its classes, else None. `override` (a `--class_map` value) replaces it only if it agrees: same
    classes, and the same labels per class when the file records a map."""

    recorded = (
        dataset.class_map_from_json(spec.class_map, f"{model}: recorded class map")
        if spec.class_map
        else match_class_map(spec.class_names)
    )
    if override is None:
        return recorded
    cmap = dataset.load_class_map(override)
    if list(cmap.classes) != list(spec.class_names):
        raise UserError(
            f"--class_map {override}: classes {cmap.classes[1:]} differ from those of {model} "
            f"{list(spec.class_names[1:])}"
        )
    if spec.class_map and recorded is not None and cmap.label_to_index != recorded.label_to_index:
        raise UserError(
            f"--class_map {override}: maps SoccerNet labels to classes otherwise than the map "
            f"{recorded.name!r} recorded in {model}"
        )
    return cmap


def class_labels(cmap: ClassMap | None, class_names: Sequence[str]) -> dict[int, str]:
    """Class index -> the label written to results_spotting.json: the first SoccerNet label of the class in
    `cmap` (a class made of several labels is written as its first; `evaluate.py` maps it back to the class),
    the class name itself without a map."""
    return dict(cmap.index_to_label) if cmap is not None else dict(enumerate(class_names))


def results_spotting(game: str, spots: Iterable[Spot], index_to_label: Mapping[int, str]) -> dict:
    """The SoccerNet `results_spotting.json` object for one game."""
    ordered = sorted(spots, key=lambda s: (s.half, s.token, s.class_index))
    return {
        "UrlLocal": game,
        "predictions": [
            {
                "gameTime": game_time(s.half, s.seconds),
                "label": index_to_label.get(s.class_index, s.label),
                "position": str(s.position_ms),
                "half": str(s.half),
                "confidence": str(s.confidence),
            }
            for s in ordered
        ],
    }


def write_results_spotting(
    path: str | os.PathLike, game: str, spots: Iterable[Spot], index_to_label: Mapping[int, str]
) -> None:
    write_json(path, results_spotting(game, spots, index_to_label))
