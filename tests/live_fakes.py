"""A live run driven by a test, step by step, without a thread or ffmpeg: a fake clock, a fake stream and a fake
token source around the real parts (the core's Pipeline and Scorer, LiveRun, its online decoder and LiveOutputs,
a Recorder that never runs and a Relay that never starts). `FastFrames`, a stand-in for ResNet-152, also for a
whole live run in a child process: `python -m tests.live_fakes ARGS` is `inference.py ARGS` with it (what the
signal tests send Ctrl-C to)."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import numpy as np

from soccer_highlights.common.workers import Workers
from soccer_highlights.core.pipeline import Pipeline
from soccer_highlights.extract_features.call_plan import CallPlan
from soccer_highlights.live.recorder import Recorder, Segment
from soccer_highlights.live.relay import Relay
from soccer_highlights.live.runner import LiveRun, LiveSettings
from soccer_highlights.writers.outputs import Output

SOURCE = "udp://127.0.0.1:9"


class FakeClock:
    """The run's clock: `now` seconds until the test moves it (whole quarters of a second stay exact)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeTokens:
    """A token source (`live.tokens.TokenSource`) over features made in advance: the test says how many video and
    audio tokens have come (`come`)."""

    random_weights = True  # as the live tests' networks: the report and outputs say so

    def __init__(self, video: np.ndarray, audio: np.ndarray) -> None:
        self.video, self.audio = video, audio
        self.counts = [0, 0]
        self.busy = 0.0
        self.changed = threading.Condition()
        self.workers = Workers()  # none: the test is the decoders
        self.started = False

    def come(self, video: int, audio: int | None = None) -> None:
        """`video` more video tokens and `audio` (default as many) more audio tokens, as far as there are."""
        more = [video, video if audio is None else audio]
        self.counts = [min(len(x), n + m) for x, n, m in zip((self.video, self.audio), self.counts, more, strict=True)]

    def start(self) -> None:
        self.started = True

    def ready(self) -> int:
        return min(self.counts)

    def done(self) -> bool:
        return True

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return self.video[: self.counts[0]], self.audio[: self.counts[1]]

    def final_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """The audio as long as the video (the fake has audio for every video token)."""
        return self.video[: self.counts[0]], self.audio[: self.counts[0]]


class FakeStream:
    """The stream in real time on the fake clock: a segment of `segment_sec` is recorded (and handed to the run)
    when the clock reaches its end."""

    def __init__(self, run: LiveRun, clock: FakeClock, segment_sec: float = 1.0) -> None:
        self.run, self.clock, self.segment_sec = run, clock, segment_sec

    def play(self) -> Segment:
        """The next segment: the clock moves on by its length, then it is recorded."""
        recorder = self.run.recorder
        self.clock.advance(self.segment_sec)
        index = len(recorder.segments)
        seg = Segment(
            index, recorder.folder / f"seg_{index:06d}.ts", recorder.recorded, recorder.recorded + self.segment_sec
        )
        recorder.segments.append(seg)
        self.run.segment(seg)
        return seg


def features(rng: np.random.Generator, tokens: int, dim: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Video and audio features [tokens, dim] that vary over time (slow drifts and bursts), float32."""
    drift = np.cumsum(rng.normal(size=(2, tokens, dim)), axis=1) / 4
    bursts = (rng.random((2, tokens, 1)) < 0.1) * rng.normal(scale=3.0, size=(2, tokens, dim))
    video, audio = (drift + bursts + rng.normal(size=(2, tokens, dim))).astype(np.float32)
    return video, audio


def live_run(pipeline: Pipeline, out: Path, clock: FakeClock, tokens: FakeTokens) -> LiveRun:
    """A LiveRun into `out` on the fake clock and tokens: its recorder never runs, its relay never starts."""
    out.mkdir(parents=True, exist_ok=True)
    recorder = Recorder(SOURCE, out / "recording", lambda seg: None)
    recorder.folder.mkdir()
    relay = Relay(recorder, now=clock)
    return LiveRun(pipeline, LiveSettings(SOURCE), Output(out), 1, relay, tokens)


class FastFrames:
    """A stand-in for ResNet-152 (pixel means of 2048 blocks): the same numbers whatever the batch, instantly."""

    source = "random"
    on_gpu = False
    runtime = "tensorflow"

    plan: CallPlan | None = None

    def set_call_plan(self, frames_per_call: int | None = None) -> CallPlan:
        """Calls of the frames given (or 16): nothing to measure."""
        self.plan = CallPlan(frames=frames_per_call or 16)
        return self.plan

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        x = frames.reshape(len(frames), -1)[:, : 2048 * 73].reshape(len(frames), 2048, 73)
        return x.mean(axis=2, dtype=np.float32) / 255


def main(argv: list[str]) -> None:
    """`inference.py argv` in this process, its ResNet-152 replaced by FastFrames."""
    from soccer_highlights.commands import inference
    from soccer_highlights.common.errors import run_cli
    from soccer_highlights.extract_features import pipeline

    pipeline._resnet = lambda *args: FastFrames()
    run_cli(inference.main, argv)


if __name__ == "__main__":
    main(sys.argv[1:])
