"""A live run on a disk that fills up: one `error:` line, a non-zero exit, and every file it had published whole.

The real test streams a generated match over udp into a live run whose --out is on a small disk of its own, and
fills that disk once the first span is out: a tmpfs mounted for the test when it runs as root (as here and in
CI), else a folder where ENOSPC is injected (Python's writes and ffmpeg's, through a wrapper). The unit tests
give each writer of a live run ENOSPC in turn.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import io
import json
import os
import re
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from soccer_highlights.commands import inference
from soccer_highlights.common.errors import UserError, run_cli
from soccer_highlights.common.ffmpeg import ffmpeg_exe, media_arg, probe
from soccer_highlights.highlights.decoder import Span
from soccer_highlights.highlights.reel import Reel
from soccer_highlights.live.disk_full import DiskFull, full_reason, stopped_message, writing
from soccer_highlights.live.outputs import LiveOutputs
from soccer_highlights.live.recorder import Recorder, Segment
from tests import test_live
from tests.test_live import _free_udp_port, _offline, _udp, playing

# the fixtures of tests/test_live.py: the generated match, short decoder rules, a fast stand-in for ResNet-152
match, decoder_config, fast_frames = test_live.match, test_live.decoder_config, test_live.fast_frames

NOSPACE = os.strerror(errno.ENOSPC)


# ---- a disk that fills up ---------------------------------------------------------------------------------------


class SmallDisk:
    """A folder on a disk of its own; `fill()` fills it up (what a live run writes after that fails)."""

    def __init__(self, root: Path, how: str):
        self.root, self.how = root, how
        self.flag = root.parent / "disk-is-full"  # the injected disk: full once this exists
        self.free = 0  # the injected disk: bytes freed since it was full
        self.lock = threading.Lock()

    def take(self, size: int) -> None:
        """The injected disk: room for `size` more bytes, or ENOSPC."""
        with self.lock:
            if self.flag.exists() and size > self.free:
                raise OSError(errno.ENOSPC, NOSPACE)
            self.free -= size if self.flag.exists() else 0

    def fill(self) -> None:
        if self.how == "tmpfs":
            with open(self.root / "ballast", "wb") as fh, contextlib.suppress(OSError):
                while True:
                    fh.write(b"\0" * (1 << 20))
                    fh.flush()
        self.flag.touch()

    def empty(self) -> None:
        """Room again."""
        (self.root / "ballast").unlink(missing_ok=True)
        self.flag.unlink(missing_ok=True)


def _mount_tmpfs(root: Path) -> bool:
    if os.geteuid() != 0 or os.environ.get("LIVE_DISK_INJECT"):
        return False
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(root)], capture_output=True)
    if proc.returncode:
        warnings.warn(f"cannot mount a tmpfs ({proc.stderr.decode().strip()}): ENOSPC injected instead", stacklevel=2)
    return proc.returncode == 0


@pytest.fixture
def small_disk(tmp_path, monkeypatch) -> Iterator[SmallDisk]:
    """A 16 MB tmpfs (unmounted after the test, also when it fails), else a folder with ENOSPC injected."""
    root = tmp_path / "disk"
    root.mkdir()
    if _mount_tmpfs(root):
        try:
            yield SmallDisk(root, "tmpfs")
        finally:
            if subprocess.run(["umount", str(root)], capture_output=True).returncode:
                subprocess.run(["umount", "-l", str(root)], check=True)
        return
    disk = SmallDisk(root, "injected")
    _inject_enospc(disk, monkeypatch)
    try:
        yield disk
    finally:
        ffmpeg_exe.cache_clear()


class _Full:
    """A file on the injected disk: a write takes the disk's free bytes, ENOSPC when there are too few."""

    def __init__(self, fh, disk: SmallDisk):
        self.fh, self.disk = fh, disk

    def write(self, data):
        self.disk.take(len(data))
        return self.fh.write(data)

    def __getattr__(self, name):
        return getattr(self.fh, name)

    def __iter__(self):
        return iter(self.fh)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.fh.close()


