"""Decoder: per-token class probabilities -> highlight spans (the seed's peak picker, made configurable).

Per class: suppress background (`p_c *= 1 - p_background`), keep peaks (`p >= threshold` and the maximum
within +-min_peak_distance, earliest token on plateaus), span = [t - before, t + after] clamped to the match,
NMS (temporal IoU >= nms_iou drops the weaker), merge spans at most `merge_gap` apart, then clamp the length
to [min_length, max_length]. Then, as the seed did, all spans are sorted by start time; spans of different
classes are never merged, so two classes' clips may overlap. With `merge_classes`, clips of any classes at
most `min_gap_sec` apart (or overlapping) are joined into one clip that names every event it holds, unless
the joined clip would outgrow the largest `max_length` of its classes (`merge_beyond_max` lifts that).
Last, the best clips are kept within `max_total_sec`.

Score placement: token t's score is that of the window centred on t (V&D's spotting), so a peak sits on
its event and `before` / `after` are seconds before / after the event. The seed scored each window on its
*first* token, a peak W/2 before the event for W-second windows; its offsets (goal 14 / 55, kick 60 / 11,
...) read as lead-in and aftermath around the event, which is what they give here unshifted (with the
seed's placement and 60 s windows a kick clip [t - 60, t + 11] would end 19 s before the kick).
`first_token_placement` rebuilds the seed's curve from ours, to reproduce its clips.

Unlike the seed, a span longer than `max_length` is shortened around its event: the lead-in is trimmed
first (down to `min_lead_sec`), then the aftermath's tail, so the peak always stays inside the span.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from soccer_highlights.common.atomic import write_json
from soccer_highlights.common.constants import TOKENS_PER_SECOND
from soccer_highlights.common.errors import UserError
from soccer_highlights.spotting.peaks import peak_indices


class Event(NamedTuple):
    """One detected event inside a clip: class name, peak time (s), (suppressed) peak probability."""

    label: str
    peak: float
    score: float


@dataclass(frozen=True)
class Span:
    """One highlight clip in seconds of the match; `score` is the (suppressed) peak probability at `peak`.

    `label`, `score`, `peak` are the clip's best event; `events` lists every event of a clip that joined
    spans of several classes (`merge_classes`), in time order, and is empty for a single-class clip.
    """

    start: float
    end: float
    label: str
    score: float
    peak: float
    events: tuple[Event, ...] = ()

    @property
    def duration(self) -> float:
        return self.end - self.start

    @property
    def labels(self) -> tuple[str, ...]:
        """Every class in the clip, in the order of their first event."""
        return tuple(dict.fromkeys(e.label for e in self.events)) or (self.label,)

    def all_events(self) -> tuple[Event, ...]:
        return self.events or (Event(self.label, self.peak, self.score),)


@dataclass(frozen=True)
class ClassRule:
    """Every per-class figure of the decoder, in seconds (threshold: probability)."""

    before: float
    after: float
    threshold: float = 0.5
    min_peak_distance: float = 15.0
    nms_iou: float = 0.5
    merge_gap: float = 4.0
    min_length: float = 4.0
    max_length: float = 25.0

    def check(self, name: str) -> None:
        values = dataclasses.asdict(self)
        if any(not np.isfinite(v) or v < 0 for v in values.values()):
            raise UserError(f"decoder rule {name!r}: every figure must be a finite number >= 0, got {values}")
        if self.min_length > self.max_length:
            raise UserError(f"decoder rule {name!r}: min_length {self.min_length} > max_length {self.max_length}")
        for key in ("threshold", "nms_iou"):
            if values[key] > 1:
                raise UserError(f"decoder rule {name!r}: {key} is a fraction in [0, 1], got {values[key]}")


def _seed_rules() -> dict[str, ClassRule]:
    """The seed's figures (inference.py of the KUBIG project)."""
    return {
        "goal": ClassRule(
            before=14, after=55, threshold=0.55, min_peak_distance=20, merge_gap=4, min_length=6, max_length=45
        ),
        "kick": ClassRule(
            before=60, after=11, threshold=0.50, min_peak_distance=10, merge_gap=3, min_length=4, max_length=25
        ),
        "card": ClassRule(
            before=20, after=60, threshold=0.50, min_peak_distance=15, merge_gap=4, min_length=4, max_length=25
        ),
        "subs": ClassRule(
            before=20, after=45, threshold=0.50, min_peak_distance=25, merge_gap=4, min_length=4, max_length=25
        ),
    }


