"""The reel: cut highlight spans out of the match video with ffmpeg and join them, in time order, into one MP4.

Default mode re-encodes (libx264 + aac) so every cut lands on the requested frame: each clip is an
input seeked with `-ss`/`-t` and the clips are joined by ffmpeg's concat filter in one encode. `fast`
mode copies streams instead, so cuts snap back to the keyframe before each start (longer clips, no
quality loss, seconds instead of minutes). A sidecar `.srt` and MP4 chapters name each clip. The reel
appears only when complete (written under a temporary name, renamed at the end).
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from soccer_highlights.common.atomic import atomic_path, write_text
from soccer_highlights.common.errors import UserError
from soccer_highlights.common.ffmpeg import ffmpeg_exe, last_error_line, media_arg, probe, tied
from soccer_highlights.common.timefmt import clock

# Clips joined by one concat-filter encode; more clips are encoded in groups and the groups stream-copied
# together, so ffmpeg never holds hundreds of open decoders.
GROUP_SIZE = 32


@dataclass(frozen=True)
class Clip:
    """One piece of the reel: [start, end) seconds of the source video and the text that names it."""

    start: float
    end: float
    title: str

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Reel:
    """What was written: the MP4, its subtitles, and where each clip sits in the reel (seconds)."""

    path: Path
    srt_path: Path | None
    clips: list[Clip]
    placed: list[tuple[float, float]]
    duration: float


def plan_clips(
    spans: Iterable[Any],
    duration: float,
    *,
    intro_sec: float = 0.0,
    outro_sec: float = 0.0,
    title: Callable[[Any], str] | None = None,
    join_overlaps: bool = True,
) -> list[Clip]:
    """Clips for the reel in time order: optional intro/outro, then spans clamped to [0, duration].

    `spans` are objects with `start`, `end` and `label` (e.g. decoder Spans; their `labels` when they have
    several). Overlapping clips are joined (their titles too) so no footage plays twice; with
    `join_overlaps=False` each span is its own clip, as in the seed's reel, and overlaps play twice.
    """
    name = title or (lambda s: f"{' + '.join(getattr(s, 'labels', (s.label,)))} {clock(s.start)}")
    clips = [Clip(float(s.start), float(s.end), name(s)) for s in spans]
    if intro_sec > 0:
        clips.append(Clip(0.0, intro_sec, "Kick-off"))
    if outro_sec > 0:
        clips.append(Clip(duration - outro_sec, duration, "Full time"))
    clamped = [Clip(max(0.0, c.start), min(duration, c.end), c.title) for c in clips]
    merged: list[Clip] = []
    for c in sorted((c for c in clamped if c.end > c.start), key=lambda c: (c.start, c.end)):
        if join_overlaps and merged and c.start < merged[-1].end:
            last = merged[-1]
            merged[-1] = Clip(last.start, max(last.end, c.end), f"{last.title} + {c.title}")
        else:
            merged.append(c)
    return merged


def make_reel(
    video: str | os.PathLike,
    clips: Sequence[Clip],
    out: str | os.PathLike,
    *,
    fast: bool = False,
    srt: bool = True,
    chapters: bool = True,
    crf: int = 20,
    preset: str = "veryfast",
    progress: bool = True,
    srt_out: str | os.PathLike | None = None,
) -> Reel:
    """Cut `clips` from `video` and write them joined to `out` (MP4), plus `srt_out` (default `out`.srt)
    when `srt`. The work files live in a `.reel.<pid>.<random>/` folder beside `out`, removed on any exit
    but a SIGKILL (then `common.atomic.sweep_leftovers` removes it later)."""
    video, out = Path(video), Path(out)
    if not clips:
        raise UserError(f"{out}: no clips to cut, no reel written")
    info = probe(video)
    if not info.has_video:
        raise UserError(f"{video}: has no video stream to cut a reel from")
    for c in clips:
        if c.start < 0 or c.end <= c.start or (info.duration and c.start >= info.duration):
            raise UserError(f"{video}: clip {c.start:.2f}-{c.end:.2f} s is outside the video ({info.duration:.2f} s)")
    with tempfile.TemporaryDirectory(prefix=f".reel.{os.getpid()}.", dir=_writable_dir(out.parent)) as tmpdir:
        work = Path(tmpdir)
        with atomic_path(out, suffix=".mp4") as tmp_out:
            if fast:
                lengths = _cut_stream_copy(video, clips, tmp_out, work, info.has_audio, chapters, progress)
            else:
                lengths = _cut_reencode(video, clips, tmp_out, work, info.has_audio, chapters, crf, preset, progress)
    placed, t = [], 0.0
    for length in lengths:
        placed.append((t, t + length))
        t += length
    srt_path = None
    if srt:
        srt_path = Path(srt_out) if srt_out else out.with_suffix(".srt")
        write_text(srt_path, srt_text(clips, placed))
    return Reel(out, srt_path, list(clips), placed, t)


def srt_text(clips: Sequence[Clip], placed: Sequence[tuple[float, float]]) -> str:
    """SubRip cues: clip i's title shown while it plays in the reel."""

    def stamp(t: float) -> str:
        ms = round(t * 1000)
        return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"

    return "\n".join(
        f"{i}\n{stamp(a)} --> {stamp(b)}\n{c.title}\n"
        for i, (c, (a, b)) in enumerate(zip(clips, placed, strict=True), 1)
    )