def _inject_enospc(disk: SmallDisk, monkeypatch) -> None:
    """Once `disk.flag` exists, the disk is full: this process's writes under `disk.root` fail with ENOSPC but for
    the bytes of the files removed since, and an ffmpeg writing there fails (a wrapper as $FFMPEG_BINARY kills
    it and says what ffmpeg says on a full disk)."""
    real_open, real_write, real_unlink, root = builtins.open, os.write, os.unlink, str(disk.root)

    def fake_open(file, mode="r", *args, **kwargs):
        fh = real_open(file, mode, *args, **kwargs)
        name = str(os.fspath(file)) if isinstance(file, str | os.PathLike) else ""
        return _Full(fh, disk) if any(m in mode for m in "wax+") and name.startswith(root) else fh

    def fake_write(fd, data):
        target = ""
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
        if target.startswith(root):
            disk.take(len(data))
        return real_write(fd, data)

    def fake_unlink(path, *args, **kwargs):
        name = str(os.fspath(path))
        size = (
            os.stat(path).st_size if name.startswith(root) and not args and not kwargs and os.path.isfile(path) else 0
        )
        real_unlink(path, *args, **kwargs)
        disk.free += size

    wrapper = disk.root.parent / "ffmpeg-on-a-full-disk"
    wrapper.write_text(f"#!{sys.executable}\n" + WRAPPER.format(real=ffmpeg_exe(), root=root, flag=str(disk.flag)))
    wrapper.chmod(0o755)
    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(io, "open", fake_open)
    monkeypatch.setattr(os, "write", fake_write)
    monkeypatch.setattr(os, "unlink", fake_unlink)
    monkeypatch.setattr(os, "remove", fake_unlink)
    monkeypatch.setenv("FFMPEG_BINARY", str(wrapper))
    ffmpeg_exe.cache_clear()  # and again after the test (`small_disk`)


WRAPPER = """
import ctypes, os, signal, subprocess, sys, time
real, root, flag, args = {real!r}, {root!r}, {flag!r}, sys.argv[1:]
output = args[-1].removeprefix("file:") if len(args) > 1 and args[-2] != "-i" else ""
if not output.startswith(root):
    os.execv(real, [real, *args])
if os.path.exists(flag):
    sys.stderr.write(f"Error opening output {{output}}: No space left on device\\n")
    sys.exit(228)
child = subprocess.Popen([real, *args], preexec_fn=lambda: ctypes.CDLL(None).prctl(1, 9))
signal.signal(signal.SIGINT, lambda *_: child.send_signal(signal.SIGINT))
while child.poll() is None:
    if os.path.exists(flag):
        child.kill()
        child.wait()
        sys.stderr.write("Error writing trailer: No space left on device\\n")
        sys.exit(228)
    time.sleep(0.05)
sys.exit(child.returncode)
"""


# ---- the real thing ---------------------------------------------------------------------------------------------


def _fill_after_first_span(disk: SmallDisk, out: Path, done: threading.Event) -> None:
    while not done.wait(0.1):
        with contextlib.suppress(OSError):
            if (out / "spans.jsonl").read_text().strip():
                disk.fill()
                return


@pytest.mark.slow
@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_disk_that_fills_mid_run_stops_it_with_one_line_and_whole_files(
    tiny_model,
    match,
    decoder_config,
    small_disk,
    tmp_path,
    capsys,  # noqa: F811 - fixtures of tests.test_live
):
    out, port = small_disk.root / "live", _free_udp_port()
    argv = [
        "--model",
        str(tiny_model),
        "--out",
        str(out),
        "--live",
        _udp(port),
        "--decoder_config",
        str(decoder_config),
    ]
    argv += ["--threshold", "0.05", "--weights", "random", "--quiet", "--fast", "--live_segment", "1"]
    argv += ["--live_stall", "2", "--live_end_after", "4"]
    done = threading.Event()
    filler = threading.Thread(target=_fill_after_first_span, args=(small_disk, out, done), daemon=True)
    filler.start()
    try:
        with (
            playing(match, "-f", "mpegts", f"udp://127.0.0.1:{port}?pkt_size=1316", ready=out / "spans.jsonl"),
            pytest.raises(SystemExit) as exit_info,
        ):
            run_cli(inference.main, argv)
    finally:
        done.set()
        filler.join()
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert exit_info.value.code == 2 and small_disk.flag.exists(), err
    assert len(errors) == 1 and "Traceback" not in err, err
    assert errors[0].startswith(f"error: {out}: disk full ({NOSPACE}) while writing "), errors
    lines = [json.loads(line) for line in (out / "spans.jsonl").read_text().splitlines()]
    assert lines and f"; {len(lines)} span(s) so far are in spans.jsonl" in errors[0]
    assert [line["number"] for line in lines] == list(range(1, len(lines) + 1))
    _check_published(out, lines)
    small_disk.empty()  # as the line says: with room again, the recording gives the end-of-run outputs
    assert _offline(tiny_model, out, decoder_config)["spans"] is not None


