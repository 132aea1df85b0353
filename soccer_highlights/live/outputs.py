"""What a live run grows in --out, every file consistent whenever it is read.

- `recording.m3u8` + `recording/seg_*.ts`: the stream as recorded (an HLS playlist, finished at the end).
- `clips/NNNN_<class>.mp4`: one clip per final span, cut by stream copy from the recording (the cut snaps
  to the keyframe at or before the span's start), and `clips/NNNN_<class>.ts`, the same clip in MPEG-TS.
- `highlights.m3u8`: an HLS playlist of the `.ts` clips so far (VLC, Safari, hls.js play it while it grows).
- `spans.jsonl`: one line per final span (the fields of `spans.json`, plus its clip, when it became final and
  its latency), each line appended whole after its clip is in place (a line the disk has no room for is cut
  back off, and its clip removed: `clips/` holds the clips of spans.jsonl).
- `live.json`: the run's state (tokens, real-time factor, gaps of the stream), replaced atomically.

A full disk raises `highlights.disk_full.DiskFull` naming the file; `RESERVE_BYTES` held in `.reserve.*` are
freed then, so that the run can still finish its playlists and live.json.

A lock (`.live.lock`) keeps a second live run out of a folder a live run is writing; a folder that holds an
earlier live run's recording is refused (with the command that makes its end-of-run outputs, when it has none),
so a recording is never overwritten; so is a folder holding a file of the user's with the name of an end-of-run
output (`common.atomic.check_replaceable`; `--keep_old` keeps it as NAME.old-N.EXT). A run that recorded
nothing removes what it made (`clear_failed_start`), so that the retry is accepted. `report.html`, rewritten
during the run, is recorded in `.outputs.json` as the run's own each time.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shlex
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from soccer_highlights.common.atomic import (
    MANIFEST,
    check_replaceable,
    keep_aside,
    record_files,
    write_json,
    write_text,
)
from soccer_highlights.common.cli import command_name
from soccer_highlights.common.errors import UserError
from soccer_highlights.common.ffmpeg import media_arg, run_ffmpeg
from soccer_highlights.highlights.reel import Clip, make_reel
from soccer_highlights.live.disk_full import writing
from soccer_highlights.live.recorder import Recorder, present
from soccer_highlights.writers.outputs import OUTPUT_FILES, span_record

LIVE_FILES = ("spans.jsonl", "recording.m3u8", "highlights.m3u8", "live.json")
RESERVE_BYTES = 1 << 20  # held on the disk during a run, freed on a full disk for the last small writes


def recovery_command(out: Path, model: Path | None) -> str:
    """The command that makes the end-of-run outputs (spans.json, report, reel) from a live run's recording."""
    name = command_name("soccer-highlights")
    model_arg = shlex.quote(str(model)) if model is not None else "MODEL.keras"
    playlist = shlex.quote(str(out / "recording.m3u8"))
    return f"{name} --model {model_arg} --video {playlist} --out {shlex.quote(str(out))}"


def lock_folder(out: Path, model: Path | None = None, keep_old: bool = False) -> Any:
    """Hold `out` for this run (released when the process ends); UserError when another run holds it, it holds
    an earlier live run's outputs (the message gives the command that makes the end-of-run outputs of a
    recording that has none), or a file of the user's with an end-of-run output's name (`keep_old`: the
    user's report.html, which the run rewrites as it goes, is kept as report.old-N.html at once)."""
    made_dir, made_lock = not out.exists(), not (out / ".live.lock").exists()
    out.mkdir(parents=True, exist_ok=True)
    handle = open(out / ".live.lock", "a+")  # noqa: SIM115 - held for the whole run
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        handle.close()
        raise UserError(f"{out}: another live run is writing into this folder") from exc
    try:
        earlier = [n for n in (*LIVE_FILES, "clips", "recording") if (out / n).exists()]
        if earlier:
            recover = ""
            if (out / "recording.m3u8").is_file() and not (out / "spans.json").exists():
                recover = f"; its end-of-run outputs: `{recovery_command(out, model)}`"
            raise UserError(f"{out}: holds an earlier live run ({', '.join(earlier)}); give another --out{recover}")
        if "report.html" in check_replaceable(out, OUTPUT_FILES, keep_old):
            keep_aside(out / "report.html")
    except BaseException:  # refused: the folder is left as it was
        handle.close()
        with contextlib.suppress(OSError):
            if made_lock:
                (out / ".live.lock").unlink()
            if made_dir:
                out.rmdir()
        raise
    return handle