@dataclass(frozen=True)
class DecoderConfig:
    """Decoder settings. `rules` per class name; classes not listed (e.g. the v2 labels) use `default`.

    `background`: name of the suppressing class (must be a class of the model). `merge_classes`: join clips
    of different classes at most `min_gap_sec` apart (the seed never did); a joined clip stays within the
    largest `max_length` of its classes unless `merge_beyond_max`. `max_total_sec`: total reel length
    budget (None = no budget). `min_lead_sec`: lead-in kept before the peak when a span must be shortened.
    """

    rules: Mapping[str, ClassRule] = field(default_factory=_seed_rules)
    default: ClassRule = ClassRule(before=10, after=15)  # fits its 25 s max_length
    background: str = "background"
    min_gap_sec: float = 2.0
    max_total_sec: float | None = None
    min_lead_sec: float = 5.0
    merge_classes: bool = False
    merge_beyond_max: bool = False
    named: frozenset[str] = field(default=frozenset(), compare=False, repr=False)  # classes the user gave rules

    def __post_init__(self) -> None:
        for name, rule in {**self.rules, "default": self.default}.items():
            rule.check(name)
        for name in ("min_gap_sec", "min_lead_sec"):
            if not (np.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise UserError(f"decoder {name} must be a finite number >= 0, got {getattr(self, name)}")
        for name in ("merge_classes", "merge_beyond_max"):
            if not isinstance(getattr(self, name), bool):
                raise UserError(f"decoder {name} must be true or false, got {getattr(self, name)!r}")
        if not isinstance(self.background, str):
            raise UserError(f"decoder background must be a class name, got {self.background!r}")
        if self.max_total_sec is not None and not self.max_total_sec > 0:
            raise UserError(f"decoder max_total_sec must be > 0 or null, got {self.max_total_sec}")

    def check_classes(self, class_names: Sequence[str], source: str = "decoder config") -> None:
        """UserError unless `background` and every class the user wrote a rule for are among `class_names`
        (a misspelt class would otherwise decode the background as a highlight, or keep default figures)."""
        names = list(class_names)
        if self.background not in names:
            raise UserError(f"{source}: background {self.background!r} is not a class of the model ({names})")
        unknown = sorted(self.named - set(names))
        if unknown:
            raise UserError(f"{source}: rules for {unknown}, which are not classes of the model ({names})")

    def rule(self, class_name: str) -> ClassRule:
        return self.rules.get(class_name, self.default)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rules": {k: dataclasses.asdict(v) for k, v in self.rules.items()},
            "default": dataclasses.asdict(self.default),
            "background": self.background,
            "min_gap_sec": self.min_gap_sec,
            "max_total_sec": self.max_total_sec,
            "min_lead_sec": self.min_lead_sec,
            "merge_classes": self.merge_classes,
            "merge_beyond_max": self.merge_beyond_max,
        }

    def to_json(self, path: str | os.PathLike) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "decoder config") -> DecoderConfig:
        """Overrides on top of the seed defaults: any subset of the keys of `to_dict()`.

        A class named in `rules` that has no default starts from `default` (after its own overrides).
        """
        if not isinstance(data, Mapping):
            raise UserError(f"{source}: expected a JSON object, got {type(data).__name__}")
        base = cls()
        top = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - top)
        if unknown:
            raise UserError(f"{source}: unknown key(s) {unknown}; valid: {sorted(top)}")
        default = _override(base.default, data.get("default", {}), f"{source}: default")
        rules = dict(base.rules)
        overrides = data.get("rules", {})
        if not isinstance(overrides, Mapping):
            raise UserError(f"{source}: 'rules' must be an object of class name -> figures")
        for name, figures in overrides.items():
            rules[name] = _override(rules.get(name, default), figures, f"{source}: rules.{name}")
        scalars = {
            k: data[k]
            for k in ("background", "min_gap_sec", "max_total_sec", "min_lead_sec", "merge_classes", "merge_beyond_max")
            if k in data
        }
        try:
            return cls(rules=rules, default=default, named=frozenset(overrides), **scalars)
        except TypeError as exc:
            raise UserError(f"{source}: {exc}") from exc

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> DecoderConfig:
        try:
            with open(path) as fh:
                data = json.load(fh)
        except FileNotFoundError as exc:
            raise UserError(f"{path}: no such decoder config file") from exc
        except (OSError, ValueError) as exc:
            raise UserError(f"{path}: not a readable JSON decoder config ({exc})") from exc
        return cls.from_dict(data, str(path))