def _check_published(out: Path, lines: list[dict]) -> None:
    """Clips: those of spans.jsonl, whole, highlights.m3u8 listing them in order; the recording finished, its
    segments there; no temporary file left; live.json says why the run stopped."""
    clips = [out / line["clip"] for line in lines]
    assert sorted((out / "clips").iterdir()) == sorted(clips + [c.with_suffix(".ts") for c in clips])
    listed = [line for line in (out / "highlights.m3u8").read_text().splitlines() if not line.startswith("#")]
    assert listed == [f"clips/{c.stem}.ts" for c in clips][: len(listed)]
    for clip in clips + [c.with_suffix(".ts") for c in clips]:
        _whole_video(clip)
    recording = (out / "recording.m3u8").read_text()
    assert recording.rstrip().endswith("#EXT-X-ENDLIST")
    assert all((out / name).is_file() for name in recording.splitlines() if not name.startswith("#"))
    hidden = {p.relative_to(out).as_posix() for p in out.rglob(".*")}
    ours = {".live.lock", ".outputs.json"}  # the lock, and the record of report.html (the run's own)
    assert {h for h in hidden if not re.fullmatch(r"recording/\.list_\d{4}\.csv", h)} <= ours, hidden
    state = json.loads((out / "live.json").read_text())
    assert state["state"] == "stopped: disk full" and "disk full" in state["error"]


def _whole_video(path: Path) -> None:
    """Probed as a video and decoded to its end without an error."""
    assert probe(path).has_video, path
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-i", media_arg(path), "-f", "null", "-"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0 and not proc.stderr.strip(), (path, proc.stderr)


# ---- each writer on a full disk ---------------------------------------------------------------------------------


def _outputs(tmp_path: Path, monkeypatch, *, ts_fails: bool = False, now=time.monotonic) -> LiveOutputs:
    """LiveOutputs whose clips are cut by stand-ins (a few bytes each; the .ts one fails on a full disk)."""
    recorder = Recorder("udp://127.0.0.1:9", tmp_path / "recording", lambda seg: None)

    def cut(self, span, mp4):
        mp4.write_bytes(b"mp4")
        return Reel(mp4, None, [], [], 5.0)

    def ffmpeg(args, what):
        if ts_fails:
            raise UserError(f"{what}: ffmpeg failed (av_interleaved_write_frame(): {NOSPACE})")
        Path(args[-1].removeprefix("file:")).write_bytes(b"ts")

    monkeypatch.setattr(LiveOutputs, "_cut", cut)
    monkeypatch.setattr("soccer_highlights.live.outputs.run_ffmpeg", ffmpeg)
    return LiveOutputs(tmp_path, recorder, {0: "Goal"}, ["goal"], now=now)


def _span(peak: float) -> Span:
    return Span(peak - 2, peak + 3, "goal", 0.9, peak)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*") if p.name != ".live.lock" and not p.name.startswith(".reserve"))


def test_a_spans_jsonl_line_cut_short_by_a_full_disk_is_cut_off_with_its_clip(tmp_path, monkeypatch):
    outputs = _outputs(tmp_path, monkeypatch)
    outputs.add(_span(10), {}, 0.0)
    before = (tmp_path / "spans.jsonl").read_bytes()
    real_write = os.write

    def short_then_full(fd, data):
        if fd != outputs._jsonl:
            return real_write(fd, data)
        if len(data) > 10:
            return real_write(fd, data[:10])  # a short write, then the rest finds the disk full
        raise OSError(errno.ENOSPC, NOSPACE)

    monkeypatch.setattr(os, "write", short_then_full)
    with pytest.raises(DiskFull, match=f"spans.jsonl: disk full \\({NOSPACE}\\)"):
        outputs.add(_span(30), {}, 0.0)
    assert (tmp_path / "spans.jsonl").read_bytes() == before and outputs.lines == 1
    assert sorted(p.name for p in (tmp_path / "clips").iterdir()) == ["0001_goal.mp4", "0001_goal.ts"]
    assert "0002" not in (tmp_path / "highlights.m3u8").read_text() and not _leftovers(tmp_path)


