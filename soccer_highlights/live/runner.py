"""Live highlights: a stream in, clips out within seconds of the moment their span becomes final.

    python inference.py --model M.keras --out DIR --live udp://127.0.0.1:5000

The stream is recorded in short segments (`live.recorder`); their bytes go on to the feature
decoders and networks (`live.tokens`); the window centred on token t is scored as soon as its
last token exists (half a window later); the scores feed the online decoder (`highlights.online`), and each
span it gives out is cut into a clip at once (`live.outputs`). When the stream ends, or on
SIGTERM / Ctrl-C (the recorder stops, what was recorded is still scored), the run writes what an offline
run on `recording.m3u8` writes: spans.json, results_spotting.json, the timeline, report and reel, from the
same scores. A second Ctrl-C stops at once (`_stop_now`): the recording is closed and its playlist finished,
live.json says "stopped: interrupted", and one line gives the command that makes the end-of-run outputs from
the recording; every file already written stays whole. ffmpeg children run in process groups of their own
(`common.ffmpeg.tied`), so a terminal's Ctrl-C reaches this process only, and the run stops them itself: the
recorder's end is never taken for a stalled stream, nor a decoder's for a failed decode.

A run that recorded nothing (a source that never sent a stream, Ctrl-C before any data, a model that does not
load) removes what it made in --out (`clear_failed_start`), so that the retry is accepted. A folder removed
during the run stops it with one line (`recorder.FolderGone`), and nothing of it is made again.

On stderr (`live.pace`): one line once the recorder has started (`listening on udp://...: recording to ...`), a
progress line every PROGRESS_EVERY_SEC (recorded and scored seconds, spans so far, how far behind), a line per
clip, one warning when the scores fall more than BEHIND_SEC behind, and the latency table at the end.

The run's times (segment arrivals, clip latencies, its pace) come from one clock, the relay's `now`
(`live.relay`; time.monotonic unless a test gives its own), and the loop's turn on new tokens is one method,
`LiveRun.step`: a test drives the loop step by step on a fake clock and a fake token source
(tests/test_live_loop.py). Its threads (recorder, decoders and networks, clip cutter) are `common.workers`
groups.

A full disk stops the run (`_stop_on_full_disk`): recording and cutting end, the playlists are finished, one
line says what is safe; the end-of-run outputs are left to `inference.py --video DIR/recording.m3u8`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from soccer_highlights.common.errors import Interrupted, UserError
from soccer_highlights.common.ffmpeg import probe
from soccer_highlights.common.workers import Workers, check
from soccer_highlights.core.match import Half, Match, Result
from soccer_highlights.core.pipeline import Pipeline, decode_halves, warn_random
from soccer_highlights.highlights.decoder import Span
from soccer_highlights.highlights.online import OnlineDecoder
from soccer_highlights.live.disk_full import DiskFull, stopped_message, writing
from soccer_highlights.live.outputs import LiveOutputs, clear_failed_start, lock_folder, recovery_command
from soccer_highlights.live.pace import (
    PROGRESS_EVERY_SEC,
    Pace,
    behind_message,
    latency_table,
    listening_line,
    progress_line,
)
from soccer_highlights.live.recorder import STOP_WAIT_SEC, Recorder, Segment, gone, present
from soccer_highlights.live.relay import Clock, Relay
from soccer_highlights.live.tokens import LiveTokens, TokenSource
from soccer_highlights.report.page import write_report
from soccer_highlights.spotting.spots import class_labels, token_rows
from soccer_highlights.writers.outputs import Output, Written, write_outputs

log = logging.getLogger("live")

STATE_EVERY_SEC = 2.0  # live.json and report.html refreshed at most this often


@dataclass(frozen=True)
class LiveSettings:
    """The stream and how it is recorded (`live.recorder`)."""

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


@dataclass(frozen=True)
class ClipOrder:
    """A final span for the clip cutter: the fields it adds to spans.jsonl (`info`), and when on the run's clock
    the stream's second of its peak arrived (`since`, what the clip's latency counts from) and it was queued."""

    span: Span
    info: dict[str, float]
    since: float
    queued: float

    @property
    def waited(self) -> float:
        """Seconds from the arrival of the peak to the span's order: the clip's latency before it is cut."""
        return self.queued - self.since


class LiveRun:
    """One live run: the pipeline's model, the recorder (through its relay), the tokens, the online decoder and
    the outputs. `run()` runs it to its end in threads; `segment(seg)` and `step()` are what they do on a new
    segment and on new tokens, and a test calls them itself (a source of tokens of its own, the relay's clock
    its own: no thread, no ffmpeg)."""

    def __init__(
        self,
        pipeline: Pipeline,
        live: LiveSettings,
        output: Output,
        half: int,
        relay: Relay,
        tokens: TokenSource | None = None,
    ):
        self.pipeline, self.live, self.output, self.half = pipeline, live, output, half
        self.out, self.stride = output.out, pipeline.scoring.stride
        self.scorer, self.spec = pipeline.scorer, pipeline.spec
        self.tps = self.spec.tokens_per_second
        self.names = list(self.spec.class_names)
        self.window = int(self.spec.window_frames)
        self.right = self.window - 1 - self.window // 2  # tokens a window needs after its centre
        self.playlist = self.out / "recording.m3u8"
        self.tokens = tokens if tokens is not None else LiveTokens(pipeline.extractor(), self.playlist)
        self.clock = Clock(relay.now, started=relay.started)
        self.recorder, self.relay = relay.recorder, relay
        labels = class_labels(pipeline.cmap, self.names)
        self.outputs = LiveOutputs(self.out, self.recorder, labels, self.names, half, now=relay.now)
        self.online = OnlineDecoder(self.names, pipeline.scoring.decoder, self.tps)
        self.rows: list[np.ndarray] = []  # per-token probabilities, `stride` rows per scored window
        self.score_sec = 0.0  # seconds spent scoring windows
        self.records: list[dict] = []
        self.clips: queue.Queue[ClipOrder | None] = queue.Queue()  # for the clip cutter; None: no more
        self.workers = Workers()  # the clip cutter
        self._halted = threading.Event()  # a full disk: no more clips
        self._last_state: float | None = None
        self._last_progress = self.clock.started

    # ---- what happens on a segment and on new tokens ----------------------------------------------------------

    def segment(self, seg: Segment) -> None:
        """A segment was recorded (the relay's thread): note when it arrived, list it, start the decoders."""
        self.clock.arrivals.append((seg, self.clock.now()))
        self.recorder.playlist(self.playlist, final=False)
        self.tokens.start()

    def step(self) -> None:
        """One turn of the loop, when tokens may have come: score the windows whose last token exists, push their
        rows to the online decoder, queue the clips of the spans it gives out (`clips`); live.json and
        report.html every STATE_EVERY_SEC of the run's clock (with the falling-behind warning), a progress line
        on stderr every PROGRESS_EVERY_SEC."""
        present(self.out)
        self.score(self.tokens.ready())
        now = self.clock.now()
        if self._last_state is None or now - self._last_state > STATE_EVERY_SEC:
            self.state(final=False)
            self._last_state = now
        if now - self._last_progress >= PROGRESS_EVERY_SEC:
            self._last_progress = now
            print(progress_line(self.pace(now)), file=sys.stderr, flush=True)

    @property
    def windows(self) -> int:
        """Windows scored so far (counted in the rows themselves, so an interrupt between two statements can never
        make the count and the rows disagree)."""
        return sum(len(r) for r in self.rows) // self.stride

    def probs(self) -> np.ndarray:
        """The per-token probabilities so far, [windows * stride, C]."""
        if len(self.rows) != 1:
            self.rows = [np.concatenate(self.rows) if self.rows else np.zeros((0, len(self.names)), np.float32)]
        return self.rows[0]

    def score(self, ready: int) -> None:
        """Score the windows whose tokens all exist among the first `ready` tokens (`Scorer.complete_windows`),
        push the rows known so far."""
        if self.scorer.complete_windows(ready, self.stride) > self.windows:
            video, audio = self.tokens.arrays()
            self._score(video[:ready], audio[:ready], self.scorer.complete_windows(ready, self.stride))
        self._push(ready)

    def score_end(self, video: np.ndarray, audio: np.ndarray, duration: float) -> None:
        """The stream has ended, `duration` seconds long, with these tokens: score the windows left (the last ones
        padded at the end, as offline), push the rest of the rows, and queue the clips of the spans not given out
        yet (the online decoder's `close`)."""
        self._score(video, audio, None)
        self._push(min(len(video), len(audio)))
        self._give(self.online.close(duration), len(video))

    def _score(self, video: np.ndarray, audio: np.ndarray, last: int | None) -> None:
        """Score windows from the next one to `last` (None: to the last of these tokens) with the Scorer's one
        scoring path, `score_range`: exactly the windows of `score_half` on the whole stream."""
        t0 = time.perf_counter()
        probs = self.scorer.score_range(video, audio, self.windows, last, stride=self.stride, what=str(self.playlist))
        self.score_sec += time.perf_counter() - t0
        self.rows.append(token_rows(probs, self.stride))

    def _push(self, ready: int) -> None:
        """The rows of the first `ready` tokens not yet pushed go to the online decoder, a window at a time (each
        span is dated by the first token that made it final), and the spans it gives out are queued."""
        known = self.probs()[:ready]
        step = self.stride
        # the decoder's own count of rows, not a copy kept here: a Ctrl-C / SIGTERM landing between a push and
        # such a copy's update would push the same rows twice (every later score shifted by a window)
        while len(known) > self.online.tokens:
            spans = self.online.push(known[self.online.tokens : self.online.tokens + step])
            self._give(spans, self.online.tokens)

    def _give(self, spans: list[Span], tokens: int) -> None:
        """Queue the clips of spans final once `tokens` scores were known (with when, in the stream, that was, and
        when at the latest the online rule makes it final: `final_by`, see `highlights.online`)."""
        needed = (tokens + self.right) / self.tps  # the stream's second up to which tokens were needed
        slack = self.window / 2 / self.tps + (self.stride + 1) / self.tps  # half a window, one push, a token
        now = self.clock.now()
        for span in spans:
            final_at = min(needed, self.recorder.recorded)
            final_by = self.online.final_after(span) + slack
            info = {"final_at": round(final_at, 3), "wait_sec": round(final_at - span.peak, 3)}
            info["final_by"] = round(final_by, 3)
            self.clips.put(ClipOrder(span, info, since=self.clock.arrival(span.peak), queued=now))

    def pace(self, now: float | None = None) -> Pace:
        """Where the run stands at `now` (default: the clock's now)."""
        now = self.clock.now() if now is None else now
        stream_start = self.clock.arrival(0.0) if self.clock.arrivals else now
        scored = self.windows * self.stride / self.tps
        recorded = self.recorder.recorded
        lag = max(0.0, recorded - scored - self.window / 2 / self.tps)
        spans = sum(len(given) for given in self.online.given)
        return Pace(recorded, scored, lag, spans, max(1e-6, now - stream_start))

    def state(self, *, final: bool, **extra: str) -> dict:
        """live.json, and report.html with the scores and spans so far; one warning when falling behind. `extra`:
        other fields of live.json (`name`, the state: finished or live by default)."""
        pace = self.pace()
        self.clock.worst_lag = max(self.clock.worst_lag, pace.lag)
        state = {
            "state": extra.pop("name", "finished" if final else "live"),
            "recorded_sec": round(pace.recorded, 3),
            "scored_sec": round(pace.scored, 3),
            "lag_sec": round(pace.lag, 2),
            "stream_rate": pace.stream_rate,
            "real_time_factor": pace.rate,
            "compute_per_stream_sec": round((self.tokens.busy + self.score_sec) / max(pace.scored, 1e-6), 3),
            "spans": self.outputs.lines,
            "gaps": [dataclasses.asdict(g) for g in self.recorder.gaps],
            **extra,
        }
        message = behind_message(pace.lag, pace.recorded, pace.scored, pace.rate, pace.stream_rate)
        if message and not self.clock.warned:
            self.clock.warned = True
            print(message, file=sys.stderr, flush=True)
        self.outputs.state(state)
        if not final:
            self._report()
        return state

    def _report(self) -> None:
        """report.html of the recording so far: the core's Result of the tokens, scores and spans so far."""
        probs = self.probs() if self.windows else np.zeros((1, len(self.names)), np.float32)
        video, audio = self.tokens.arrays()
        half = Half(self.half, video, audio, duration=len(probs) / self.tps, probs=probs)
        half.spans = [g for given in self.online.given for g in given]
        result = self._result([half])
        present(self.out)
        with writing(self.out / "report.html"):
            write_report(self.out / "report.html", result, folder=self.out)
        self.outputs.record("report.html")

    def _result(self, halves: list[Half]) -> Result:
        """The core's Result of the recording so far (what an offline run on recording.m3u8 returns)."""
        match = Match.recording(self.playlist, half=self.half)
        p = self.pipeline
        random_weights = self.tokens.random_weights
        return Result(match, p.model, self.spec, halves, p.scoring, random_weights=random_weights, cmap=p.cmap)

    # ---- threads ----------------------------------------------------------------------------------------------

    def _ended(self) -> None:
        """The stream is over: the playlist is finished, so the decoders end after its last segment."""
        if self.relay.workers.errors:  # a full disk stopped the recorder: room for the finished playlist
            self.outputs.release()
        self.recorder.playlist(self.playlist, final=True)

    def cut_clips(self) -> None:
        """Cut the queued clips in order (the clip cutter's thread), until None or a full disk halts the run."""
        while (order := self.clips.get()) is not None and not self._halted.is_set():
            span = order.span
            record = self.outputs.add(span, order.info, order.since)
            self.records.append(record)
            print(
                f"clip {record['clip']}: {span.label} at {span.peak:.1f} s, {record['latency_sec']:.1f} s after it",
                file=sys.stderr,
                flush=True,
            )

    def _check(self) -> None:
        groups = (self.workers, self.relay.workers, self.tokens.workers)
        if any(group.errors for group in groups):
            self._intact()  # a folder removed under the run breaks the decoders: say that, not what broke
        # a full disk first: a decoder may fail on the segment it cut short
        check(self.workers, self.relay.workers, self.tokens.workers, prefer=(DiskFull,))
        if not self.relay.workers.alive() and not self.recorder.segments:
            problem = "; ".join(dict.fromkeys(self.recorder.errors)) or "no data"
            raise UserError(f"{self.live.source}: nothing was received ({problem})")

    def _intact(self) -> None:
        """FolderGone when the run's folder, or what the run wrote in it (the recording, its playlist), was
        removed under the run: a removal in progress (files first, the folder last) counts too."""
        present(self.out)
        written = [self.recorder.folder, *(seg.path for seg in self.recorder.segments)]
        if self.recorder.segments:
            written.append(self.playlist)
        if not all(path.exists() for path in written):
            raise gone(self.out)

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
        self.relay.workers.stop.set()
        self.clips.put(None)
        self.relay.workers.join()  # its end finishes recording.m3u8 (in place if need be)
        self.workers.join()
        out = self.out
        message = stopped_message(out, exc, self.outputs.lines, self.recorder.recorded, self.outputs.finished())
        with contextlib.suppress(UserError):
            self.outputs.playlist(final=True, recording=False)
        with contextlib.suppress(UserError):
            self.state(final=True, name="stopped: disk full", error=message)
        self.outputs.close()
        return message

    def _run(self) -> tuple[Result, Written]:
        self.relay.attach(self.segment, self._ended)
        self.workers.start(self.cut_clips, name="clips")
        try:
            while self.relay.workers.alive() or not self.tokens.done():
                with self.tokens.changed:
                    self.tokens.changed.wait(0.5)
                self._check()
                self.step()
        except KeyboardInterrupt:
            print("stopping: the recording so far is scored and written (Ctrl-C again: stop now)", file=sys.stderr)
            try:
                self.relay.workers.stop.set()
                self.relay.workers.join()
                if not self.recorder.segments:
                    raise Interrupted(f"{self.live.source}: stopped before any data came; nothing is kept") from None
                self.tokens.workers.wait(check=False)
                self._check()
                return self._finish(interrupted=True)
            except Interrupted:
                raise
            except KeyboardInterrupt:
                raise Interrupted(self._stop_now()) from None
        self.tokens.workers.wait(check=False)
        self._check()
        return self._finish(interrupted=False)

    def _stop_now(self) -> str:
        """A second Ctrl-C: stop at once (further Ctrl-C's ignored meanwhile), but leave a closed recording (the
        recorder's ffmpeg ends it and lists its last segment; killed after STOP_WAIT_SEC), finished playlists and
        a final live.json; returns the one line with the command that makes the end-of-run outputs."""
        main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
        try:
            self._halted.set()
            self.relay.workers.stop.set()
            self.tokens.workers.stop.set()
            self.clips.put(None)
            self.relay.workers.join()  # its end finishes recording.m3u8
            self.workers.join(2 * STOP_WAIT_SEC)  # the clip being cut, if any
            recorded = self.recorder.recorded
            message = (
                f"{self.out}: stopped at once at {recorded:.1f} s of the recording; {self.outputs.lines} span(s) "
                f"are in spans.jsonl, their clips in clips/; the recording is closed: "
                f"`{recovery_command(self.out, self.pipeline.model)}` writes spans.json, the report and the reel"
            )
            with contextlib.suppress(UserError):
                self.outputs.playlist(final=True, recording=not self.outputs.finished())
            with contextlib.suppress(UserError):
                self.state(final=True, name="stopped: interrupted", error=message)
            self.outputs.close()
            return message
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)

    def _finish(self, *, interrupted: bool) -> tuple[Result, Written]:
        """Score the end, give out the last spans and clips, then write the offline run's outputs."""
        video, audio = self.tokens.final_arrays()
        duration = probe(self.playlist).duration
        self.score_end(video, audio, duration)
        self.clips.put(None)
        self.workers.join()
        self._check()
        self.outputs.playlist(final=True)
        state = self.state(final=True)
        self.outputs.close()
        half = Half(self.half, video, audio, duration=duration, probs=self.probs()[: len(video)])
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