def _override(rule: ClassRule, figures: Any, source: str) -> ClassRule:
    if not isinstance(figures, Mapping):
        raise UserError(f"{source}: expected an object of figures, got {figures!r}")
    valid = {f.name for f in dataclasses.fields(ClassRule)}
    unknown = sorted(set(figures) - valid)
    if unknown:
        raise UserError(f"{source}: unknown figure(s) {unknown}; valid: {sorted(valid)}")
    if any(isinstance(v, bool) or not isinstance(v, int | float) for v in figures.values()):
        raise UserError(f"{source}: figures must be numbers, got {dict(figures)}")
    return dataclasses.replace(rule, **{k: float(v) for k, v in figures.items()})


class Candidates(NamedTuple):
    """Spans as parallel arrays (class index per span), so every step is a vector operation."""

    start: np.ndarray
    end: np.ndarray
    score: np.ndarray
    peak: np.ndarray
    cls: np.ndarray

    def take(self, index: np.ndarray) -> Candidates:
        return Candidates._make(a[index] for a in self)

    @staticmethod
    def concat(parts: Sequence[Candidates]) -> Candidates:
        if not parts:
            return Candidates._make([*(np.zeros(0) for _ in range(4)), np.zeros(0, np.int64)])
        return Candidates._make(np.concatenate(arrays) for arrays in zip(*parts, strict=True))


def _peaks(p: np.ndarray, rule: ClassRule, tokens_per_second: float) -> np.ndarray:
    """Token indices with p >= threshold that are the maximum within +-min_peak_distance (earliest on ties)."""
    h = max(1, round(rule.min_peak_distance * tokens_per_second))
    return peak_indices(p, h, h, rule.threshold, at_threshold=True)[0]


def _temporal_nms(spans: Candidates, iou: float) -> Candidates:
    """Greedy NMS by score (earlier span first on equal scores): drop spans with tIoU >= iou with a kept one."""
    order = np.lexsort((spans.start, -spans.score))
    s, e = spans.start[order], spans.end[order]
    inter = np.clip(np.minimum(e[:, None], e[None, :]) - np.maximum(s[:, None], s[None, :]), 0, None)
    union = np.maximum(e[:, None], e[None, :]) - np.minimum(s[:, None], s[None, :])
    overlap = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0) >= iou
    dropped = np.zeros(len(order), bool)
    for i in range(len(order)):  # one pass per surviving span (a handful per class)
        if not dropped[i]:
            dropped[i + 1 :] |= overlap[i, i + 1 :]
    return spans.take(np.sort(order[~dropped]))


def _merge_close(spans: Candidates, gap: float) -> Candidates:
    """Join spans (in start order) separated by at most `gap` seconds; the joined span takes its best
    member's score, peak and class."""
    if len(spans.start) == 0:
        return spans
    spans = spans.take(np.argsort(spans.start, kind="stable"))
    reach = np.maximum.accumulate(spans.end)
    new_group = np.concatenate([[True], spans.start[1:] - reach[:-1] > gap])
    group = np.cumsum(new_group) - 1
    firsts = np.flatnonzero(new_group)
    best = np.lexsort((-spans.score, group))[firsts]  # highest score of each group (first on ties)
    return Candidates(
        spans.start[firsts],
        np.maximum.reduceat(spans.end, firsts),
        spans.score[best],
        spans.peak[best],
        spans.cls[best],
    )


