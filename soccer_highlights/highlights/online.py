"""The decoder on a growing score curve: spans given out as soon as no later score can change them.

`OnlineDecoder.push(rows)` takes the next per-token probabilities and returns the spans that became final;
`close(duration)` returns the rest once the stream has ended. Together they are exactly the spans of
`decoder.decode` on the whole curve without the total length budget (same order within a class).

When is a span final? Every step of the decoder after the peak picking (NMS, merging spans at most
`merge_gap` apart, length clamps, joining classes at most `min_gap_sec` apart) only relates spans that
overlap or lie within that gap of one another. So candidate spans (one per peak, [peak - before,
peak + after]) fall into groups separated by more than the largest gap, each decoded on its own; a span
that is too short may grow to `min_length` from its start, which is counted in its extent. A group is final
once no later candidate can reach it: every later peak is at a token that is not yet known, or known but
still able to become a peak (above the threshold, above its known neighbours), and its span starts
`before` seconds earlier. Classes never interact unless `merge_classes`, so each class is followed on its
own; with `merge_classes` all classes form one sequence.

So a span is final about `before + after + merge_gap` seconds after its event (plus `min_peak_distance` when
the following scores stay near the peak): a later event of the same class that close would have merged
with it or suppressed it offline. What needs the whole match cannot be final online: the total budget
(`max_total_sec`) is applied only to the final `spans.json`, and a class whose `nms_iou` is 0 (every span
of the class competes with every other) gives out its spans only at the end.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from soccer_highlights.common.constants import TOKENS_PER_SECOND
from soccer_highlights.highlights.decoder import (
    Candidates,
    DecoderConfig,
    Span,
    candidate_spans,
    finish_spans,
    suppressed,
)

EPS = 1e-6  # seconds: margin on "cannot reach" comparisons of float times


class OnlineDecoder:
    """Feed per-token probabilities [n, C] in time order; collect final spans as they come."""

    def __init__(
        self,
        class_names: Sequence[str],
        config: DecoderConfig | None = None,
        tokens_per_second: float = TOKENS_PER_SECOND,
    ):
        self.names = list(class_names)
        self.config = config or DecoderConfig()
        self.config.check_classes(self.names)
        self.tps = float(tokens_per_second)
        self._rows: list[np.ndarray] = []
        self._probs = np.zeros((0, len(self.names)))
        background = self.names.index(self.config.background)
        classes = [c for c in range(len(self.names)) if c != background]
        self.groups = [classes] if self.config.merge_classes else [[c] for c in classes]
        self.given: list[list[Span]] = [[] for _ in self.groups]
        rules = [self.config.rule(n) for n in self.names]
        self._h = [max(1, round(r.min_peak_distance * self.tps)) for r in rules]
        self._rules = rules

    @property
    def tokens(self) -> int:
        return len(self._probs) + sum(len(r) for r in self._rows)

    def probs(self) -> np.ndarray:
        """Every row pushed so far, [T, C]."""
        if self._rows:
            self._probs = np.concatenate([self._probs, *self._rows])
            self._rows = []
        return self._probs

    def push(self, rows: np.ndarray) -> list[Span]:
        """Append probability rows; return the spans that became final (per class in time order)."""
        rows = np.asarray(rows, np.float64).reshape(-1, len(self.names))
        if len(rows):
            self._rows.append(rows)
        probs = self.probs()
        if len(probs) == 0:
            return []
        q = suppressed(probs, self.names, self.config)
        known = len(q) / self.tps  # the match lasts at least this long
        last = np.array([len(q) - 1 - h for h in self._h])  # peaks up to here are settled
        raw = candidate_spans(q, self.names, known, self.config, self.tps)
        raw = raw.take(np.flatnonzero(np.round(raw.peak * self.tps) <= last[raw.cls]))
        out: list[Span] = []
        for g, classes in enumerate(self.groups):
            if any(self._rules[c].nms_iou <= 0 for c in classes):
                continue  # every span of the class competes with every other: final only at the end
            members = raw.take(np.flatnonzero(np.isin(raw.cls, classes)))
            reach = min(self._first_start(q, c) for c in classes)
            final = self._final_part(members, classes, reach)
            clips = finish_spans(final, self.names, known, self.config)
            out += clips[len(self.given[g]) :]
            self.given[g] = clips
        return out

    def close(self, duration: float) -> list[Span]:
        """The stream has ended after `duration` seconds: the spans not given out yet, in time order."""
        probs = self.probs()
        if len(probs) == 0:
            return []
        q = suppressed(probs, self.names, self.config)
        raw = candidate_spans(q, self.names, duration, self.config, self.tps)
        rest: list[Span] = []
        for g, classes in enumerate(self.groups):
            clips = finish_spans(raw.take(np.flatnonzero(np.isin(raw.cls, classes))), self.names, duration, self.config)
            if clips[: len(self.given[g])] != self.given[g]:  # the rule above says this cannot happen
                raise AssertionError(f"online spans of {[self.names[c] for c in classes]} differ from offline")
            rest += clips[len(self.given[g]) :]
            self.given[g] = clips
        return sorted(rest, key=lambda s: (s.start, s.end, s.label))

    def final_after(self, span: Span) -> float:
        """The stream second (counted in scored tokens) by which `span` is final at the latest, for a span not
        shortened to its `max_length`: its end (or start + min_length), plus the largest gap it may still merge
        across, plus how far before its event a later span starts and how long a later peak takes to settle."""
        classes = self.groups[0] if self.config.merge_classes else [self.names.index(span.label)]
        rules = [self._rules[c] for c in classes]
        gap = max(r.merge_gap for r in rules)
        gap = max(gap, self.config.min_gap_sec) if self.config.merge_classes else gap
        end = max(span.end, span.start + max(self.config.rule(n).min_length for n in span.labels))
        return end + gap + max(r.before + r.min_peak_distance for r in rules)

    def _first_start(self, q: np.ndarray, c: int) -> float:
        """The earliest start (s) of a span that a peak not yet settled could still give class `c`."""
        rule, h, k = self._rules[c], self._h[c], len(q)
        first = k
        for t in range(max(0, k - h), k):  # known tokens whose later neighbours are partly unknown
            x = q[t, c]
            if (
                x >= rule.threshold
                and x > q[max(0, t - h) : t, c].max(initial=-np.inf)
                and x >= q[t + 1 :, c].max(initial=-np.inf)
            ):
                first = t
                break
        return max(0.0, first / self.tps - rule.before)

    def _final_part(self, spans: Candidates, classes: list[int], reach: float) -> Candidates:
        """The candidate spans of the groups (separated by more than the largest gap) that end, with the gap,
        before `reach`, where the earliest later candidate may start."""
        if len(spans.start) == 0:
            return spans
        gap = max(self._rules[c].merge_gap for c in classes)
        gap = max(gap, self.config.min_gap_sec) if self.config.merge_classes else gap
        min_len = np.array([self._rules[c].min_length for c in spans.cls])
        order = np.argsort(spans.start, kind="stable")
        start = spans.start[order]
        end = np.maximum.accumulate(np.maximum(spans.end, spans.start + min_len)[order])
        # a group ends where the next start is more than `gap` after everything before it
        cut = np.flatnonzero(np.concatenate([start[1:] - end[:-1] > gap + EPS, [True]]))
        done = cut[end[cut] + gap + EPS < reach]
        return spans.take(order[: done[-1] + 1] if len(done) else order[:0])
