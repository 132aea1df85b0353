"""Reel cutting: durations, playability, awkward file names, stream-copy mode, video without audio."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from soccer_highlights.common.errors import UserError
from soccer_highlights.common.ffmpeg import ffmpeg_exe, media_arg, probe
from soccer_highlights.highlights.reel import Clip, chapters_text, concat_list_text, make_reel, plan_clips, srt_text
from tests.media import make_video

FPS = 25
FRAME = 1 / FPS


def _make_video(path: Path, seconds: float, audio: bool = True) -> Path:
    return make_video(path, seconds, rate=str(FPS), size="160x90", audio=audio, audio_rate=16000, channels=1, gop=50)


@pytest.fixture(scope="module")
def video60(tmp_path_factory) -> Path:
    return _make_video(tmp_path_factory.mktemp("reel") / "match.mp4", 60)


def _decodes_cleanly(path: Path) -> None:
    proc = subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-i", media_arg(path), "-f", "null", "-"], capture_output=True, text=True
    )
    assert proc.returncode == 0 and proc.stderr.strip() == "", proc.stderr


CLIPS = [Clip(3.0, 7.4, "kick 00:03"), Clip(20.0, 27.6, "goal 00:20"), Clip(41.2, 45.0, "card 00:41")]


def test_reencode_reel_has_expected_duration_and_plays(video60, tmp_path):
    out = tmp_path / "reel.mp4"
    reel = make_reel(video60, CLIPS, out, progress=False)
    expected = sum(c.duration for c in CLIPS)
    info = probe(out)
    assert info.has_video and info.has_audio
    assert abs(info.duration - expected) <= FRAME * len(CLIPS)
    assert reel.placed[1] == pytest.approx((4.4, 12.0))
    _decodes_cleanly(out)
    srt = out.with_suffix(".srt").read_text()
    assert "00:00:04,400 --> 00:00:12,000\ngoal 00:20" in srt
    # chapters made it into the container
    meta = subprocess.run(
        [ffmpeg_exe(), "-i", media_arg(out), "-f", "ffmetadata", "-"], capture_output=True, text=True
    ).stdout
    assert meta.count("[CHAPTER]") == 3 and "title=card 00:41" in meta
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reel.mp4", "reel.srt"]


@pytest.mark.parametrize("name", ["my match 'final'.mp4", "-dash start.mp4"])
def test_awkward_names_in_and_out(video60, tmp_path, name):
    src = tmp_path / name
    src.symlink_to(video60)
    out_dir = tmp_path / "out 'dir'"
    out = out_dir / ("-" + name)
    make_reel(src, CLIPS[:2], out, fast=True, progress=False)
    make_reel(src, CLIPS[:1], out_dir / "re encoded.mp4", progress=False)
    assert probe(out).has_video and probe(out_dir / "re encoded.mp4").has_video
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(
        ["-" + name, "-" + Path(name).stem + ".srt", "re encoded.mp4", "re encoded.srt"]
    )


def test_stream_copy_starts_on_keyframes(video60, tmp_path):
    out = tmp_path / "fast.mp4"
    reel = make_reel(video60, CLIPS, out, fast=True, srt=False, progress=False)
    # keyframes every 2 s: each clip starts at the keyframe at or before its start, so it is never shorter
    for c, (a, b) in zip(CLIPS, reel.placed, strict=True):
        assert c.duration - FRAME <= b - a <= c.duration + 2.0 + FRAME
    assert abs(probe(out).duration - reel.duration) <= FRAME * len(CLIPS)
    assert not out.with_suffix(".srt").exists()
    _decodes_cleanly(out)


def test_video_without_audio(tmp_path):
    src = _make_video(tmp_path / "silent.mp4", 12, audio=False)
    out = tmp_path / "reel.mp4"
    make_reel(src, [Clip(1, 3, "a"), Clip(6, 8, "b")], out, srt=False, progress=False)
    info = probe(out)
    assert info.has_video and not info.has_audio and abs(info.duration - 4.0) <= 2 * FRAME


def test_failure_leaves_no_partial_file(video60, tmp_path):
    with pytest.raises(UserError, match="outside the video"):
        make_reel(video60, [Clip(70, 80, "late")], tmp_path / "x.mp4", progress=False)
    with pytest.raises(UserError, match="no clips"):
        make_reel(video60, [], tmp_path / "x.mp4", progress=False)
    junk = tmp_path / "junk.mp4"
    junk.write_text("junk")
    with pytest.raises(UserError, match="not a video"):
        make_reel(junk, CLIPS, tmp_path / "x.mp4", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.mp4"]


def test_plan_clips_merges_overlaps_and_adds_intro_outro():
    class S:
        def __init__(self, start, end, label):
            self.start, self.end, self.label = start, end, label

    clips = plan_clips(
        [S(50, 70, "goal"), S(-5, 10, "kick"), S(65, 80, "card"), S(95, 130, "subs")], 120, intro_sec=15, outro_sec=15
    )
    assert [(c.start, c.end) for c in clips] == [(0, 15), (50, 80), (95, 120)]
    assert clips[0].title == "kick 00:00 + Kick-off"
    assert clips[1].title == "goal 00:50 + card 01:05"


def test_text_formats():
    clips = [Clip(0, 1, "a=b;c"), Clip(5, 7, "it's")]
    assert "title=a\\=b\\;c" in chapters_text(clips, [1.0, 2.0])
    assert "START=1000\nEND=3000" in chapters_text(clips, [1.0, 2.0])
    assert srt_text(clips, [(0, 1), (1, 3.25)]).splitlines()[5] == "00:00:01,000 --> 00:00:03,250"
    assert concat_list_text([Path("/x/it's.mp4")]) == "file '/x/it'\\''s.mp4'\n"


def test_an_odd_size_video_gives_a_reel(tmp_path):
    """yuv420p needs even sides: a 161x91 source (4:4:4, as cameras and screen captures give) is padded by a pixel."""
    src = tmp_path / "odd.mp4"
    lavfi = ["-f", "lavfi", "-i", f"testsrc=size=161x91:rate={FPS}", "-f", "lavfi", "-i", "sine=frequency=440"]
    encode = ["-t", "6", "-c:v", "libx264", "-pix_fmt", "yuv444p", "-c:a", "aac", media_arg(src)]
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", *lavfi, *encode], check=True)
    assert (probe(src).width, probe(src).height) == (161, 91)
    out = tmp_path / "reel.mp4"
    make_reel(src, [Clip(1, 3, "a")], out, srt=False, progress=False)
    info = probe(out)
    assert (info.width, info.height) == (162, 92) and info.has_audio and abs(info.duration - 2.0) <= 2 * FRAME
    _decodes_cleanly(out)