def _clamp_length(spans: Candidates, rule: ClassRule, duration: float, min_lead: float) -> Candidates:
    """Lengths into [min_length, max_length] without leaving [0, duration] or losing the peak.

    Too long: trim the lead-in first (keeping at least `min_lead` s before the peak), then the tail.
    Too short: extend the aftermath first, then the lead-in.
    """
    s, e, pk = spans.start, spans.end, spans.peak
    max_len, min_len = rule.max_length, min(rule.min_length, duration)
    keep_lead = np.minimum(np.minimum(pk - s, min_lead), max_len)
    tail_fits = keep_lead + (e - pk) <= max_len
    long_start = np.where(tail_fits, e - max_len, pk - keep_lead)
    long_end = np.where(tail_fits, e, long_start + max_len)
    short_end = np.minimum(duration, s + min_len)
    short_start = np.maximum(0.0, short_end - min_len)
    length = e - s
    start = np.select([length > max_len, length < min_len], [long_start, short_start], s)
    end = np.select([length > max_len, length < min_len], [long_end, short_end], e)
    return spans._replace(start=start, end=end)


def _merge_classes(spans: Candidates, gap: float, max_len: np.ndarray | None) -> list[np.ndarray]:
    """Groups (indices into `spans`, in start order) of clips of any classes at most `gap` apart; a clip
    joins a group only while the group stays within the largest `max_len` of its members (None: no cap)."""
    order = np.lexsort((spans.end, spans.start))
    groups: list[list[int]] = []
    start = reach = cap = 0.0
    for i in order:
        s, e = spans.start[i], spans.end[i]
        new_cap = max(cap, max_len[i]) if max_len is not None else np.inf
        if groups and s - reach <= gap and max(reach, e) - start <= new_cap + 1e-9:
            groups[-1].append(i)
            reach, cap = max(reach, e), new_cap
        else:
            groups.append([i])
            start, reach, cap = s, e, (max_len[i] if max_len is not None else np.inf)
    return [np.asarray(g, np.int64) for g in groups]


def _clip(spans: Candidates, members: np.ndarray, names: Sequence[str]) -> Span:
    """One output clip from the spans in `members`: their extent, their best event, every event if several."""
    best = members[np.lexsort((spans.start[members], -spans.score[members]))[0]]
    events = tuple(
        sorted(
            (Event(names[spans.cls[i]], float(spans.peak[i]), float(spans.score[i])) for i in members),
            key=lambda e: (e.peak, e.label),
        )
    )
    return Span(
        float(spans.start[members].min()),
        float(spans.end[members].max()),
        names[spans.cls[best]],
        float(spans.score[best]),
        float(spans.peak[best]),
        events if len(members) > 1 else (),
    )


def _within_budget(clips: list[Span], budget: float | None) -> list[Span]:
    """The best clips (by score) whose total length fits `budget`, skipping any that would overflow."""
    if budget is None:
        return clips
    keep, total = [], 0.0
    for clip in sorted(clips, key=lambda c: (-c.score, c.start)):
        if total + clip.duration <= budget + 1e-9:
            keep.append(clip)
            total += clip.duration
    return sorted(keep, key=lambda c: (c.start, c.end))


