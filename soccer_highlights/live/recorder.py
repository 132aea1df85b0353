"""Record a live stream to disk in short MPEG-TS segments as it arrives, reconnecting when it drops.

One ffmpeg process copies the source's first video and audio streams into `seg_NNNNNN.ts` files of about
`segment_sec` (cut at keyframes) and lists each finished one in a CSV; every listed segment is handed to
`on_segment` at once. The segments end to end are the recording: `playlist()` writes them as an HLS
playlist (`recording.m3u8`) that ffmpeg, VLC or a browser read like any finished video.

Faults. A full disk ends the recording with `highlights.disk_full.DiskFull` (never a reconnect). A source that sends nothing for `stall_sec` makes ffmpeg give up (its I/O timeout): the time
without data is a gap. A network source (udp, srt, rtmp, ...) is then reconnected, at once when the last
attempt waited for data, else after a back-off of 0.5, 1, 2, ... 8 s; the new process's timestamps start
where the recording stopped (`-output_ts_offset`), so the recording stays one continuous timeline in which
the gap takes no time, and the gap is recorded (where in the recording, how long, how many reconnects),
never filled with silence or frozen frames. The stream is over when nothing came for `end_after_sec`, or
when a file or an HLS playlist ends. A file or playlist with no data yet (a writer that has not flushed its
first packets: ffmpeg gives up on it after `stall_sec`) is tried again, as a network source is, until data
comes or `end_after_sec` has passed, with one line saying what is awaited. Stopping (`stop` set) ends the process with SIGINT, so it lists its
last segment; a process that does not end within a few seconds is killed and its unlisted segment removed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from soccer_highlights.common.atomic import write_text
from soccer_highlights.common.errors import UserError
from soccer_highlights.common.ffmpeg import ffmpeg_exe, last_error_line, media_arg, tied
from soccer_highlights.live.disk_full import DiskFull, full_reason, writing

log = logging.getLogger("live")

NETWORK = ("udp", "rtp", "srt", "rist", "rtmp", "rtmps", "rtmpt", "tcp", "http", "https")
LISTENING = ("udp", "rtp", "srt", "rist")  # protocols whose read waits for data (ffmpeg's `-timeout`)
STOP_WAIT_SEC = 4.0


class FolderGone(UserError):
    """The live run's output folder was removed (or replaced) while the run wrote into it: the run stops, and
    nothing of it is made again."""


def present(folder: Path, out: Path | None = None) -> None:
    """FolderGone unless `folder` (inside the run's folder `out`, default `folder`) is still there: checked before
    each write, as the writers make missing parent folders."""
    if not folder.is_dir():
        raise gone(out or folder)


def gone(out: Path) -> FolderGone:
    """The one line for a run folder `out` removed (or emptied) under the run."""
    return FolderGone(
        f"{out}: the output folder was removed during the live run; the run stopped and re-created nothing"
    )


@dataclass(frozen=True)
class Segment:
    """One recorded piece: its file and where it lies in the recording (seconds)."""

    index: int
    path: Path
    start: float
    end: float


@dataclass
class Gap:
    """Time without data: `at` seconds into the recording, `lost_sec` of wall-clock time, `reconnects`."""

    at: float
    lost_sec: float = 0.0
    reconnects: int = 0


def source_kind(source: str) -> str:
    """`network` (reconnected when it drops), `hls` (an .m3u8 playlist) or `file` (a file still being written,
    a capture device...)."""
    scheme = source.split("://", 1)[0].lower() if "://" in source else ""
    if re.search(r"\.m3u8($|\?)", source):
        return "hls"
    return "network" if scheme in NETWORK else "file"


def input_args(source: str, stall_sec: float, input_format: str | None = None) -> list[str]:
    """ffmpeg's input arguments for `source`, with an I/O timeout of `stall_sec` where the protocol has one."""
    kind, scheme = source_kind(source), source.split("://", 1)[0].lower()
    micro = str(int(stall_sec * 1e6))
    fmt = ["-f", input_format] if input_format else []
    if kind == "hls":
        local = "://" not in source
        return ["-live_start_index", "0", *fmt, "-i", media_arg(source) if local else source]
    if kind == "network":
        timeout = ["-timeout", micro] if scheme in LISTENING else ["-rw_timeout", micro]
        return [*timeout, *fmt, "-i", source]
    if input_format or source.startswith("/dev/"):
        return [*fmt, "-i", source]  # a capture device
    return ["-follow", "1", "-rw_timeout", micro, *fmt, "-i", media_arg(source)]


@dataclass
class Recorder:
    """Records `source` into `folder`; `run(stop)` blocks until the stream is over or `stop` is set."""

    source: str
    folder: Path
    on_segment: Callable[[Segment], None]
    segment_sec: float = 1.0
    stall_sec: float = 3.0
    end_after_sec: float = 30.0
    input_format: str | None = None
    reencode: bool = False
    segments: list[Segment] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        # "nothing for end_after_sec" counts from the later of this and the last data; None: not yet (starting up)
        self.epoch: float | None = None

    def reset_clock(self) -> None:
        """Count the time without data from now (the run was busy starting up until now)."""
        self.epoch = time.monotonic()

    @property
    def recorded(self) -> float:
        return self.segments[-1].end if self.segments else 0.0

    def run(self, stop: threading.Event) -> None:
        present(self.folder.parent)
        self.folder.mkdir(exist_ok=True)
        kind = source_kind(self.source)
        backoff, last_data, attempt = 0.5, time.monotonic(), 0
        open_gap: tuple[Gap, float] | None = None  # the gap and when data stopped
        while not stop.is_set():
            started = time.monotonic()
            first, last = self._one_process(attempt, stop)
            attempt += 1
            if first is not None:
                if open_gap:
                    open_gap[0].lost_sec = round(first - open_gap[1], 3)
                    open_gap = None
                last_data = last if last is not None else first
            now = time.monotonic()
            if stop.is_set() or self._quiet(last_data) >= self.end_after_sec:
                break
            if kind != "network":
                if self.segments:  # a file or playlist that ended
                    break
                if attempt == 1:  # no data yet: an empty growing file, a playlist not written yet
                    log.warning(
                        "%s: no data yet (%s); waiting up to %g s (--live_end_after) for it to grow",
                        self.source,
                        self.errors[-1] if self.errors else "empty",
                        self.end_after_sec,
                    )
            if open_gap is None and self.segments:  # waiting for the stream to start is no gap
                open_gap = (Gap(self.recorded), last_data)
                self.gaps.append(open_gap[0])
                log.warning("%s: no data at %.1f s of the recording, reconnecting", self.source, self.recorded)
            if open_gap is not None:
                open_gap[0].reconnects += 1
            if now - started < backoff:  # failed fast (refused, unreachable): wait before the next try
                stop.wait(backoff)
                backoff = min(8.0, backoff * 2)
            else:
                backoff = 0.5
        if open_gap:  # the stream ended there: not a gap
            self.gaps.remove(open_gap[0])

    def _quiet(self, last_data: float) -> float:
        """Seconds without data since `last_data` (0 while the run is starting up)."""
        return 0.0 if self.epoch is None else time.monotonic() - max(last_data, self.epoch)

    def _command(self, number: int, csv: Path) -> list[str]:
        codecs = ["-c:v", "libx264", "-preset", "veryfast", "-c:a", "aac"] if self.reencode else ["-c", "copy"]
        return [
            ffmpeg_exe(),
            *("-hide_banner", "-nostdin", "-loglevel", "error", "-progress", "pipe:1", "-stats_period", "0.5"),
            *input_args(self.source, self.stall_sec, self.input_format),
            *("-map", "0:v:0", "-map", "0:a:0", *codecs, "-output_ts_offset", f"{self.recorded:.6f}"),
            *("-f", "segment", "-segment_time", f"{self.segment_sec:g}", "-segment_format", "mpegts"),
            *("-segment_list", str(csv), "-segment_list_type", "csv", "-segment_start_number", str(number)),
            str(self.folder / "seg_%06d.ts"),
        ]

    def _one_process(self, attempt: int, stop: threading.Event) -> tuple[float | None, float | None]:
        """Run one recorder process to its end: when data first and last came (None, None: no data)."""
        csv = self.folder / f".list_{attempt:04d}.csv"
        first = len(self.segments)
        proc = subprocess.Popen(  # tied: this thread waits for it, and a killed run never leaves it recording
            tied(self._command(first, csv)), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        moved: list[float | None] = [None, None]
        progress = threading.Thread(target=_follow_progress, args=(proc, moved), daemon=True)
        progress.start()
        stderr: list[bytes] = []
        err = proc.stderr
        assert err is not None
        drain = threading.Thread(target=lambda: stderr.append(err.read()), daemon=True)
        drain.start()
        started = time.monotonic()
        try:
            try:
                while proc.poll() is None:
                    self._collect(csv, first)
                    if stop.is_set() or self._quiet(moved[1] or started) > self.end_after_sec:
                        break
                    stop.wait(0.2)
            finally:
                _interrupt(proc)
                progress.join()
                drain.join()
            self._full_disk(b"".join(stderr))
            self._collect(csv, first)
        finally:
            for stray in self.folder.glob("seg_*.ts"):  # a killed process's unlisted segment
                if int(stray.stem[4:]) >= len(self.segments):
                    stray.unlink(missing_ok=True)
        if len(self.segments) == first:
            self.errors.append(last_error_line(b"".join(stderr)))
            return None, None
        return moved[0] or started, moved[1] or time.monotonic()

    def _collect(self, csv: Path, first: int) -> None:
        """Hand on the segments the process (whose first segment is number `first`) listed since the last call."""
        with contextlib.suppress(FileNotFoundError):
            lines = csv.read_text().split("\n")[:-1]  # a last line without its newline is still being written
            for line in lines[len(self.segments) - first :]:
                name, _, end = line.rsplit(",", 2)
                seg = Segment(len(self.segments), self.folder / name, self.recorded, float(end))
                self.segments.append(seg)
                self.on_segment(seg)

    def _full_disk(self, stderr: bytes) -> None:
        """DiskFull when ffmpeg stopped on a full disk. The segment muxer may list the segment it could not
        finish: not collected from then on (removed as unlisted); one collected before stays, as listed (its
        packets up to where the disk filled), as the playlists in place may name it."""
        reason = full_reason(stderr)
        if reason is not None:
            raise DiskFull(self.folder / f"seg_{len(self.segments):06d}.ts", reason)

    def playlist(self, path: Path, *, final: bool) -> None:
        """Write the recording so far as an HLS playlist (finished with ENDLIST when `final`). On a full disk
        the finished playlist is made by appending ENDLIST to the one in place (whole, as each version is), as
        the decoders of a live run end only when it is finished; DiskFull when even that fails."""
        present(path.parent)
        try:
            with writing(path):
                write_text(path, playlist_text(self.segments, path.parent, final=final))
        except DiskFull:
            if not (final and _append_endlist(path)):
                raise


def playlist_text(segments: list[Segment], base: Path, *, final: bool) -> str:
    """An HLS (version 3) playlist of `segments`, their paths relative to `base`."""
    longest = max((s.end - s.start for s in segments), default=1.0)
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", f"#EXT-X-TARGETDURATION:{int(longest) + 1}", "#EXT-X-MEDIA-SEQUENCE:0"]
    lines.append("#EXT-X-PLAYLIST-TYPE:EVENT")
    for s in segments:
        lines += [f"#EXTINF:{s.end - s.start:.6f},", os.path.relpath(s.path, base)]
    if final:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def _append_endlist(path: Path) -> bool:
    """Finish the playlist at `path` in place (one small append); False when it is missing or that fails."""
    try:
        with open(path, "r+b") as fh:
            text = fh.read()
            if b"#EXT-X-ENDLIST" not in text and text.endswith(b"\n"):
                fh.write(b"#EXT-X-ENDLIST\n")
                fh.flush()
                text += b"#EXT-X-ENDLIST\n"
        return b"#EXT-X-ENDLIST" in text
    except OSError:
        return False


def _follow_progress(proc: subprocess.Popen, moved: list[float | None]) -> None:
    """Note when ffmpeg's output time first and last advanced (its `-progress` lines): when data came."""
    last = None
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(b"out_time_us="):
            value = line.split(b"=", 1)[1].strip()
            if value not in (last, b"N/A", b"0"):
                last, moved[1] = value, time.monotonic()
                moved[0] = moved[0] or moved[1]


def _interrupt(proc: subprocess.Popen) -> None:
    """Stop ffmpeg as `q` would (SIGINT: it finishes and lists its last segment), killed if it hangs."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(STOP_WAIT_SEC)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