def chapters_text(clips: Sequence[Clip], lengths: Sequence[float]) -> str:
    """An ffmetadata file with one chapter per clip (millisecond time base)."""
    lines, t = [";FFMETADATA1"], 0.0
    for c, length in zip(clips, lengths, strict=True):
        title = re.sub(r"([=;#\\\n])", r"\\\1", c.title)
        lines += [
            "[CHAPTER]",
            "TIMEBASE=1/1000",
            f"START={round(t * 1000)}",
            f"END={round((t + length) * 1000)}",
            f"title={title}",
        ]
        t += length
    return "\n".join(lines) + "\n"


def concat_list_text(paths: Iterable[Path]) -> str:
    """A concat-demuxer list; each path single-quoted with embedded quotes escaped as '\\''."""
    return "".join("file '" + str(p.absolute()).replace("'", "'\\''") + "'\n" for p in paths)


def _writable_dir(folder: Path) -> Path:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{folder}: cannot write here ({exc.strerror or exc})") from exc
    if not os.access(folder, os.W_OK):
        raise UserError(f"{folder}: cannot write here (permission denied)")
    return folder


def _cut_reencode(
    video: Path,
    clips: Sequence[Clip],
    out: Path,
    work: Path,
    has_audio: bool,
    chapters: bool,
    crf: int,
    preset: str,
    progress: bool,
) -> list[float]:
    """Frame-accurate: one concat-filter encode per group of clips, groups joined by stream copy."""
    groups = [list(clips[i : i + GROUP_SIZE]) for i in range(0, len(clips), GROUP_SIZE)]
    lengths = [c.duration for c in clips]
    bar = tqdm(total=round(sum(lengths), 1), unit="s", desc="reel (re-encode)", disable=not progress)
    with bar:
        if len(groups) == 1:
            _encode_group(
                video,
                groups[0],
                out,
                has_audio,
                crf,
                preset,
                bar,
                _metadata(work, clips, lengths) if chapters else None,
            )
            return lengths
        parts = []
        for g, group in enumerate(groups):
            parts.append(work / f"group_{g:03d}.mp4")
            _encode_group(video, group, parts[-1], has_audio, crf, preset, bar, None)
    _concat_copy(parts, out, work, _metadata(work, clips, lengths) if chapters else None)
    return lengths


def _encode_group(
    video: Path,
    clips: Sequence[Clip],
    out: Path,
    has_audio: bool,
    crf: int,
    preset: str,
    bar: tqdm,
    metadata: Path | None,
) -> None:
    inputs: list[str] = []
    for c in clips:
        inputs += ["-ss", f"{c.start:.3f}", "-t", f"{c.duration:.3f}", "-i", media_arg(video)]
    pads = "".join(f"[{i}:v:0]" + (f"[{i}:a:0]" if has_audio else "") for i in range(len(clips)))
    # yuv420p needs an even width and height: an odd-size video (1281x721) is padded by one pixel, any pixel format
    # converted, so that every decodable video gives a reel
    even = "[cat]pad=ceil(iw/2)*2:ceil(ih/2)*2,format=yuv420p[v]"
    graph = f"{pads}concat=n={len(clips)}:v=1:a={int(has_audio)}[cat]" + ("[a]" if has_audio else "") + f";{even}"
    args = [
        *inputs,
        *_metadata_args(metadata, len(clips)),
        "-filter_complex",
        graph,
        "-map",
        "[v]",
        "-c:v",
        "libx264",
        "-preset",
        preset,
        "-crf",
        str(crf),
        "-pix_fmt",
        "yuv420p",
    ]
    if has_audio:
        args += ["-map", "[a]", "-c:a", "aac", "-b:a", "128k"]
    _run(args + ["-movflags", "+faststart", "-f", "mp4", media_arg(out)], f"{video}: cutting the reel", bar)


