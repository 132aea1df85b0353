"""One writer per output: an exclusive lock on a file beside the outputs, held while the run writes them.

`fcntl.flock` on an open file: the kernel drops it when the process ends however it ends (SIGKILL included), so
a killed run never blocks the next one. The holder removes the file when it is done; a run that locked a file
that was removed meanwhile (a race with that removal) locks the new one instead.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from soccer_highlights.common.errors import UserError


class Lock:
    """An exclusive lock of `path`, taken now (UserError naming the holder when another process has it)."""

    def __init__(self, path: str | os.PathLike, what: str) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"{self.path.parent}: cannot write here ({exc.strerror or exc})") from exc
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 64).decode("ascii", "replace").strip() or "?"
                os.close(fd)
                raise UserError(f"{self.path.parent}: {what} by another process (id {holder}) now") from None
            with contextlib.suppress(OSError):
                if os.fstat(fd).st_ino == os.stat(self.path).st_ino:
                    break
            os.close(fd)  # the file was removed after we opened it: lock the one there now
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd: int | None = fd

    def release(self) -> None:
        """Remove the file and drop the lock (idempotent)."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()
        os.close(self._fd)
        self._fd = None
