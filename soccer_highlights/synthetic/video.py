"""A demo match video for a synthetic game: generated pictures and sound, made by ffmpeg in seconds.

The picture is ffmpeg's moving test pattern with a coloured box flashing for 3 s at every highlight
event of the game's half (goal yellow, card red, subs blue, kick white); the sound is a low hum over
pink noise that gets loud at the same moments. Paired with that game's features (which carry the
events too), it lets `run_inference.sh` show the whole path from a video to a reel without any real
football.

    python -m soccer_highlights.synthetic.video --game_dir demo_data/league/season/game --half 1 --out demo_data/match.mp4
    python -m soccer_highlights.synthetic.video --duration 60 --out clip.mp4          # no events, e.g. for tests
    python -m soccer_highlights.synthetic.video --demo --out demo_data                 # the demo game + its first-half video
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from soccer_highlights import dataset
from soccer_highlights.common.atomic import atomic_path
from soccer_highlights.common.cli import Parser, RawHelpFormatter, warn_deprecated
from soccer_highlights.common.errors import UserError, run_cli
from soccer_highlights.common.ffmpeg import media_arg, run_ffmpeg
from soccer_highlights.synthetic import games as synthetic

# The demo game: drawn with its own seed (so no demo training set contains it), 8-minute halves, and a first
# half with nine highlights of all four classes.
DEMO_SEED, DEMO_INDEX, DEMO_HALF_MINUTES = 2026, 9, 8.0
COLOURS = {"goal": "yellow", "card": "red", "subs": "blue", "kick": "white"}
FLASH_SEC = 3.0


def game_events(game_dir: str | os.PathLike, half: int) -> tuple[float, list[tuple[float, str]]]:
    """(half duration in seconds, [(event seconds, highlight class)]) of one half of a synthetic game."""

    video, _ = dataset.load_half(Path(game_dir), half)
    cmap = dataset.load_class_map("highlight")
    events = [
        (e.position_ms / 1000, cmap.classes[cmap.label_to_index[e.label]])
        for e in dataset.read_labels(Path(game_dir))
        if e.half == half and cmap.label_to_index.get(e.label, 0) != 0
    ]
    return len(video) / 2.0, sorted(events)


def _between(events: Sequence[tuple[float, str]]) -> str:
    return "+".join(f"between(t,{t:.2f},{t + FLASH_SEC:.2f})" for t, _ in events) or "0"


def make_match_video(
    out: str | os.PathLike,
    duration: float,
    events: Sequence[tuple[float, str]] = (),
    *,
    size: str = "320x180",
    fps: int = 25,
    audio: bool = True,
    sample_rate: int = 16000,
) -> Path:
    """Write the demo video: test pattern + coloured flash per event, hum + loud bursts per event."""
    if duration <= 0:
        raise UserError(f"{out}: duration must be > 0 seconds, got {duration}")
    w, h = size.split("x")
    boxes = [
        f"drawbox=x=0:y=0:w={w}:h={int(h) // 4}:color={colour}@0.9:t=fill:enable='{_between(evs)}'"
        for cls, colour in COLOURS.items()
        if (evs := [e for e in events if e[1] == cls])
    ]
    graph = [
        f"testsrc2=size={size}:rate={fps}:duration={duration:.3f},eq=brightness=-0.3:saturation=0.3"
        + "".join("," + b for b in boxes)
        + "[v]"
    ]
    maps = ["-map", "[v]"]
    if audio:
        graph.append(
            f"sine=frequency=110:sample_rate={sample_rate}:duration={duration:.3f}[hum];"
            f"anoisesrc=color=pink:amplitude=0.1:sample_rate={sample_rate}:duration={duration:.3f}[crowd];"
            f"[hum][crowd]amix=inputs=2:normalize=0,"
            f"volume=volume='0.3+2.5*({_between(events)})':eval=frame[a]"
        )
        maps += ["-map", "[a]", "-c:a", "aac", "-b:a", "64k"]
    out = Path(out)
    with atomic_path(out, suffix=".mp4") as tmp:
        run_ffmpeg(
            [
                "-filter_complex",
                ";".join(graph),
                *maps,
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-crf",
                "32",
                "-g",
                str(2 * fps),
                "-pix_fmt",
                "yuv420p",
                "-t",
                f"{duration:.3f}",
                "-f",
                "mp4",
                media_arg(tmp),
            ],
            f"{out}: making the demo video",
        )
    return out


def make_demo(folder: str | os.PathLike) -> tuple[Path, Path]:
    """Write the demo game (`folder/game`, SoccerNet layout) and a video of its first half (`folder/match.mp4`)."""

    folder = Path(folder)
    game_dir = synthetic.write_game(
        synthetic.make_game(DEMO_INDEX, seed=DEMO_SEED, half_minutes=DEMO_HALF_MINUTES), folder / "game"
    )
    duration, events = game_events(game_dir, 1)
    return game_dir, make_match_video(folder / "match.mp4", duration, events)


def main(argv: Sequence[str] | None = None) -> int:
    doc = __doc__.split("\n\n")
    p = Parser(
        command="soccer-synthetic-video",
        description=doc[0],
        epilog=doc[-1],
        formatter_class=RawHelpFormatter,
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--game_dir", help="synthetic SoccerNet game folder: events and duration of --half")
    src.add_argument("--duration", type=float, help="seconds of video without events")
    src.add_argument(
        "--demo",
        nargs="?",
        const=True,
        metavar="DIR",
        help="write the demo game (OUT/game) and its video (OUT/match.mp4); DIR instead of --out is deprecated",
    )
    p.add_argument("--half", type=int, default=1, choices=(1, 2), help="half of --game_dir")
    p.add_argument("--out", help="output .mp4 (with --game_dir / --duration); with --demo, the output folder")
    p.add_argument("--size", default="320x180", help="picture size, WIDTHxHEIGHT")
    p.add_argument("--fps", type=int, default=25, help="frames per second")
    p.add_argument("--no_audio", action="store_true", help="video stream only")
    args = p.parse_args(argv)
    if isinstance(args.demo, str):  # the earlier spelling, --demo DIR
        warn_deprecated(f"--demo {args.demo}", f"--demo --out {args.demo}")
        args.out = args.out or args.demo
    if args.demo:
        if not args.out:
            p.error("--out DIR is required with --demo")
        game_dir, video = make_demo(args.out)
        print(f"demo game {game_dir}, video {video}")
        return 0
    if not args.out:
        p.error("--out is required with --game_dir / --duration")
    duration, events = game_events(args.game_dir, args.half) if args.game_dir else (args.duration, [])
    out = make_match_video(args.out, duration, events, size=args.size, fps=args.fps, audio=not args.no_audio)
    print(f"{out}: {duration:.0f} s, {len(events)} events")
    return 0


if __name__ == "__main__":
    run_cli(main)
