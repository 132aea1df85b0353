"""Worker threads of one extraction (decode, audio, network) that stop together and report the first error.

Shared by the offline extractor (`extract_features.pipeline`) and the live token stage (`live.tokens`). The
threads are a `common.workers.Workers` group (`Stages`, the name the extractor knows it by): the first error
(or Ctrl-C) stops them all, then is raised in the caller's thread by `wait()`.
"""

from __future__ import annotations

import contextlib
import queue
import threading

from soccer_highlights.common.workers import Workers

Stages = Workers  # the extraction's stages: one group of workers, stopped together


def put(q: queue.Queue, item, stop: threading.Event) -> bool:
    """Put `item` unless `stop` is set first; True when it went in."""
    while not stop.is_set():
        with contextlib.suppress(queue.Full):
            q.put(item, timeout=0.2)
            return True
    return False
