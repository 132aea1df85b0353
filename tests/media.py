"""Test media made with ffmpeg's lavfi sources (testsrc2 picture + sine tone), shared by the test files."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from soccer_highlights.common.ffmpeg import ffmpeg_exe, media_arg


def make_video(
    path: Path,
    seconds: float,
    *,
    rate: str = "25",
    size: str = "320x180",
    audio: bool = True,
    video_filter: str | None = None,
    audio_rate: int = 44100,
    channels: int = 2,
    gop: int | None = None,
) -> Path:
    """A short H.264 (+ AAC) test video; `gop` fixes the keyframe interval (stream-copy cuts depend on it)."""
    src = f"testsrc2=size={size}:rate={rate}" if video_filter is None else video_filter
    args = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-f", "lavfi", "-i", src]
    if audio:
        layout = "stereo" if channels == 2 else "mono"
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate={audio_rate},aformat=channel_layouts={layout}"]
    args += ["-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
    args += ["-g", str(gop)] if gop else []
    args += ["-c:a", "aac"] if audio else ["-an"]
    subprocess.run([*args, media_arg(path)], check=True)
    return path


def source_frames(path: Path) -> int:
    """Frames in the file's first video stream, counted by decoding it."""
    out = subprocess.run(
        [
            ffmpeg_exe(),
            "-hide_banner",
            "-nostdin",
            "-i",
            media_arg(path),
            "-map",
            "0:v:0",
            "-fps_mode",
            "passthrough",
            "-f",
            "null",
            "-",
        ],
        capture_output=True,
        text=True,
    ).stderr
    return int(re.findall(r"frame=\s*(\d+)", out)[-1])
