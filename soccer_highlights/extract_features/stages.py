"""Worker threads of one extraction (decode, audio, network) that stop together and report the first error.

Shared by the offline extractor (`extract_features.pipeline`) and the live token stage (`highlights.live_tokens`).
"""

from __future__ import annotations

import contextlib
import queue
import threading


def put(q: queue.Queue, item, stop: threading.Event) -> bool:
    """Put `item` unless `stop` is set first; True when it went in."""
    while not stop.is_set():
        with contextlib.suppress(queue.Full):
            q.put(item, timeout=0.2)
            return True
    return False


class Stages:
    """Worker threads of one run: the first error (or Ctrl-C) stops them all, then is raised in the caller's thread.

    The caller only waits, in short timed joins, so signals reach it at once. Every worker is always joined
    (a TensorFlow call left running in a thread crashes the interpreter at exit); each one checks the stop
    flag between short steps (one network slice, one queue wait), so stopping takes about one slice.
    """

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.threads: list[threading.Thread] = []

    def start(self, fn, *args) -> None:
        def body():
            try:
                fn(*args)
            except BaseException as exc:  # surfaced in the caller's thread by wait()
                self.errors.append(exc)
                self.stop.set()

        thread = threading.Thread(target=body, daemon=True, name=fn.__name__)
        thread.start()
        self.threads.append(thread)

    def wait(self) -> None:
        try:
            for thread in self.threads:
                while thread.is_alive():
                    thread.join(0.1)
        except KeyboardInterrupt:
            self.stop.set()
            for thread in self.threads:
                thread.join()
            raise
        if self.errors:
            raise self.errors[0]
