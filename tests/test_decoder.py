"""Decoder: peaks, offsets, NMS, merging, clamps, minimum gap and budget (docs/DESIGN.md, stage 7)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from soccer_highlights.common.constants import TOKENS_PER_SECOND
from soccer_highlights.common.errors import UserError
from soccer_highlights.highlights.decoder import ClassRule, DecoderConfig, Span, decode

NAMES = ["background", "kick", "subs", "card", "goal"]


def probs(seconds: float, *peaks: tuple[str, float, float], background: float = 0.0) -> np.ndarray:
    """[T, 5] zeros at 2 tokens/s with `(class, time s, value)` single-token peaks."""
    p = np.zeros((int(seconds * TOKENS_PER_SECOND), len(NAMES)))
    p[:, 0] = background
    for name, t, v in peaks:
        p[int(t * TOKENS_PER_SECOND), NAMES.index(name)] = v
    return p


def config(rule: ClassRule | None = None, **top) -> DecoderConfig:
    """One rule for every class (no seed figures), no minimum gap unless given."""
    return DecoderConfig(
        rules={},
        default=rule
        or ClassRule(before=5, after=5, threshold=0.5, min_peak_distance=10, merge_gap=0, min_length=0, max_length=100),
        **{"min_gap_sec": 0.0, **top},
    )


def spans_of(p: np.ndarray, cfg: DecoderConfig, duration: float | None = None) -> list[tuple]:
    out = decode(
        p, NAMES, len(p) / TOKENS_PER_SECOND if duration is None else duration, cfg, tokens_per_second=TOKENS_PER_SECOND
    )
    return [(s.start, s.end, s.label, round(s.score, 6), s.peak) for s in out]


def test_threshold_is_inclusive():
    cfg = config()
    assert spans_of(probs(100, ("goal", 50, 0.5)), cfg) == [(45, 55, "goal", 0.5, 50)]
    assert spans_of(probs(100, ("goal", 50, 0.4999)), cfg) == []


def test_plateau_gives_one_peak_at_its_first_token():
    p = probs(100)
    p[100:104, NAMES.index("kick")] = 0.8  # 50.0 .. 51.5 s, all equal
    assert spans_of(p, config()) == [(45, 55, "kick", 0.8, 50)]


def test_neighbouring_peaks_within_min_distance_keep_the_higher():
    near = probs(200, ("card", 50, 0.7), ("card", 58, 0.9))  # 8 s apart < 10 s
    assert spans_of(near, config()) == [(53, 63, "card", 0.9, 58)]
    far = probs(200, ("card", 50, 0.7), ("card", 61, 0.9))  # 11 s apart: both peaks, spans 1 s apart
    assert spans_of(far, config()) == [(45, 55, "card", 0.7, 50), (56, 66, "card", 0.9, 61)]


def test_nms_drops_the_weaker_of_overlapping_spans_else_they_merge():
    rule = ClassRule(before=20, after=20, min_peak_distance=5, merge_gap=0, min_length=0, max_length=100)
    p = probs(300, ("subs", 100, 0.9), ("subs", 112, 0.8))  # [80,120] vs [92,132]: tIoU 28/52 = 0.54
    assert spans_of(p, config(rule)) == [(80, 120, "subs", 0.9, 100)]
    loose = ClassRule(**{**rule.__dict__, "nms_iou": 0.6})
    assert spans_of(p, config(loose)) == [(80, 132, "subs", 0.9, 100)]


def test_merge_gap_is_inclusive():
    p = probs(200, ("goal", 50, 0.6), ("goal", 64, 0.9))  # spans [45,55] and [59,69]: 4 s apart
    merged = ClassRule(before=5, after=5, min_peak_distance=5, merge_gap=4, min_length=0, max_length=100)
    assert spans_of(p, config(merged)) == [(45, 69, "goal", 0.9, 64)]
    apart = ClassRule(**{**merged.__dict__, "merge_gap": 3.5})
    assert len(spans_of(p, config(apart))) == 2


def test_spans_are_clamped_to_the_match():
    p = probs(100, ("kick", 1, 0.9), ("goal", 98, 0.9))
    assert spans_of(p, config()) == [(0, 6, "kick", 0.9, 1), (93, 100, "goal", 0.9, 98)]
    # the duration can be shorter than the tokens (last partial second)
    assert spans_of(p, config(), duration=98.5)[-1][:2] == (93, 98.5)


def test_min_length_extends_the_aftermath_then_the_lead_in():
    rule = ClassRule(before=1, after=1, min_peak_distance=5, merge_gap=0, min_length=6, max_length=100)
    p = probs(100, ("kick", 50, 0.9), ("goal", 99, 0.9))
    assert spans_of(p, config(rule)) == [(49, 55, "kick", 0.9, 50), (94, 100, "goal", 0.9, 99)]


def test_max_length_trims_the_lead_in_first_and_keeps_the_peak():
    seed = DecoderConfig(min_gap_sec=0.0)
    p = probs(600, ("kick", 300, 0.9), ("goal", 100, 0.9), background=0.0)
    (goal, kick) = spans_of(p, seed)
    # kick: seed span [240, 311] (71 s) -> 25 s: lead-in trimmed to 14 s, the 11 s aftermath kept
    assert kick == (286, 311, "kick", 0.9, 300)
    # goal: [86, 155] (69 s) -> 45 s: the 55 s aftermath alone is too long, so keep 5 s of lead-in, cut the tail
    assert goal == (95, 140, "goal", 0.9, 100)
    for start, end, label, _, peak in (goal, kick):
        assert start < peak < end and end - start == seed.rule(label).max_length


def test_background_suppresses_scores():
    p = probs(100, ("goal", 50, 0.9))
    p[:, 0] = 0.5  # 0.9 * (1 - 0.5) = 0.45 < 0.5
    assert spans_of(p, config()) == []
    p[100, 0] = 0.1  # 0.9 * 0.9 = 0.81
    assert spans_of(p, config()) == [(45, 55, "goal", 0.81, 50)]


def test_min_gap_joins_clips_of_different_classes():
    p = probs(200, ("kick", 50, 0.7), ("card", 61, 0.9))  # [45,55] and [56,66]: 1 s apart
    assert spans_of(p, config(min_gap_sec=2.0, merge_classes=True)) == [(45, 66, "card", 0.9, 61)]
    assert len(spans_of(p, config(min_gap_sec=0.5, merge_classes=True))) == 2
    assert len(spans_of(p, config(min_gap_sec=2.0))) == 2, "the seed never merges across classes"


def test_budget_keeps_the_best_spans_in_time_order():
    p = probs(600, ("goal", 100, 0.6), ("kick", 200, 0.9), ("card", 300, 0.5), ("subs", 400, 0.8))
    assert [s[2] for s in spans_of(p, config(max_total_sec=25))] == ["kick", "subs"]  # 10 s each; 3rd won't fit
    assert [s[2] for s in spans_of(p, config(max_total_sec=30))] == ["goal", "kick", "subs"]
    assert [s[2] for s in spans_of(p, config())] == ["goal", "kick", "card", "subs"]


def test_unlisted_classes_use_the_default_rule_and_spans_are_spans():
    names = ["background", "Corner", "Goal"]
    p = np.zeros((200, 3))
    p[100, 1] = 0.9
    out = decode(p, names, 100.0, DecoderConfig(), tokens_per_second=TOKENS_PER_SECOND)
    default = DecoderConfig().default
    assert out == [Span(50 - default.before, 50 + default.after, "Corner", 0.9, 50.0)]


def test_config_json_round_trip_and_overrides(tmp_path):
    cfg = DecoderConfig()
    cfg.to_json(tmp_path / "full.json")
    assert DecoderConfig.from_json(tmp_path / "full.json") == cfg
    assert cfg.rule("goal") == ClassRule(
        before=14, after=55, threshold=0.55, min_peak_distance=20, merge_gap=4, min_length=6, max_length=45
    )
    (tmp_path / "part.json").write_text(
        json.dumps(
            {
                "rules": {"goal": {"threshold": 0.7}, "Corner": {"after": 9}},
                "default": {"before": 3},
                "max_total_sec": 300,
            }
        )
    )
    part = DecoderConfig.from_json(tmp_path / "part.json")
    assert part.rule("goal").threshold == 0.7 and part.rule("goal").before == 14
    assert part.rule("Corner") == ClassRule(**{**cfg.default.__dict__, "before": 3.0, "after": 9.0})
    assert part.max_total_sec == 300 and part.rule("kick") == cfg.rule("kick")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{oops", "not a readable JSON"),
        ('{"rules": {"goal": {"treshold": 0.5}}}', "unknown figure"),
        ('{"max_total": 10}', "unknown key"),
        ('{"rules": {"goal": {"threshold": "high"}}}', "must be numbers"),
        ('{"rules": {"goal": {"min_length": 50}}}', "min_length 50.0 > max_length"),
        ('{"max_total_sec": 0}', "max_total_sec must be > 0"),
    ],
)
def test_bad_config_is_a_one_line_error_naming_the_file(tmp_path, text, message):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(UserError, match=message) as err:
        DecoderConfig.from_json(path)
    assert str(path) in str(err.value) or "decoder" in str(err.value)


def test_bad_probabilities_are_rejected():
    with pytest.raises(UserError, match="expected \\[T, 5\\]"):
        decode(np.zeros((10, 4)), NAMES, 5.0)
    with pytest.raises(UserError, match="NaN"):
        decode(np.full((10, 5), np.nan), NAMES, 5.0)
    with pytest.raises(UserError, match="in \\[0, 1\\]"):
        decode(np.full((10, 5), 3.0), NAMES, 5.0)  # logits, not probabilities
    assert decode(np.zeros((0, 5)), NAMES, 0.0) == []
