"""inference.py end to end (tiny archis model, generated game and video) and its one-line errors on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from soccer_highlights import synthetic
from soccer_highlights.commands import inference
from soccer_highlights.common.errors import UserError
from soccer_highlights.common.ffmpeg import probe
from soccer_highlights.highlights.reel import plan_clips
from soccer_highlights.synthetic.video import make_match_video

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def game(tmp_path_factory) -> Path:
    return synthetic.write_game(synthetic.make_game(0, half_minutes=1), tmp_path_factory.mktemp("data") / "game a")


@pytest.fixture(scope="module")
def video(game, tmp_path_factory) -> Path:
    """A video of the game's first half (the length of its features), features beside it."""
    events = [(3.0, "goal"), (40.0, "card")]
    seconds = len(np.load(game / "1_VGGish.npy", mmap_mode="r")) / 2
    return make_match_video(tmp_path_factory.mktemp("video") / "match 'one'.mp4", seconds, events, size="64x36")


def _run(*argv) -> None:
    assert inference.main([*map(str, argv), "--quiet"]) == 0


def test_game_dir_gives_spans_spotting_and_timeline(tiny_model, game, tmp_path, capsys):
    out = tmp_path / "out"
    _run("--model", tiny_model, "--game_dir", game, "--out", out)
    assert sorted(p.name for p in out.iterdir()) == [
        ".outputs.json",
        "report.html",
        "results_spotting.json",
        "spans.json",
        "timeline.png",
    ]
    spotting = json.loads((out / "results_spotting.json").read_text())
    assert {p["half"] for p in spotting["predictions"]} == {"1", "2"}
    assert {p["label"] for p in spotting["predictions"]} <= {"Penalty", "Substitution", "Yellow card", "Goal"}
    spans = json.loads((out / "spans.json").read_text())
    assert spans["model"]["architecture"] == "concat" and spans["model"]["window_seconds"] == 4
    text = capsys.readouterr().out
    events = sum(
        1
        for e in json.loads((game / "Labels-v2.json").read_text())["annotations"]
        if e["label"]
        in (
            "Goal",
            "Shots on target",
            "Corner",
            "Penalty",
            "Substitution",
            "Yellow card",
            "Red card",
            "Yellow->red card",
            "Direct free-kick",
            "Indirect free-kick",
        )
    )
    assert f"highlights ({sum(s['end'] - s['start'] for s in spans['spans']):.0f} s), " in text
    assert f" of {events} true events covered" in text


def test_video_with_reused_features_makes_the_reel(tiny_model, game, video, tmp_path, capsys):
    feats = tmp_path / "feats"
    feats.mkdir()
    for name in ("1_ResNET_TF2_PCA512.npy", "1_VGGish.npy"):
        (feats / name).write_bytes((game / name).read_bytes())
    (feats / "extraction.json").write_text(json.dumps({"weights": "random"}))
    out = tmp_path / "out"
    _run(
        "--model",
        tiny_model,
        "--video",
        video,
        "--features_video",
        feats / "1_ResNET_TF2_PCA512.npy",
        "--features_audio",
        feats / "1_VGGish.npy",
        "--out",
        out,
        "--threshold",
        "0.05",
        "--max_total_sec",
        "90",
        "--ground_truth",
        game,
        "--intro_sec",
        "0",
        "--outro_sec",
        "0",
    )
    spans = json.loads((out / "spans.json").read_text())["spans"]
    assert spans and all(s["match_time"].startswith("1 - ") and s["half"] == 1 for s in spans)
    assert sum(s["end"] - s["start"] for s in spans) <= 90
    clips = plan_clips([SimpleNamespace(start=s["start"], end=s["end"], label=s["class"]) for s in spans], 1e9)
    total = sum(c.duration for c in clips)
    assert abs(probe(out / "highlights.mp4").duration - total) <= 0.04 * len(clips) + 0.03
    assert (out / "highlights.srt").read_text().count(" --> ") == len(clips)
    captured = capsys.readouterr()
    assert "RANDOM" in captured.err and "RANDOM" in captured.out


def _no_audio_video(tmp_path: Path) -> Path:
    return make_match_video(tmp_path / "silent.mp4", 5, size="64x36", audio=False)