def test_a_clip_the_disk_has_no_room_for_is_never_published(tmp_path, monkeypatch):
    outputs = _outputs(tmp_path, monkeypatch, ts_fails=True)
    with pytest.raises(DiskFull) as info:
        outputs.add(_span(10), {}, 0.0)
    assert info.value.path == tmp_path / "clips" / "0001_goal.ts" and info.value.reason == NOSPACE
    assert not list((tmp_path / "clips").iterdir()) and not (tmp_path / "spans.jsonl").read_text()
    assert "clips/" not in (tmp_path / "highlights.m3u8").read_text() and not _leftovers(tmp_path)

    def no_room(self, span, mp4):
        raise UserError(f"{mp4}: ffmpeg failed (Error writing trailer: {NOSPACE})")

    monkeypatch.setattr(LiveOutputs, "_cut", no_room)
    with pytest.raises(DiskFull, match="0001_goal.mp4: disk full"):
        outputs.add(_span(10), {}, 0.0)


def _no_room_for(monkeypatch, name: str) -> None:
    """Writing a file called `name` (through `common.atomic`) fails with ENOSPC."""
    real = Path.write_text

    def write_text(self, *args, **kwargs):
        if self.name.startswith(f".{Path(name).stem}.") or self.name == name:
            raise OSError(errno.ENOSPC, NOSPACE)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", write_text)


def test_highlights_playlist_and_live_json_on_a_full_disk(tmp_path, monkeypatch):
    outputs = _outputs(tmp_path, monkeypatch)
    outputs.add(_span(10), {}, 0.0)
    playlist = (tmp_path / "highlights.m3u8").read_text()
    _no_room_for(monkeypatch, "highlights.m3u8")
    with pytest.raises(DiskFull, match="highlights.m3u8: disk full"):
        outputs.add(_span(30), {}, 0.0)
    assert outputs.lines == 2  # the span is out, with its clip; the playlist is the earlier one, whole
    assert (tmp_path / "highlights.m3u8").read_text() == playlist and not _leftovers(tmp_path)
    _no_room_for(monkeypatch, "live.json")
    with pytest.raises(DiskFull, match="live.json: disk full"):
        outputs.state({"state": "live"})
    assert not (tmp_path / "live.json").exists() and not _leftovers(tmp_path)


def test_the_space_held_for_the_end_is_freed_on_release(tmp_path, monkeypatch):
    outputs = _outputs(tmp_path, monkeypatch)
    (reserve,) = tmp_path.glob(".reserve.*")
    assert reserve.stat().st_size == 1 << 20
    outputs.release()
    outputs.close()
    assert not reserve.exists()


def test_report_html_on_a_full_disk(tiny_model, tmp_path, monkeypatch):
    """A live run (on a fake clock and tokens, tests/live_fakes.py) whose report.html finds the disk full."""
    import numpy as np

    from soccer_highlights.core.pipeline import Pipeline
    from tests.live_fakes import FakeClock, FakeStream, FakeTokens, features, live_run

    def no_room(path, *args, **kwargs):
        raise UserError(f"{path}: cannot write ({NOSPACE})")

    monkeypatch.setattr("soccer_highlights.live.runner.write_report", no_room)
    clock = FakeClock()
    source = FakeTokens(*features(np.random.default_rng(0), 20))
    run = live_run(Pipeline(tiny_model), tmp_path / "live", clock, source)
    FakeStream(run, clock).play()
    source.come(2)
    with pytest.raises(DiskFull, match="report.html: disk full"):
        run.step()  # live.json, then report.html
    assert json.loads((tmp_path / "live" / "live.json").read_text())["state"] == "live"


def test_a_clips_latency_is_counted_on_the_runs_clock(tmp_path, monkeypatch):
    from tests.live_fakes import FakeClock

    clock = FakeClock(500.0)
    outputs = _outputs(tmp_path, monkeypatch, now=clock)
    clock.advance(12.5)
    record = outputs.add(_span(10), {}, 505.0)  # the peak's second arrived at 505 s on the run's clock
    assert record["latency_sec"] == 7.5


