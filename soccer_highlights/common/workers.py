"""Background threads that stop together and hand their errors to the caller's thread: `Workers`.

The one helper of every background thread of the project: the extraction's stages (`extract_features.stages`),
the live run's recorder (`live.relay.Relay`), its token stages (`live.tokens`) and its clip cutter
(`live.runner.LiveRun`). A group's threads share one `stop` event; an error in one of them is kept, sets `stop`,
and is raised in the caller's thread by `check()` (or `wait()`, or the module's `check(*groups)` over several
groups). Threads are daemons, but every caller joins its workers (a TensorFlow call left running in a thread
crashes the interpreter at exit).
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class Workers:
    """A group of worker threads: `start(fn, *args)`, a shared `stop` event, errors kept and raised in the caller.

    The caller only waits in short timed joins (`wait`), so signals reach it at once; each worker checks `stop`
    between short steps (one network slice, one queue wait), so stopping takes about one step."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.threads: list[threading.Thread] = []

    def start(self, fn: Callable[..., object], *args: object, name: str | None = None) -> threading.Thread:
        """Run `fn(*args)` in a daemon thread of the group (named `name`, else after `fn`)."""

        def body() -> None:
            try:
                fn(*args)
            except BaseException as exc:  # raised in the caller's thread by check()
                self.fail(exc)

        thread = threading.Thread(target=body, daemon=True, name=name or getattr(fn, "__name__", "worker"))
        thread.start()
        self.threads.append(thread)
        return thread

    def fail(self, exc: BaseException) -> None:
        """Keep `exc` for the caller and stop the group (also for a worker that handles its error itself and goes
        on to clean up: the error is seen by that clean-up)."""
        self.errors.append(exc)
        self.stop.set()

    def alive(self) -> bool:
        """Some thread of the group still runs."""
        return any(thread.is_alive() for thread in self.threads)

    def check(self) -> None:
        """Raise the group's first error, if there is one."""
        check(self)

    def join(self, timeout: float | None = None) -> bool:
        """Join every thread, each for at most `timeout` seconds (None: until it ends); True when all ended."""
        for thread in list(self.threads):
            thread.join(timeout)
        return not self.alive()

    def wait(self, *, check: bool = True) -> None:
        """Wait in short timed joins for every thread to end, then raise the first error (`check`; else the
        caller checks, maybe with other groups). A KeyboardInterrupt while waiting stops the group, joins it and
        goes on up."""
        try:
            for thread in list(self.threads):
                while thread.is_alive():
                    thread.join(0.1)
        except KeyboardInterrupt:
            self.stop.set()
            self.join()
            raise
        if check:
            self.check()


def check(*groups: Workers, prefer: tuple[type[BaseException], ...] = ()) -> None:
    """Raise the first error of the groups (one of the types `prefer` before any other, when there is one)."""
    errors = [exc for group in groups for exc in group.errors]
    if errors:
        raise next((exc for exc in errors if isinstance(exc, prefer)), errors[0])
