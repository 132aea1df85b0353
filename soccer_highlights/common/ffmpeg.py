"""Find and run ffmpeg safely: argument lists only (no shell), `file:` paths, one-line errors.

ffmpeg comes from PATH, else from the `imageio-ffmpeg` wheel's bundled binary (which has no
ffprobe, so probing parses `ffmpeg -i` output).
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from soccer_highlights.common.errors import UserError


@functools.lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary: $FFMPEG_BINARY, PATH, then imageio-ffmpeg's bundled one."""
    env = os.environ.get("FFMPEG_BINARY")
    if env:
        return env
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg
    except ImportError as exc:  # pragma: no cover - requirements install it
        raise UserError("ffmpeg not found: install it on PATH or `pip install imageio-ffmpeg`") from exc
    return imageio_ffmpeg.get_ffmpeg_exe()


# Run by a tiny exec wrapper in the child: the kernel sends the child SIGKILL when the thread that started it
# dies (PR_SET_PDEATHSIG = 1, Linux), so ffmpeg never outlives a killed run (SIGKILL cannot be caught); the child
# moves to a process group of its own, so that a terminal's Ctrl-C (SIGINT to the foreground group) or a SIGTERM
# to the run's group reaches the run only, and the run stops its ffmpeg itself (a recorder is stopped so that it
# lists its last segment; an ffmpeg that died first would read as a failed decode or a stalled stream); then exec
# ffmpeg in the same process. Not `preexec_fn`: running Python between fork and exec is unsafe with threads.
_TIED = (
    "import ctypes, os, sys\n"
    "ctypes.CDLL(None).prctl(1, 9)\n"
    "os.getppid() == int(sys.argv[1]) or os._exit(137)\n"  # the parent died before prctl took effect
    "os.setpgid(0, 0)\n"
    "os.execvp(sys.argv[2], sys.argv[2:])"
)


def tied(cmd: list[str]) -> list[str]:
    """`cmd` started so that it dies with this process, even on SIGKILL, in a process group of its own (signals
    to the run's group reach the run, which stops its children) (Linux; elsewhere `cmd` unchanged). The tie is
    to the starting thread: start children from threads that outlive them (the main thread, or a worker that
    waits for its child). Every caller stops its child when it stops early (an exception, Ctrl-C)."""
    if not sys.platform.startswith("linux") or not sys.executable:
        return cmd
    return [sys.executable, "-I", "-S", "-c", _TIED, str(os.getpid()), *cmd]


def media_arg(path: str | os.PathLike) -> str:
    """A path as an ffmpeg argument that is never read as an option or protocol (`-x.mp4`, `a:b.mp4`)."""
    return "file:" + str(Path(path).absolute())


def run_ffmpeg(args: list[str], what: str, capture: bool = True) -> subprocess.CompletedProcess:
    """Run `ffmpeg -hide_banner -nostdin -y <args>`; a failure becomes a one-line UserError about `what`."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", *args]
    proc = subprocess.run(tied(cmd), stdout=subprocess.PIPE if capture else None, stderr=subprocess.PIPE)
    if proc.returncode != 0:
        raise UserError(f"{what}: ffmpeg failed ({last_error_line(proc.stderr)})")
    return proc


def last_error_line(stderr: bytes | str | None) -> str:
    """The most useful line of ffmpeg's stderr, for a one-line error."""
    if not stderr:
        return "no message"
    text = stderr.decode("utf-8", "replace") if isinstance(stderr, bytes) else stderr
    noise = ("at least one output file must be specified", "use -h to get full help")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().lower().startswith(noise)]
    full = [ln for ln in lines if "No space left on device" in ln or "Disk quota exceeded" in ln]
    if full:  # a full disk, whatever ffmpeg said after it
        return full[-1]
    for ln in reversed(lines):
        if any(k in ln.lower() for k in ("error", "invalid", "no such file", "does not contain", "not found")):
            return ln
    return lines[-1] if lines else "no message"


@dataclass(frozen=True)
class MediaInfo:
    path: str
    duration: float  # seconds, from the container (0.0 when unknown)
    has_video: bool
    has_audio: bool
    width: int = 0
    height: int = 0
    fps: float = 0.0
    sample_rate: int = 0


_DURATION = re.compile(r"Duration:\s*(\d+):(\d+):(\d+(?:\.\d+)?)")
_VIDEO = re.compile(r"Stream #\S+.*?: Video: .*?(\d{2,5})x(\d{2,5})")
_FPS = re.compile(r"([\d.]+)\s+(?:fps|tbr)")
_AUDIO = re.compile(r"Stream #\S+.*?: Audio: .*?(\d+) Hz")


def probe(path: str | os.PathLike) -> MediaInfo:
    """Read duration and streams of a media file; UserError if it is missing or not media. ffmpeg reads a file
    once per process while it stays the same file (same resolved path, size, modification time and inode):
    the checks, the extraction, the duration check and the reel of one run all ask about the same video."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"{p}: no such file")
    if p.is_dir():
        raise UserError(f"{p}: is a folder, expected a video file")
    st = p.stat()
    text = _ffmpeg_header(str(p.resolve()), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    if "Stream #" not in text:
        raise UserError(f"{p}: not a video or audio file ffmpeg can read ({last_error_line(text)})")
    duration = 0.0
    m = _DURATION.search(text)
    if m:
        h, mi, s = m.groups()
        duration = int(h) * 3600 + int(mi) * 60 + float(s)
    width = height = 0
    fps = 0.0
    has_video = False
    for line in text.splitlines():
        if ": Video:" in line and "attached pic" not in line:
            vm = _VIDEO.search(line)
            if vm:
                has_video = True
                width, height = int(vm.group(1)), int(vm.group(2))
                fm = _FPS.search(line)
                fps = float(fm.group(1)) if fm else 0.0
                break
    am = _AUDIO.search(text)
    return MediaInfo(str(p), duration, has_video, am is not None, width, height, fps, int(am.group(1)) if am else 0)


@functools.lru_cache(maxsize=256)
def _ffmpeg_header(path: str, size: int, mtime_ns: int, ctime_ns: int, inode: int) -> str:
    """What `ffmpeg -i path` says about the file (its stderr), once per version of the file (the stat fields
    are the cache key: a file rewritten in place is read again)."""
    proc = subprocess.run(
        tied([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", media_arg(path)]),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    return proc.stderr.decode("utf-8", "replace")
