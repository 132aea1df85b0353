"""A video is probed (`ffmpeg -i`, common.ffmpeg.probe) once per run, however many steps ask about it: the input
checks, the extraction, the duration check and the reel."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from soccer_highlights.commands import inference
from soccer_highlights.common import ffmpeg
from soccer_highlights.common.ffmpeg import media_arg, probe
from soccer_highlights.synthetic.video import make_match_video


def _count_probes(monkeypatch, video: Path) -> list[list[str]]:
    """Every `ffmpeg -i VIDEO` run with no output (a probe) from now on, recorded."""
    probes: list[list[str]] = []
    run = subprocess.run

    def counting(cmd, *args, **kwargs):
        if list(cmd[-2:]) == ["-i", media_arg(video.resolve())]:
            probes.append(list(cmd))
        return run(cmd, *args, **kwargs)

    monkeypatch.setattr(subprocess, "run", counting)
    return probes


@pytest.mark.slow
def test_one_inference_run_probes_its_video_once(tiny_model, tmp_path, monkeypatch):
    video = make_match_video(tmp_path / "match.mp4", 12, [(4.0, "goal")], size="64x36")
    probes = _count_probes(monkeypatch, video)
    argv = ["--model", str(tiny_model), "--video", str(video), "--out", str(tmp_path / "out"), "--weights", "random"]
    assert inference.main([*argv, "--threshold", "0", "--intro_sec", "2", "--quiet"]) == 0
    assert (tmp_path / "out" / "highlights.mp4").is_file()  # the reel asked about the video too
    assert len(probes) == 1, probes


def test_probe_reads_a_file_again_once_it_changes(tmp_path, monkeypatch):
    video = make_match_video(tmp_path / "clip.mp4", 2, size="64x36")
    probes = _count_probes(monkeypatch, video)
    first = probe(video)
    assert probe(str(video)) == first and probe(tmp_path / "." / "clip.mp4").duration == first.duration
    assert len(probes) == 1
    make_match_video(tmp_path / "longer.mp4", 4, size="64x36").replace(video)  # another file at the same path
    assert probe(video).duration > first.duration + 1
    assert len(probes) == 2


def test_probe_names_the_path_it_was_given(tmp_path):
    video = make_match_video(tmp_path / "clip.mp4", 1, size="64x36")
    link = tmp_path / "link.mp4"
    link.symlink_to(video)
    assert probe(video).path == str(video) and probe(link).path == str(link)
    (tmp_path / "text.mp4").write_text("not a video")
    for _ in range(2):  # a bad file is refused every time, with its own name
        with pytest.raises(ffmpeg.UserError, match="text.mp4: not a video"):
            probe(tmp_path / "text.mp4")
