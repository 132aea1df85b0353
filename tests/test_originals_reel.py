"""The seed's reel and decoder inputs: intro / outro by default, overlapping clips, every event named in
spans.json and the subtitles, and the seed's first-token score placement on request."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from soccer_highlights import synthetic
from soccer_highlights.commands import inference
from soccer_highlights.common.ffmpeg import probe
from soccer_highlights.highlights.decoder import ClassRule, DecoderConfig, Event, Span, decode, first_token_placement
from soccer_highlights.highlights.reel import plan_clips
from soccer_highlights.synthetic.video import make_match_video


def test_reel_opens_and_closes_with_the_seeds_15_s_by_default():
    args = inference.parse_args(["--model", "m.keras", "--out", "o", "--video", "v.mp4"])
    assert (args.intro_sec, args.outro_sec) == (15.0, 15.0)
    clips = plan_clips([], 120.0, intro_sec=args.intro_sec, outro_sec=args.outro_sec)
    assert [(c.start, c.end, c.title) for c in clips] == [(0, 15, "Kick-off"), (105, 120, "Full time")]


def test_overlapping_spans_play_twice_only_when_asked():
    spans = [Span(40, 60, "kick", 0.7, 50), Span(45, 65, "card", 0.9, 55)]
    assert [(c.start, c.end) for c in plan_clips(spans, 200)] == [(40, 65)]
    assert [(c.start, c.end) for c in plan_clips(spans, 200, join_overlaps=False)] == [(40, 60), (45, 65)]
    joined = Span(40, 65, "card", 0.9, 55, (Event("kick", 50, 0.7), Event("card", 55, 0.9)))
    assert plan_clips([joined], 200)[0].title == "kick + card 00:40"


def test_first_token_placement_moves_peaks_w_half_earlier():
    p = np.zeros((200, 2))
    p[100, 1] = 0.9
    seed = first_token_placement(p, window_frames=40)
    assert int(np.argmax(seed[:, 1])) == 80 and seed.shape == p.shape
    rule = ClassRule(before=5, after=5, threshold=0.5, min_peak_distance=5, merge_gap=0, min_length=0, max_length=30)
    cfg = DecoderConfig(rules={}, default=rule)
    assert [s.peak for s in decode(p, ["background", "goal"], 100.0, cfg)] == [50.0]
    assert [s.peak for s in decode(seed, ["background", "goal"], 100.0, cfg)] == [40.0]


@pytest.fixture(scope="module")
def match(tmp_path_factory, tiny_model) -> tuple[Path, Path, Path]:
    root, model = tmp_path_factory.mktemp("reel"), tiny_model
    game = synthetic.write_game(synthetic.make_game(0, half_minutes=1), root / "game")
    seconds = len(np.load(game / "1_VGGish.npy", mmap_mode="r")) / 2
    return model, game, make_match_video(root / "match.mp4", seconds, [(3.0, "goal")], size="64x36")


def _infer(match, out: Path, *flags: str) -> dict:
    model, game, video = match
    argv = [
        "--model",
        model,
        "--video",
        video,
        "--features_video",
        game / "1_ResNET_TF2_PCA512.npy",
        "--features_audio",
        game / "1_VGGish.npy",
        "--out",
        out,
        "--quiet",
        *flags,
    ]
    assert inference.main([str(a) for a in argv]) == 0
    return json.loads((out / "spans.json").read_text())


def test_no_spans_still_gives_the_seeds_intro_and_outro_reel(match, tmp_path):
    spans = _infer(match, tmp_path / "o", "--threshold", "1.0")["spans"]
    assert spans == []
    assert abs(probe(tmp_path / "o" / "highlights.mp4").duration - 30) < 0.5
    srt = (tmp_path / "o" / "highlights.srt").read_text()
    assert "Kick-off" in srt and "Full time" in srt


def test_spans_json_and_subtitles_name_every_event_of_a_merged_clip(match, tmp_path):
    data = _infer(
        match,
        tmp_path / "o",
        "--threshold",
        "0.0",
        "--merge_classes",
        "--min_gap_sec",
        "60",
        "--intro_sec",
        "0",
        "--outro_sec",
        "0",
    )
    assert data["decoder"]["merge_classes"] is True
    merged = [s for s in data["spans"] if len(s["events"]) > 1]
    assert merged, "with threshold 0 and a 60 s gap, clips of several classes join"
    for s in data["spans"]:
        assert s["classes"] == list(dict.fromkeys(e["class"] for e in s["events"]))
        assert s["class"] in s["classes"] and all(s["start"] <= e["peak"] <= s["end"] for e in s["events"])
    srt = (tmp_path / "o" / "highlights.srt").read_text()
    for e in merged[0]["events"]:
        assert f"{e['class']} {e['match_time']}" in srt