def first_token_placement(probs: np.ndarray, window_frames: int) -> np.ndarray:
    """The seed's score curve from a centred one: token t gets the window that starts at t, i.e. our score of
    token t + W//2 (the last W//2 tokens, whose windows run past the end, repeat the final score)."""
    probs = np.asarray(probs)
    shift = min(int(window_frames) // 2, max(len(probs) - 1, 0))
    if shift == 0:
        return probs
    return np.concatenate([probs[shift:], np.repeat(probs[-1:], shift, axis=0)])


def _check_inputs(
    probs: np.ndarray, class_names: Sequence[str], duration: float, tokens_per_second: float
) -> np.ndarray:
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] != len(class_names):
        raise UserError(
            f"decoder: probabilities have shape {probs.shape}, expected [T, {len(class_names)}] "
            f"for classes {list(class_names)}"
        )
    if not np.isfinite(probs).all():
        raise UserError("decoder: probabilities contain NaN or infinity")
    if probs.size and (probs.min() < 0 or probs.max() > 1):
        raise UserError(
            f"decoder: expected probabilities in [0, 1] (sigmoid of the logits), got values in "
            f"[{probs.min():.3g}, {probs.max():.3g}]"
        )
    if not (tokens_per_second > 0 and np.isfinite(duration) and duration >= 0):
        raise UserError(
            f"decoder: need a token rate > 0 and a duration >= 0, got {tokens_per_second} tokens/s, duration={duration}"
        )
    return probs


def decode(
    probs: np.ndarray,
    class_names: Sequence[str],
    duration: float,
    config: DecoderConfig | None = None,
    tokens_per_second: float = TOKENS_PER_SECOND,
) -> list[Span]:
    """Highlight spans, in time order, from per-token probabilities [T, C] at `tokens_per_second` tokens per second."""
    config = config or DecoderConfig()
    probs = _check_inputs(probs, class_names, duration, tokens_per_second)
    if len(probs) == 0:
        return []
    config.check_classes(list(class_names))
    raw = candidate_spans(suppressed(probs, class_names, config), class_names, duration, config, tokens_per_second)
    return _within_budget(finish_spans(raw, class_names, duration, config), config.max_total_sec)


def suppressed(probs: np.ndarray, class_names: Sequence[str], config: DecoderConfig) -> np.ndarray:
    """Every class's probability times (1 - background): the curves peaks are picked on."""
    return probs * (1.0 - probs[:, [list(class_names).index(config.background)]])


def candidate_spans(
    probs: np.ndarray, class_names: Sequence[str], duration: float, config: DecoderConfig, tokens_per_second: float
) -> Candidates:
    """One span [peak - before, peak + after] per peak of every class of the suppressed curves, in [0, duration]."""
    parts = []
    for c, name in enumerate(class_names):
        if name == config.background:
            continue
        rule = config.rule(name)
        tokens = _peaks(probs[:, c], rule, tokens_per_second)
        peak = np.minimum(tokens / tokens_per_second, duration)
        lo, hi = np.clip(peak - rule.before, 0, duration), np.clip(peak + rule.after, 0, duration)
        parts.append(Candidates(lo, hi, probs[tokens, c], peak, np.full(len(tokens), c)))
    return Candidates.concat(parts)


def finish_spans(raw: Candidates, class_names: Sequence[str], duration: float, config: DecoderConfig) -> list[Span]:
    """Candidate spans -> clips in time order: per class NMS, merging, length clamps; then (with
    `merge_classes`) clips of several classes joined. Everything but the total length budget."""
    names = list(class_names)
    per_class = []
    for c in np.unique(raw.cls):
        rule = config.rule(names[c])
        spans = raw.take(np.flatnonzero(raw.cls == c))
        spans = _merge_close(_temporal_nms(spans, rule.nms_iou), rule.merge_gap)
        per_class.append(_clamp_length(spans, rule, duration, config.min_lead_sec))
    spans = Candidates.concat(per_class)
    spans = spans.take(np.flatnonzero(spans.end > spans.start))  # nothing left of a zero-length match
    if config.merge_classes:
        max_len = None if config.merge_beyond_max else np.array([config.rule(names[c]).max_length for c in spans.cls])
        groups = _merge_classes(spans, config.min_gap_sec, max_len)
    else:
        groups = [np.array([i]) for i in np.lexsort((spans.cls, spans.end, spans.start))]
    return [_clip(spans, g, names) for g in groups]
