"""One way to report a user mistake: a one-line message and a non-zero exit, never a traceback.

Signals take one path too: SIGTERM (what `timeout`, `kill` and job schedulers send) raises `Terminated`, a
KeyboardInterrupt, so an interrupted run unwinds exactly as after Ctrl-C: temporary files and folders are
removed by the `with` blocks that made them, and earlier outputs stay as they were. With TensorFlow loaded the
process then ends with `os._exit` (see `_exit_now`), never through the interpreter's teardown.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any, NoReturn


class UserError(Exception):
    """A problem the user can fix (bad flag, missing file, wrong shape). Message is one line."""


class Terminated(KeyboardInterrupt):
    """Raised in the main thread on SIGTERM (or another stopping signal, `signum`); handled wherever Ctrl-C's
    KeyboardInterrupt is; `run_cli` exits 128 + `signum`."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__(signum)
        self.signum = int(signum)


class Interrupted(KeyboardInterrupt):
    """A Ctrl-C whose clean-up has something to say (what was kept, how to go on): `run_cli` prints
    `error: interrupted: <message>` and exits 130."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = " ".join(message.split())


_received: list[int] = []  # the stopping signals this process was sent (its handler's record)


def _on_sigterm(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the clean-up short
    _received.append(int(signum))
    raise Terminated()


def stopped_by(exc: BaseException) -> KeyboardInterrupt | None:
    """The Ctrl-C or stopping signal behind `exc`, when there is one: `exc` itself, one in its chain of causes
    (a library that turns the interrupt landing in its code into an error of its own: TensorFlow, tracing a
    step, gives a TypeError), or a SIGTERM this process received before `exc` came."""
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        if isinstance(link, KeyboardInterrupt):
            return link
        seen.add(id(link))
        link = link.__cause__ or link.__context__
    return Terminated(_received[-1]) if _received else None


def handle_sigterm() -> None:
    """Make SIGTERM raise `Terminated` (from the main thread only, where Python runs signal handlers)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)


def run_cli(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> NoReturn:
    """Run a CLI entry point; turn UserError into `error: <message>` on stderr and exit code 2, Ctrl-C into
    exit 130 and SIGTERM into exit 143 (after the clean-up)."""
    handle_sigterm()
    _received.clear()
    try:
        try:
            code = main(argv)
        except UserError:
            raise
        except Exception as exc:  # an interrupt a library turned into its own error is still that interrupt
            stop = stopped_by(exc)
            if stop is None:
                raise
            raise stop from exc
    except UserError as exc:
        message = " ".join(str(exc).split())  # always one line
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
    except Terminated as exc:
        print(f"error: terminated ({signal.Signals(exc.signum).name})", file=sys.stderr)
        _exit_now(128 + exc.signum)
    except KeyboardInterrupt as exc:
        said = f": {exc.message}" if isinstance(exc, Interrupted) else ""
        print(f"error: interrupted{said}", file=sys.stderr)
        _exit_now(130)
    sys.exit(code or 0)


def _exit_now(code: int) -> NoReturn:
    """Exit after an interrupt whose clean-up is done (the `with` blocks have run). Once TensorFlow is loaded the
    process ends at once (`os._exit`, after flushing): the interpreter's teardown would destroy TensorFlow while
    its runtime threads still run, which aborts the process (exit 134, "terminate called after throwing")."""
    if "tensorflow" not in sys.modules:
        sys.exit(code)
    import logging

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)
