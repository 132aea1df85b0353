"""The recording side of a live run: the recorder's thread from the run's first moment (`Relay`), and the run's
clock (`Clock`: when each segment arrived, so that an event's clip latency counts from when its moment reached us).

Both read one clock, `now` (time.monotonic unless a test gives its own: tests/live_fakes.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from soccer_highlights.common.workers import Workers
from soccer_highlights.live.recorder import Recorder, Segment


class Clock:
    """The run's clock, `now()` (time.monotonic unless a test gives its own): when each segment arrived (to date
    events), and the run's pace."""

    def __init__(self, now: Callable[[], float] = time.monotonic, started: float | None = None) -> None:
        self.now = now
        self.started = now() if started is None else started
        self.arrivals: list[tuple[Segment, float]] = []
        self.worst_lag = 0.0
        self.warned = False

    def arrival(self, t: float) -> float:
        """When the stream's second `t` reached us: its segment's arrival, less the rest of the segment, but never
        before the previous segment arrived (so a latency is never understated)."""
        previous = self.started
        for seg, wall in self.arrivals:
            if seg.end >= t:
                return max(previous, wall - (seg.end - t))
            previous = wall
        return previous


class Relay:
    """Runs the recorder from the start of the run; hands its segments on once something takes them (the
    segments recorded while the networks were being built first). `workers`: the recorder's thread (its `stop`
    stops the recording); `now`: the run's clock."""

    def __init__(self, recorder: Recorder, now: Callable[[], float] = time.monotonic):
        self.recorder = recorder
        self.now = now
        self.workers = Workers()
        self.started = now()
        self._lock = threading.Lock()
        self._waiting: list[Segment] = []
        self._target: Any = None
        self._ended: Any = None
        self._over = False  # the recorder has returned (set under the lock, so `attach` cannot miss it)
        recorder.on_segment = self._segment

    def start(self) -> None:
        self.started = self.now()
        self.recorder.folder.mkdir(parents=True, exist_ok=True)
        self.workers.start(self._run, name="recorder")

    def attach(self, target: Callable[[Segment], None], ended: Callable[[], None]) -> None:
        """Hand every segment to `target` from now on (the waiting ones first); `ended()` when the stream ends."""
        with self._lock:
            for seg in self._waiting:
                target(seg)
            self._target, self._ended = target, ended
            self.recorder.reset_clock()
            if self._over:
                ended()

    def _segment(self, seg: Segment) -> None:
        with self._lock:
            self._waiting.append(seg) if self._target is None else self._target(seg)

    def _run(self) -> None:
        try:
            self.recorder.run(self.workers.stop)
        except BaseException as exc:  # raised in the main thread; kept now, so that `ended` sees it
            self.workers.fail(exc)
        finally:
            with self._lock:
                self._over = True
                if self._ended is not None:
                    self._ended()  # an error: kept by the workers, raised in the main thread