def _cut_stream_copy(
    video: Path, clips: Sequence[Clip], out: Path, work: Path, has_audio: bool, chapters: bool, progress: bool
) -> list[float]:
    """Keyframe cuts: each clip stream-copied from the keyframe at or before its start, then joined."""
    parts, lengths = [], []
    for i, c in enumerate(tqdm(clips, desc="reel (stream copy)", unit="clip", disable=not progress)):
        parts.append(work / f"clip_{i:03d}.mp4")
        maps = ["-map", "0:v:0"] + (["-map", "0:a:0"] if has_audio else [])
        _run(
            [
                "-ss",
                f"{c.start:.3f}",
                "-t",
                f"{c.duration:.3f}",
                "-i",
                media_arg(video),
                *maps,
                "-c",
                "copy",
                "-avoid_negative_ts",
                "make_zero",
                "-f",
                "mp4",
                media_arg(parts[-1]),
            ],
            f"{video}: cutting clip {i + 1}",
        )
        lengths.append(probe(parts[-1]).duration)
    _concat_copy(parts, out, work, _metadata(work, clips, lengths) if chapters else None)
    return lengths


def _concat_copy(parts: Sequence[Path], out: Path, work: Path, metadata: Path | None) -> None:
    listing = work / "concat.txt"
    listing.write_text(concat_list_text(parts))
    _run(
        [
            "-f",
            "concat",
            "-safe",
            "0",
            "-i",
            media_arg(listing),
            *_metadata_args(metadata, 1),
            "-map",
            "0",
            "-c",
            "copy",
            "-movflags",
            "+faststart",
            "-f",
            "mp4",
            media_arg(out),
        ],
        f"{out}: joining the clips",
    )


def _metadata(work: Path, clips: Sequence[Clip], lengths: Sequence[float]) -> Path:
    path = work / "chapters.txt"
    path.write_text(chapters_text(clips, lengths))
    return path


def _metadata_args(metadata: Path | None, index: int) -> list[str]:
    """Input args for an ffmetadata file that will be input number `index`, and the maps that use it."""
    if metadata is None:
        return []
    return ["-f", "ffmetadata", "-i", media_arg(metadata), "-map_metadata", str(index), "-map_chapters", str(index)]


def _run(args: list[str], what: str, bar: tqdm | None = None) -> None:
    """Run ffmpeg; with `bar`, advance it by the output time ffmpeg reports. Failure -> one-line UserError."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", "-nostats", "-progress", "pipe:1", *args]
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(tied(cmd), stdout=subprocess.PIPE, stderr=err, text=True)
        try:
            _follow(proc, bar)
        except BaseException:  # Ctrl-C, SIGTERM: ffmpeg must not go on writing into a folder being removed
            proc.kill()
            proc.wait()
            raise
        code = proc.wait()
        if code != 0:
            err.seek(0)
            raise UserError(f"{what}: ffmpeg failed ({last_error_line(err.read())})")


def _follow(proc: subprocess.Popen, bar: tqdm | None) -> None:
    """Read ffmpeg's `-progress` lines; with `bar`, set it to the output time ffmpeg reports."""
    assert proc.stdout is not None
    done, base = 0.0, (bar.n if bar is not None else 0.0)  # a bar may span several ffmpeg runs
    for line in proc.stdout:
        if bar is not None and line.startswith("out_time_us=") and line[12:].strip().isdigit():
            done = max(done, int(line[12:]) / 1e6)
            bar.n = round(min(base + done, bar.total), 1)  # set, not accumulate: no float drift in the display
            bar.refresh()