def test_the_recording_playlist_on_a_full_disk_is_finished_in_place(tmp_path, monkeypatch):
    recorder = Recorder("udp://127.0.0.1:9", tmp_path / "recording", lambda seg: None)
    recorder.segments = [Segment(i, tmp_path / "recording" / f"seg_{i:06d}.ts", i, i + 1.0) for i in range(3)]
    playlist = tmp_path / "recording.m3u8"
    recorder.playlist(playlist, final=False)
    before = playlist.read_text()
    _no_room_for(monkeypatch, "recording.m3u8")
    with pytest.raises(DiskFull, match="recording.m3u8: disk full"):
        recorder.playlist(playlist, final=False)
    recorder.playlist(playlist, final=True)  # the decoders of the run end only at ENDLIST
    assert playlist.read_text() == before + "#EXT-X-ENDLIST\n" and not _leftovers(tmp_path)
    _no_room_for(monkeypatch, "snapshot.m3u8")
    with pytest.raises(DiskFull):
        recorder.playlist(tmp_path / "snapshot.m3u8", final=True)  # nothing in place to finish
    assert not (tmp_path / "snapshot.m3u8").exists()


def test_a_recorder_whose_ffmpeg_finds_the_disk_full_stops_without_reconnecting(tmp_path, monkeypatch):
    """The ffmpeg stand-in records one segment, lists it, starts the next and fails as ffmpeg does."""
    script = (
        "import sys, time; folder = sys.argv[1]\n"
        "open(folder + '/seg_000000.ts', 'wb').write(b'ts')\n"
        "open(folder + '/.list_0000.csv', 'w').write('seg_000000.ts,0.0,1.0\\n')\n"
        "open(folder + '/seg_000001.ts', 'wb').write(b'half')\n"
        "time.sleep(0.5)\n"
        f"sys.stderr.write('[segment @ 0x1] Failure occurred when ending segment ' + repr(folder + '/seg_000001.ts')"
        f" + '\\nError writing trailer: {NOSPACE}\\n'); sys.exit(228)\n"
    )
    handed: list[Segment] = []
    recorder = Recorder("udp://127.0.0.1:9", tmp_path / "recording", handed.append, end_after_sec=2)
    recorder.reset_clock()  # else a recorder that went on reconnecting would never end
    monkeypatch.setattr(Recorder, "_command", lambda self, n, csv: [sys.executable, "-c", script, str(self.folder)])
    with pytest.raises(DiskFull) as info:
        recorder.run(threading.Event())
    assert info.value.path == tmp_path / "recording" / "seg_000001.ts" and info.value.reason == NOSPACE
    assert [s.path.name for s in handed] == ["seg_000000.ts"] == [s.path.name for s in recorder.segments]
    assert sorted(p.name for p in (tmp_path / "recording").glob("seg_*")) == ["seg_000000.ts"]


def test_each_kind_of_full_disk_error_is_one_disk_full_and_others_pass():
    from soccer_highlights.common.atomic import write_text
    from soccer_highlights.common.ffmpeg import last_error_line

    with pytest.raises(DiskFull, match="a.txt: disk full"), writing(Path("a.txt")):
        raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))
    with pytest.raises(DiskFull, match="b.mp4: disk full"), writing(Path("b.mp4")):
        raise UserError(f"b.mp4: ffmpeg failed (Error writing trailer: {NOSPACE})")
    with pytest.raises(PermissionError), writing(Path("c.txt")):
        raise PermissionError(errno.EACCES, "Permission denied")
    with pytest.raises(UserError, match="no such file"), writing(Path("d.txt")):
        raise UserError("d.txt: no such file")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Path, "write_text", lambda *a, **k: (_ for _ in ()).throw(OSError(errno.ENOSPC, NOSPACE)))
        with pytest.raises(DiskFull, match="e.json: disk full"), writing(Path("e.json")):
            write_text(Path("/tmp/e.json"), "{}")
    assert full_reason(b"x\nav_interleaved_write_frame(): No space left on device\ny") == NOSPACE
    stderr = f"[mp4] Could not write header: {NOSPACE}\n[vf] Task finished with error code: -28\nNothing was written"
    assert last_error_line(stderr) == f"[mp4] Could not write header: {NOSPACE}"


def test_the_line_of_a_run_stopped_by_a_full_disk(tmp_path):
    out = tmp_path / "live"
    exc = DiskFull(out / "clips" / "0003_goal.mp4", NOSPACE)
    line = stopped_message(out, exc, 2, 61.25, finished=True)
    assert line.startswith(f"{out}: disk full ({NOSPACE}) while writing clips/0003_goal.mp4; recording stopped at 61.2")
    assert "2 span(s) so far are in spans.jsonl" in line and f"--video {out / 'recording.m3u8'}" in line
    assert "could not be finished" in stopped_message(out, exc, 0, 0.0, finished=False)
