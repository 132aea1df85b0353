"""Live highlights: a stream in, clips out within seconds of the moment their span becomes final.

    python inference.py --model M.keras --out DIR --live udp://127.0.0.1:5000

The stream is recorded in short segments (`highlights.recorder`); their bytes go on to the feature
decoders and networks (`highlights.live_tokens`); the window centred on token t is scored as soon as its
last token exists (half a window later); the scores feed the online decoder (`highlights.online`), and each
span it gives out is cut into a clip at once (`highlights.live_outputs`). When the stream ends, or on
SIGTERM / Ctrl-C (the recorder stops, what was recorded is still scored), the run writes what an offline
run on `recording.m3u8` writes: spans.json, results_spotting.json, the timeline, report and reel, from the
same scores. A second Ctrl-C stops at once; every file already written stays whole.

A full disk stops the run (`_stop_on_full_disk`): recording and cutting end, the playlists are finished, one
line says what is safe; the end-of-run outputs are left to `inference.py --video DIR/recording.m3u8`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from soccer_highlights.common.errors import UserError
from soccer_highlights.common.ffmpeg import probe
from soccer_highlights.core.match import Half, Match, Result
from soccer_highlights.core.pipeline import Pipeline, decode_halves, warn_random
from soccer_highlights.highlights.online import OnlineDecoder
from soccer_highlights.live.disk_full import DiskFull, stopped_message, writing
from soccer_highlights.live.outputs import LiveOutputs, lock_folder
from soccer_highlights.live.recorder import Recorder, Segment
from soccer_highlights.live.tokens import CATCH_UP_BATCH, LiveTokens
from soccer_highlights.report.page import write_report
from soccer_highlights.spotting.spots import class_labels
from soccer_highlights.writers.outputs import Output, Written, write_outputs

log = logging.getLogger("live")

STATE_EVERY_SEC = 2.0  # live.json and report.html refreshed at most this often
BEHIND_SEC = 15.0  # the features this far behind the recording (beyond half a window): "falling behind"


@dataclass(frozen=True)
class LiveSettings:
    """The stream and how it is recorded (`highlights.recorder`)."""

    source: str
    segment_sec: float = 1.0
    stall_sec: float = 3.0
    end_after_sec: float = 30.0
    input_format: str | None = None
    reencode: bool = False

    def check(self) -> None:
        for name in ("segment_sec", "stall_sec", "end_after_sec"):
            if not getattr(self, name) > 0:
                raise UserError(f"--live_{name.removesuffix('_sec')} must be > 0 seconds, got {getattr(self, name)}")


@dataclass
class Clock:
    """Wall-clock times: when each segment arrived (to date events), and the run's pace."""

    started: float = field(default_factory=time.monotonic)
    arrivals: list[tuple[Segment, float]] = field(default_factory=list)
    worst_lag: float = 0.0
    warned: bool = False

    def arrival(self, t: float) -> float:
        """When the stream's second `t` reached us: its segment's arrival, less the rest of the segment, but never
        before the previous segment arrived (so a latency is never understated)."""
        previous = self.started
        for seg, wall in self.arrivals:
            if seg.end >= t:
                return max(previous, wall - (seg.end - t))
            previous = wall
        return previous


