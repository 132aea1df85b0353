"""run_inference.sh: a folder of two generated videos end to end (random-weight extraction), and its quick errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from soccer_highlights.synthetic.video import make_match_video

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "run_inference.sh"


def _script(*args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        # the interpreter running the tests is the script's environment: no test makes or needs .venv
        env={**os.environ, "VENV": sys.prefix, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})},
    )


@pytest.mark.slow
def test_folder_of_two_videos(tiny_model, tmp_path):
    videos = tmp_path / "my videos"
    videos.mkdir()
    make_match_video(videos / "first match.mp4", 8, [(2.0, "goal")], size="64x36")
    make_match_video(videos / "-second.mp4", 6, size="64x36")
    (videos / "notes.txt").write_text("not a video")
    out = tmp_path / "out"
    proc = _script(
        str(videos),
        "--",
        "--threshold",
        "0.05",
        "--quiet",
        env={"MODEL": str(tiny_model), "WEIGHTS": "random", "OUT": str(out)},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "2 of 2 videos done" in proc.stderr and "RANDOM" in proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["-second", ".outputs.json", "first match", "index.html"]
    index = (out / "index.html").read_text()
    assert 'href="first%20match/report.html"' in index and 'href="-second/report.html"' in index
    for name, seconds in (("first match", 8), ("-second", 6)):
        folder = out / name
        assert {"spans.json", "results_spotting.json", "timeline.png", "report.html"} <= {
            p.name for p in folder.iterdir()
        }
        spans = json.loads((folder / "spans.json").read_text())["spans"]
        assert all(0 <= s["start"] < s["end"] <= seconds for s in spans)
        assert (folder / "highlights.mp4").exists() == bool(spans)


def test_quick_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    cases = [
        ((str(tmp_path / "missing.mp4"),), {"MODEL": "m.keras"}, "missing.mp4: no such file"),
        ((str(tmp_path / "empty"),), {"MODEL": "m.keras"}, "empty: no video files"),
        ((str(tmp_path / "list.txt"),), {"MODEL": "m.keras"}, "list.txt: no such list file"),
        (("--bogus",), {}, "unknown option --bogus"),
    ]
    (tmp_path / "v.mp4").write_bytes(b"")
    cases.append(((str(tmp_path / "v.mp4"),), {"MODEL": ""}, "give a model"))
    cases.append((("--live", "udp://127.0.0.1:9", str(tmp_path / "v.mp4")), {"MODEL": "m.keras"}, "no video inputs"))
    cases.append((("--live", "udp://127.0.0.1:9"), {"MODEL": str(tmp_path / "m.keras")}, "no such model file"))
    for args, env, message in cases:
        proc = _script(*args, env=env, timeout=120)  # a hang guard: loaded cores slow the start-up a lot
        assert proc.returncode == 2 and message in proc.stderr, (args, proc.stderr)
        assert proc.stderr.strip().count("\n") == 0


def test_list_file_resolves_relative_paths_and_reports_failures(tmp_path):
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "games.txt").write_text("# two matches\r\nmissing one.mp4\r\n\r\n/abs/missing two.mp4\n")
    (tmp_path / "m.keras").write_bytes(b"")
    proc = _script(
        str(lists / "games.txt"), env={"MODEL": str(tmp_path / "m.keras"), "OUT": str(tmp_path / "o")}, timeout=60
    )
    assert proc.returncode == 1
    assert f"error: {lists}/missing one.mp4: no such file" in proc.stderr
    assert "error: /abs/missing two.mp4: no such file" in proc.stderr
    assert "0 of 2 videos done" in proc.stderr
    assert not any((tmp_path / "o").rglob("*.json")) and not (tmp_path / "o" / "index.html").exists()