def clear_failed_start(out: Path, before: set[str] | None) -> None:
    """Remove what a live run that recorded nothing made in `out` (empty playlists and spans.jsonl, clips/,
    recording/, its report.html and record, live.json, the lock): every such entry not among `before`, the names
    `out` held before the run (None: `out` did not exist; it is removed too when left empty). A retry into `out`
    is then accepted; nothing else in `out` is touched."""
    if not out.is_dir():
        return
    for name in (*LIVE_FILES, "report.html", MANIFEST, ".live.lock", "clips", "recording"):
        path = out / name
        if before is not None and name in before:
            continue
        with contextlib.suppress(OSError):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)  # no segment was listed, no span given out: the recorder's lists only
            elif path.is_file() or path.is_symlink():
                path.unlink()
    if before is None:
        with contextlib.suppress(OSError):
            out.rmdir()


class LiveOutputs:
    """The growing outputs of one live run in `out` (the folder locked by `lock_folder`); `now`: the run's clock
    (time.monotonic unless a test gives its own), what clip latencies are counted on."""

    def __init__(
        self,
        out: Path,
        recorder: Recorder,
        labels: dict,
        names: list[str],
        half: int = 1,
        now: Callable[[], float] = time.monotonic,
    ):
        self.out = out
        self.now = now
        self.recorder = recorder
        self.labels, self.names, self.half = labels, names, half
        self.clips: list[tuple[Path, float]] = []  # (.ts clip, duration)
        self.lines = 0  # lines in spans.jsonl
        present(out)
        with writing(out / "clips"):
            (out / "clips").mkdir(exist_ok=True)
        with writing(out / "spans.jsonl"):
            self._jsonl = os.open(out / "spans.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
        self._reserve = _reserve(out)
        self.playlist()

    def playlist(self, *, final: bool = False, recording: bool = True) -> None:
        """highlights.m3u8 (and, when `final` and `recording`, the finished recording.m3u8; while the stream
        plays only the recorder's thread writes that one, so a clip can never unfinish it)."""
        if final and recording:
            self.recorder.playlist(self.out / "recording.m3u8", final=True)
        present(self.out)
        with writing(self.out / "highlights.m3u8"):
            write_text(self.out / "highlights.m3u8", highlights_playlist(self.clips, self.out, final=final))

    def add(self, span: Any, info: dict[str, Any], since: float) -> dict:
        """Cut `span`'s clip, then append its line to spans.jsonl (with `latency_sec`, the clip's time ready less
        `since`, both on the run's clock `now`) and the clip to highlights.m3u8. A clip whose line could not be
        written is removed again: clips/ holds only the clips of spans.jsonl (DiskFull on a full disk)."""

        present(self.out / "clips", self.out)
        number = len(self.clips) + 1
        name = f"{number:04d}_{_safe(span.label)}"
        mp4, ts = self.out / "clips" / f"{name}.mp4", self.out / "clips" / f"{name}.ts"
        try:
            with writing(mp4):
                reel = self._cut(span, mp4)
            with writing(ts), tempfile.TemporaryDirectory(prefix=f".clip.{os.getpid()}.", dir=self.out) as work:
                tmp = Path(work) / "clip.ts"
                run_ffmpeg(["-i", media_arg(mp4), "-map", "0", "-c", "copy", "-f", "mpegts", media_arg(tmp)], f"{ts}")
                os.replace(tmp, ts)
            record = {
                "number": number,
                "clip": f"clips/{mp4.name}",
                **span_record(span, self.half, self.labels, self.names),
                **info,
                "latency_sec": round(self.now() - since, 2),
            }
            with writing(self.out / "spans.jsonl"):
                self._append(json.dumps(record) + "\n")
        except BaseException:
            mp4.unlink(missing_ok=True)
            ts.unlink(missing_ok=True)
            raise
        self.lines += 1
        self.clips.append((ts, reel.duration))
        self.playlist()
        return record

    def _cut(self, span: Any, mp4: Path) -> Any:
        """The clip by stream copy from a finished snapshot of the recording so far (ffmpeg seeks in it)."""
        snapshot = self.out / "recording" / f".cut.{os.getpid()}.m3u8"
        self.recorder.playlist(snapshot, final=True)
        try:
            end = min(span.end, self.recorder.recorded)
            return make_reel(snapshot, [Clip(span.start, end, span.label)], mp4, fast=True, srt=False, progress=False)
        finally:
            snapshot.unlink(missing_ok=True)

    def _append(self, line: str) -> None:
        """One whole line or nothing: a failed write (after a short one, the rest's) is cut back off."""
        size = os.fstat(self._jsonl).st_size
        data = line.encode()
        try:
            while data:
                data = data[os.write(self._jsonl, data) :]
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(self._jsonl, size)
            raise UserError(f"{self.out / 'spans.jsonl'}: cannot write ({exc.strerror or exc})") from exc

    def state(self, data: dict) -> None:
        present(self.out)
        with writing(self.out / "live.json"):
            write_json(self.out / "live.json", data)

    def record(self, name: str) -> None:
        """`name` in `out` was written by this run: recorded, so that the end-of-run outputs (or a later run into
        this folder) may replace it."""
        with writing(self.out / MANIFEST):
            record_files(self.out, [name])

    def finished(self) -> bool:
        """recording.m3u8 ends with ENDLIST (so its decoders end at its last segment)."""
        with contextlib.suppress(OSError):
            return "#EXT-X-ENDLIST" in (self.out / "recording.m3u8").read_text()
        return False

    def release(self) -> None:
        """Free the space held for the end of a run stopped by a full disk (finished playlists, live.json)."""
        if self._reserve is not None:
            self._reserve.unlink(missing_ok=True)
            self._reserve = None

    def close(self) -> None:
        self.release()
        if self._jsonl >= 0:
            with contextlib.suppress(OSError):
                os.close(self._jsonl)
            self._jsonl = -1


def _reserve(out: Path) -> Path | None:
    """A hidden file of RESERVE_BYTES in `out` (named as a temporary, swept if a killed run leaves it); None
    when the disk has not that much room."""
    with contextlib.suppress(OSError):
        fd, name = tempfile.mkstemp(prefix=f".reserve.{os.getpid()}.", dir=out)
        try:
            os.posix_fallocate(fd, 0, RESERVE_BYTES)
            return Path(name)
        except OSError:
            os.unlink(name)
        finally:
            os.close(fd)
    return None


def highlights_playlist(clips: list[tuple[Path, float]], base: Path, *, final: bool) -> str:
    """An HLS playlist of the clips (each its own timeline, hence a discontinuity before each)."""
    longest = max((d for _, d in clips), default=1.0)
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", f"#EXT-X-TARGETDURATION:{int(longest) + 1}", "#EXT-X-MEDIA-SEQUENCE:0"]
    lines.append("#EXT-X-PLAYLIST-TYPE:EVENT")
    for i, (path, duration) in enumerate(clips):
        lines += (["#EXT-X-DISCONTINUITY"] if i else []) + [f"#EXTINF:{duration:.3f},", os.path.relpath(path, base)]
    if final:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name) or "span"