def _zero_length_video(tmp_path: Path) -> Path:
    (tmp_path / "zero.mp4").write_bytes(b"")
    return tmp_path / "zero.mp4"


def _narrow_features(tmp_path: Path) -> list[str]:
    for name in ("v.npy", "a.npy"):
        np.save(tmp_path / name, np.zeros((40, 256), np.float32))
    return ["--features_video", str(tmp_path / "v.npy"), "--features_audio", str(tmp_path / "a.npy")]


BAD = {
    "missing model": (lambda tmp, game: ["--game_dir", str(game)], "nope.keras: no such model file"),
    "width mismatch": (lambda tmp, game: _narrow_features(tmp), "features are 256 wide but the model expects 512"),
    "no audio": (lambda tmp, game: ["--video", str(_no_audio_video(tmp))], "no audio stream"),
    "zero length": (lambda tmp, game: ["--video", str(_zero_length_video(tmp))], "zero-length video"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_inputs_are_one_line_errors_and_leave_nothing(case, tiny_model, game, tmp_path):
    make_args, message = BAD[case]
    model = tmp_path / "nope.keras" if case == "missing model" else tiny_model
    out = tmp_path / "out"
    with pytest.raises(UserError, match=message) as err:
        inference.main(["--model", str(model), "--out", str(out), *make_args(tmp_path, game)])
    assert "\n" not in str(err.value)
    assert not out.exists()


def test_unwritable_output_folder(tiny_model, game, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UserError, match="cannot create the output folder"):
        inference.main(["--model", str(tiny_model), "--out", str(blocker / "out"), "--game_dir", str(game)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_cli_exit_code_and_single_line(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "inference.py"),
            "--model",
            str(tmp_path / "m.keras"),
            "--out",
            str(tmp_path / "o"),
            "--features_video",
            "v.npy",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("error: ")
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_folder_of_three_videos_in_one_process(tiny_model, tmp_path, monkeypatch, capsys):
    """Three videos and a broken one from a folder: the model is loaded and the extractor built once, each video
    gets its own folder, the broken one is reported and the rest go on."""
    from soccer_highlights import archis
    from soccer_highlights.extract_features import pipeline

    folder = tmp_path / "videos"
    folder.mkdir()
    for name, seconds in (("a", 6), ("b", 5), ("c", 4)):
        make_match_video(folder / f"{name}.mp4", seconds, size="64x36")
    (folder / "a").mkdir()  # features extract_features wrote for a.mp4: reused, not extracted again
    for name in ("1_ResNET_TF2_PCA512.npy", "1_VGGish.npy"):
        np.save(folder / "a" / name, np.random.default_rng(0).normal(size=(12, 512)).astype(np.float32))
    files = {"video": "1_ResNET_TF2_PCA512.npy", "audio": "1_VGGish.npy"}  # the record that describes them
    (folder / "a" / "extraction.json").write_text(json.dumps({"halves": {"1": {"tokens": 12, "files": files}}}))
    (folder / "d.mkv").write_bytes(b"")
    (folder / "notes.txt").write_text("not a video")
    loads, builds = [], []
    load_model, build = archis.load_model, pipeline.Extractor.__init__
    monkeypatch.setattr(archis, "load_model", lambda path, **kw: loads.append(path) or load_model(path, **kw))
    monkeypatch.setattr(pipeline.Extractor, "__init__", lambda self, cfg: builds.append(cfg) or build(self, cfg))
    out = tmp_path / "out"
    code = inference.main(
        ["--model", str(tiny_model), "--out", str(out), str(folder), "--weights", "random", "--no_reel", "--quiet"]
    )
    assert code == 1 and len(loads) == 1 and len(builds) == 1
    assert sorted(p.name for p in out.iterdir()) == [".outputs.json", "a", "b", "c", "index.html"]
    for name in "abc":
        assert {"spans.json", "results_spotting.json", "timeline.png"} <= {p.name for p in (out / name).iterdir()}
    err = capsys.readouterr().err
    assert "d.mkv: empty file" in err and "3 of 4 videos done" in err
    sources = {n: json.loads((out / n / "spans.json").read_text())["source"] for n in "abc"}
    assert "features_video" in sources["a"] and "features_video" not in sources["b"]