def run_live(
    load: Callable[[], Pipeline],
    live: LiveSettings,
    output: Output,
    *,
    half: int = 1,
    now: Callable[[], float] = time.monotonic,
    model: Path | None = None,
) -> tuple[Result, Written]:
    """The whole live run into `output.out` (locked for the run). Recording starts at once, and one line says
    so; `load()` builds the pipeline meanwhile. `now`: the run's clock; `model`: the model file `load()` reads
    (named in the command a refusal suggests)."""
    live.check()
    out = output.out
    before = set(os.listdir(out)) if out.is_dir() else None
    lock = lock_folder(out, model=model, keep_old=output.keep_old)
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
        ),
        now,
    )
    try:
        relay.start()  # recording starts now, while the networks are built
        print(listening_line(live.source, out), file=sys.stderr, flush=True)
        pipeline = load()
        if pipeline.scoring.score_placement != "centre":
            raise UserError("--live decodes the scores of centred windows: --score_placement first is offline only")
        live_run = LiveRun(pipeline, live, output, half, relay)
        try:
            return live_run.run()
        finally:
            relay.workers.stop.set()
            relay.workers.join()  # the playlist is finished: the decoders end too
            live_run.tokens.workers.stop.set()
            bound = None if live_run.outputs.finished() else 10.0  # else its decoders wait for more
            live_run.tokens.workers.join(bound)
            live_run.outputs.close()  # also the space held for a full disk, whatever ended the run
    except BaseException:
        relay.workers.stop.set()
        relay.workers.join()
        if not relay.recorder.segments:  # nothing recorded: nothing kept, so that the retry is accepted
            clear_failed_start(out, before)
        raise
    finally:
        relay.workers.stop.set()
        relay.workers.join()
        lock.close()