class LiveRun:
    """One live run: the pipeline's model and extractor, the recorder, tokens, online decoder and outputs."""

    def __init__(self, pipeline: Pipeline, live: LiveSettings, output: Output, half: int, relay: Relay):
        self.pipeline, self.live, self.output, self.half = pipeline, live, output, half
        self.out, self.stride = output.out, pipeline.scoring.stride
        self.spec = pipeline.spec
        self.tps = self.spec.tokens_per_second
        self.names = list(self.spec.class_names)
        self.window = int(self.spec.window_frames)
        self.right = self.window - 1 - self.window // 2  # tokens a window needs after its centre
        self.extractor = pipeline.extractor()
        self.tokens = LiveTokens(self.extractor, self.out / "recording.m3u8")
        self.clock = Clock(started=relay.started)
        self.recorder, self.relay = relay.recorder, relay
        self.outputs = LiveOutputs(self.out, self.recorder, class_labels(pipeline.cmap, self.names), self.names, half)
        self.online = OnlineDecoder(self.names, pipeline.scoring.decoder, self.tps)
        self.rows: list[np.ndarray] = []  # scored probabilities, [stride, C] per window
        self.score_sec = 0.0  # seconds spent scoring windows
        self.records: list[dict] = []
        self._clips: queue.Queue = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._errors: list[BaseException] = []
        self._halted = threading.Event()  # a full disk: no more clips

    # ---- threads ----------------------------------------------------------------------------------------------

    def _segment(self, seg: Segment) -> None:
        self.clock.arrivals.append((seg, time.monotonic()))
        self.recorder.playlist(self.out / "recording.m3u8", final=False)
        self.tokens.start()

    def _ended(self) -> None:
        """The stream is over: the playlist is finished, so the decoders end after its last segment."""
        if self.relay.errors:  # a full disk stopped the recorder: room for the finished playlist
            self.outputs.release()
        self.recorder.playlist(self.out / "recording.m3u8", final=True)

    def _thread(self, fn: Any) -> None:
        def body() -> None:
            try:
                fn()
            except BaseException as exc:  # raised in the main thread by `_check`
                self._errors.append(exc)

        thread = threading.Thread(target=body, daemon=True, name=fn.__name__)
        thread.start()
        self._threads.append(thread)

    def _cut_clips(self) -> None:
        while (item := self._clips.get()) is not None and not self._halted.is_set():
            span, info = item
            record = self.outputs.add(span, info, self.clock.arrival(span.peak))
            self.records.append(record)
            print(
                f"clip {record['clip']}: {span.label} at {span.peak:.1f} s, {record['latency_sec']:.1f} s after it",
                file=sys.stderr,
                flush=True,
            )

    def _check(self) -> None:
        errors = self._errors + self.relay.errors + self.tokens.stages.errors
        if errors:  # a full disk first: a decoder may fail on the segment it cut short
            raise next((e for e in errors if isinstance(e, DiskFull)), errors[0])
        if not self.relay.thread.is_alive() and not self.recorder.segments:
            problem = "; ".join(dict.fromkeys(self.recorder.errors)) or "no data"
            raise UserError(f"{self.live.source}: nothing was received ({problem})")

    # ---- the main loop ----------------------------------------------------------------------------------------

    def run(self) -> tuple[Result, Written]:
        """The run to its end; a full disk stops it with one UserError (`_stop_on_full_disk`)."""
        try:
            return self._run()
        except DiskFull as exc:
            raise UserError(self._stop_on_full_disk(exc)) from exc

    def _stop_on_full_disk(self, exc: DiskFull) -> str:
        """Stop recording and cutting (the clip being cut is finished or removed), finish the playlists and
        live.json (in the space held for them), and say what happened. The end-of-run outputs are not tried:
        the reel alone needs about as much room again as the clips, and the finished recording gives them all
        (`inference.py --video DIR/recording.m3u8`) once there is room."""
        self._halted.set()
        self.outputs.release()
        self.relay.stop.set()
        self._clips.put(None)
        self.relay.thread.join()  # its end finishes recording.m3u8 (in place if need be)
        for thread in self._threads[1:]:
            thread.join()
        out = self.out
        message = stopped_message(out, exc, self.outputs.lines, self.recorder.recorded, self.outputs.finished())
        with contextlib.suppress(UserError):
            self.outputs.playlist(final=True, recording=False)
        with contextlib.suppress(UserError):
            self._state(final=True, name="stopped: disk full", error=message)
        self.outputs.close()
        return message

    def _run(self) -> tuple[Result, Written]:
        self._threads.append(self.relay.thread)
        self.relay.attach(self._segment, self._ended)
        self._thread(self._cut_clips)
        last_state = 0.0
        try:
            while not (self.tokens.done() and not self._threads[0].is_alive()):
                with self.tokens.changed:
                    self.tokens.changed.wait(0.5)
                self._check()
                self._score(self.tokens.ready(), final=False)
                if time.monotonic() - last_state > STATE_EVERY_SEC:
                    self._state(final=False)
                    last_state = time.monotonic()
        except KeyboardInterrupt:
            print("stopping: the recording so far is scored and written (Ctrl-C again: stop now)", file=sys.stderr)
            self.relay.stop.set()
            for thread in self._threads[:1]:
                thread.join()
            self.tokens.stages.wait()
            self._check()
            return self._finish(interrupted=True)
        self.tokens.stages.wait()
        self._check()
        return self._finish(interrupted=False)

    def _score(self, ready: int, *, final: bool, video: Any = None, audio: Any = None) -> None:
        """Score every window whose tokens all exist (final: every window, the end padded) and push the rows."""
        stride = self.stride
        done = len(self.rows)
        total = -(-ready // stride) if final else max(0, (ready - 1 - self.right) // stride + 1)
        if total > done:
            if video is None:
                video, audio = self.tokens.arrays()
            centres = np.arange(done, total) * stride - self.window // 2
            index = np.clip(centres[:, None] + np.arange(self.window), 0, ready - 1)
            t0 = time.perf_counter()
            probs = self.pipeline.scorer.score_windows(video[index], audio[index], progress=False)
            self.score_sec += time.perf_counter() - t0
            self.rows += list(np.repeat(probs[:, None], stride, axis=1))
        known = np.concatenate(self.rows)[:ready] if self.rows else np.zeros((0, len(self.names)))
        step = self.stride  # a window at a time: each span is dated by the first token that made it final
        # the decoder's own count of rows, not a copy kept here: a Ctrl-C / SIGTERM landing between a push and
        # such a copy's update would push the same rows twice (every later score shifted by a window)
        while len(known) > self.online.tokens:
            spans = self.online.push(known[self.online.tokens : self.online.tokens + step])
            self._give(spans, self.online.tokens)

    def _give(self, spans: list, tokens: int) -> None:
        """Queue the clips of spans final once `tokens` scores were known (with when, in the stream, that was, and
        when at the latest the online rule makes it final: `final_by`, see `highlights.online`)."""
        needed = (tokens + self.right) / self.tps  # the stream's second up to which tokens were needed
        slack = self.window / 2 / self.tps + (self.stride + 1) / self.tps  # half a window, one push, a token
        for span in spans:
            final_at = min(needed, self.recorder.recorded)
            final_by = self.online.final_after(span) + slack
            info = {"final_at": round(final_at, 3), "wait_sec": round(final_at - span.peak, 3)}
            self._clips.put((span, {**info, "final_by": round(final_by, 3)}))

    def _state(self, *, final: bool, **extra: str) -> dict:
        """live.json, and report.html with the scores and spans so far; one warning when falling behind. `extra`:
        other fields of live.json (`name`, the state: finished or live by default)."""
        stream_start = self.clock.arrival(0.0) if self.clock.arrivals else time.monotonic()  # wall clock
        elapsed = max(1e-6, time.monotonic() - stream_start)
        scored = len(self.rows) * self.stride / self.tps
        received = self.recorder.recorded
        lag = max(0.0, received - scored - self.window / 2 / self.tps)
        self.clock.worst_lag = max(self.clock.worst_lag, lag)
        rate, stream_rate = round(scored / elapsed, 3), round(received / elapsed, 3)
        state = {
            "state": extra.pop("name", "finished" if final else "live"),
            "recorded_sec": round(received, 3),
            "scored_sec": round(scored, 3),
            "lag_sec": round(lag, 2),
            "stream_rate": stream_rate,
            "real_time_factor": rate,
            "compute_per_stream_sec": round((self.tokens.busy + self.score_sec) / max(scored, 1e-6), 3),
            "spans": self.outputs.lines,
            "gaps": [dataclasses.asdict(g) for g in self.recorder.gaps],
            **extra,
        }
        message = behind_message(lag, received, scored, rate, stream_rate)
        if message and not self.clock.warned:
            self.clock.warned = True
            print(message, file=sys.stderr, flush=True)
        self.outputs.state(state)
        if not final:
            self._report()
        return state

    def _report(self) -> None:
        probs = np.concatenate(self.rows) if self.rows else np.zeros((1, len(self.names)))
        half = Half(self.half, probs, probs, duration=len(probs) / self.tps, probs=probs)
        half.spans = [g for given in self.online.given for g in given]
        result = self._result([half])
        with writing(self.out / "report.html"):
            write_report(self.out / "report.html", result, folder=self.out)

    def _result(self, halves: list[Half]) -> Result:
        """The core's Result of the recording so far (what an offline run on recording.m3u8 returns)."""
        match = Match.recording(self.out / "recording.m3u8", half=self.half)
        p = self.pipeline
        return Result(match, p.model, self.spec, halves, p.scoring, random_weights=self._random(), cmap=p.cmap)

    def _random(self) -> bool:
        return "random" in (self.extractor.resnet.source, self.extractor.vggish.source)

    def _finish(self, *, interrupted: bool) -> tuple[Result, Written]:
        """Score the end, give out the last spans and clips, then write the offline run's outputs."""
        from soccer_highlights.extract_features.audio import align  # deferred: loads TensorFlow (start-up)

        video, audio = self.tokens.arrays()
        audio = align(audio, len(video), self.extractor.vggish.silence())
        self._score(len(video), final=True, video=video, audio=audio)
        duration = probe(self.out / "recording.m3u8").duration
        self._give(self.online.close(duration), len(video))
        self._clips.put(None)
        self._threads[1].join()
        self._check()
        self.outputs.playlist(final=True)
        state = self._state(final=True)
        self.outputs.close()
        probs = np.concatenate(self.rows)[: len(video)]
        half = Half(self.half, video, audio, duration=duration, probs=probs)
        decode_halves(self.pipeline.scoring, self.spec, [half])
        result = self._result([half])
        if result.random_weights:
            warn_random()
        with writing(self.out, what="the end-of-run outputs (spans.json, the reel, ...)"):
            written = write_outputs(result, self.output)
        print(latency_table(self.records, self.clock, self.recorder, state), file=sys.stderr)
        if interrupted:
            print("stopped before the stream ended: the outputs cover the recording so far", file=sys.stderr)
        return result, written


def behind_message(lag: float, received: float, scored: float, rate: float, stream_rate: float) -> str | None:
    """The one warning of a run whose scores are more than BEHIND_SEC behind the recording, with its numbers and
    the catch-up rule; None while it keeps up."""
    if lag <= BEHIND_SEC:
        return None
    return (
        f"warning: falling behind: the stream is at {received:.0f} s, scores at {scored:.0f} s ({lag:.0f} s behind; "
        f"{rate:.2f}x real time scored, the stream comes at {stream_rate:.2f}x). Catching up: the networks take the "
        f"whole backlog in batches of up to {CATCH_UP_BATCH} frames (faster per frame), no token is skipped; clips "
        "come late until the backlog is cleared"
    )


def latency_table(records: list[dict], clock: Clock, recorder: Recorder, state: dict) -> str:
    """The latency distribution of the run's clips and its pace, for the end of a run."""
    lines = [
        f"recorded {recorder.recorded:.1f} s, {len(recorder.gaps)} gap(s), largest lag {clock.worst_lag:.1f} s; "
        f"real-time factor {state['real_time_factor']:.2f} (stream at {state['stream_rate']:.2f}x), "
        f"{state['compute_per_stream_sec']:.2f} s of network time per second of stream"
    ]
    if records:
        latency = np.array([r["latency_sec"] for r in records])
        wait = np.array([r["wait_sec"] for r in records])
        q = np.percentile(latency, [50, 90])
        lines.append(
            f"{len(records)} clips, seconds from the event's moment in the stream to its clip: median {q[0]:.1f}, "
            f"90% {q[1]:.1f}, max {latency.max():.1f} (stream after the event until the span was final: median "
            f"{np.median(wait):.1f}, max {wait.max():.1f})"
        )
    return "\n".join(lines)


def run_live(
    load: Callable[[], Pipeline], live: LiveSettings, output: Output, *, half: int = 1
) -> tuple[Result, Written]:
    """The whole live run into `output.out` (locked for the run). Recording starts at once; `load()` builds the
    pipeline meanwhile."""
    live.check()
    out = output.out
    lock = lock_folder(out)
    relay = Relay(
        Recorder(
            live.source,
            out / "recording",
            lambda seg: None,
            live.segment_sec,
            live.stall_sec,
            live.end_after_sec,
            live.input_format,
            live.reencode,
        )
    )
    try:
        relay.start()  # recording starts now, while the networks are built
        pipeline = load()
        if pipeline.scoring.score_placement != "centre":
            raise UserError("--live decodes the scores of centred windows: --score_placement first is offline only")
        live_run = LiveRun(pipeline, live, output, half, relay)
        try:
            return live_run.run()
        finally:
            relay.stop.set()
            relay.thread.join()  # the playlist is finished: the decoders end too
            live_run.tokens.stages.stop.set()
            bound = None if live_run.outputs.finished() else 10.0  # else its decoders wait for more
            for thread in live_run.tokens.stages.threads:
                thread.join(bound)
            live_run.outputs.close()  # also the space held for a full disk, whatever ended the run
    finally:
        relay.stop.set()
        relay.thread.join()
        lock.close()


class Relay:
    """Runs the recorder from the start of the run; hands its segments on once something takes them (the
    segments recorded while the networks were being built first)."""

    def __init__(self, recorder: Recorder):
        self.recorder = recorder
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.started = time.monotonic()
        self.thread = threading.Thread(target=self._run, daemon=True, name="recorder")
        self._lock = threading.Lock()
        self._waiting: list[Segment] = []
        self._target: Any = None
        self._ended: Any = None
        self._over = False  # the recorder has returned (set under the lock, so `attach` cannot miss it)
        recorder.on_segment = self._segment

    def start(self) -> None:
        self.started = time.monotonic()
        self.recorder.folder.mkdir(parents=True, exist_ok=True)
        self.thread.start()

    def attach(self, target: Any, ended: Any) -> None:
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
            self.recorder.run(self.stop)
        except BaseException as exc:  # raised in the main thread
            self.errors.append(exc)
        finally:
            with self._lock:
                self._over = True
                if self._ended is not None:
                    try:
                        self._ended()
                    except BaseException as exc:  # raised in the main thread
                        self.errors.append(exc)
