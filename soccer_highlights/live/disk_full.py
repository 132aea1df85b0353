"""A full disk during a live run: every writer of the run names the file it was writing, and the run stops.

The errors a full disk raises differ by writer: an `OSError` (ENOSPC, EDQUOT) from a Python write, a
`UserError` from `common.atomic` (its cause that OSError), or an ffmpeg failure whose message (or stderr)
says "No space left on device". `writing(path)` turns each of them into one `DiskFull` naming `path`; any
other error passes through unchanged. `live.runner` catches `DiskFull`, stops the run and says it in
one line (`stopped_message`).
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

from soccer_highlights.common.errors import UserError

FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
FULL_TEXTS = tuple(os.strerror(e) for e in FULL_ERRNOS)  # "No space left on device", "Disk quota exceeded"


class DiskFull(UserError):
    """Writing `path` failed because its disk (or the user's quota) is full; `reason` is the system's words."""

    def __init__(self, path: Path, reason: str, what: str | None = None) -> None:
        super().__init__(f"{path}: disk full ({reason})")
        self.path, self.reason, self.what = Path(path), reason, what


def full_reason(exc: BaseException | bytes | str | None) -> str | None:
    """The system's words when `exc` (an exception and its causes, or an ffmpeg stderr) says a disk is full."""
    seen = 0
    while isinstance(exc, BaseException) and seen < 8:
        if isinstance(exc, DiskFull):
            return exc.reason
        if isinstance(exc, OSError) and exc.errno in FULL_ERRNOS:
            return os.strerror(exc.errno)
        if found := full_reason(str(exc)):
            return found
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    if isinstance(exc, bytes):
        exc = exc.decode("utf-8", "replace")
    if isinstance(exc, str):
        return next((text for text in FULL_TEXTS if text.lower() in exc.lower()), None)
    return None


@contextlib.contextmanager
def writing(path: Path, what: str | None = None) -> Iterator[None]:
    """Raise `DiskFull(path, ...)` for an error of the block that means a full disk; others pass unchanged.
    `what`: the words for what was written, when not the file `path`."""
    try:
        yield
    except DiskFull:
        raise
    except (OSError, UserError) as exc:
        reason = full_reason(exc)
        if reason is None:
            raise
        raise DiskFull(path, reason, what) from exc


def stopped_message(out: Path, exc: DiskFull, spans: int, recorded: float, finished: bool) -> str:
    """The one line of a live run stopped by a full disk: where, what it was writing, what is safe, what next."""
    inside = exc.path.absolute().is_relative_to(out.absolute())
    where = exc.what or (os.path.relpath(exc.path.absolute(), out.absolute()) if inside else str(exc.path))
    after = (
        f"free space, then `inference.py --video {out / 'recording.m3u8'}` writes spans.json and the reel"
        if finished
        else "recording.m3u8 could not be finished"
    )
    return (
        f"{out}: disk full ({exc.reason}) while writing {where}; recording stopped at {recorded:.1f} s; "
        f"{spans} span(s) so far are in spans.jsonl, their clips in clips/ and highlights.m3u8; {after}"
    )
