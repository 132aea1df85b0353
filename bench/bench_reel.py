"""Benchmark: a reel of 10 clips cut from a 10-minute 720p generated video, re-encode versus stream copy.

The source (testsrc2 1280x720 25 fps, 2 s GOP, AAC) is generated once into bench/out/ (git-ignored).

    flock /tmp/bench.lock .venv/bin/python bench/bench_reel.py
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from soccer_highlights.common.ffmpeg import media_arg, probe, run_ffmpeg
from soccer_highlights.highlights.reel import Clip, make_reel

OUT = Path(__file__).resolve().parent / "out"


def source_video(minutes: float, size: str) -> Path:
    path = OUT / f"source_{minutes:g}min_{size}.mp4"
    if not path.exists():
        seconds = minutes * 60
        t0 = time.perf_counter()
        run_ffmpeg(
            [
                "-f",
                "lavfi",
                "-i",
                f"testsrc2=size={size}:rate=25:duration={seconds}",
                "-f",
                "lavfi",
                "-i",
                f"sine=frequency=300:sample_rate=48000:duration={seconds}",
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-g",
                "50",
                "-pix_fmt",
                "yuv420p",
                "-c:a",
                "aac",
                media_arg(path),
            ],
            "bench source",
        )
        print(f"generated {path.name} in {time.perf_counter() - t0:.1f} s", flush=True)
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--size", default="1280x720")
    p.add_argument("--clips", type=int, default=10)
    p.add_argument("--clip_seconds", type=float, default=20.0)
    p.add_argument("--preset", default="veryfast", help="x264 preset of the re-encode mode")
    args = p.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    src = source_video(args.minutes, args.size)
    step = args.minutes * 60 / args.clips
    clips = [Clip(i * step + 7.3, i * step + 7.3 + args.clip_seconds, f"clip {i}") for i in range(args.clips)]
    wanted = sum(c.duration for c in clips)
    rows = []
    for name, fast in (
        ("re-encode (libx264 " + args.preset + " + aac, frame-accurate)", False),
        ("stream copy (--fast, keyframe cuts)", True),
    ):
        out = OUT / ("reel_fast.mp4" if fast else "reel.mp4")
        t0 = time.perf_counter()
        make_reel(src, clips, out, fast=fast, preset=args.preset, progress=False)
        sec = time.perf_counter() - t0
        rows.append((name, sec, probe(out).duration))
        print(rows[-1], flush=True)
    print(
        f"\n{args.clips} clips x {args.clip_seconds:g} s ({wanted:g} s) from a {args.minutes:g}-minute {args.size} "
        f"25 fps source\n"
    )
    print("| mode | seconds | reel length (s) |\n|---|---|---|")
    for name, sec, length in rows:
        print(f"| {name} | {sec:.1f} | {length:.2f} |")


if __name__ == "__main__":
    main()
