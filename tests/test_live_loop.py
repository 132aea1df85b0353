"""The live loop, step by step, on a fake clock, a fake stream and a fake token source (tests/live_fakes.py): no
thread, no ffmpeg, no sleep. Windows are scored as soon as their last token exists, with exactly the scores of
an offline run on the same features; spans come out of the online decoder and their clips are queued with
their latency on the run's clock; the falling-behind warning and the progress lines follow that clock."""

from __future__ import annotations

import re

import numpy as np
import pytest

from soccer_highlights.common.errors import UserError
from soccer_highlights.core.match import Scoring
from soccer_highlights.core.pipeline import Pipeline
from soccer_highlights.highlights.decoder import ClassRule, DecoderConfig, decode
from soccer_highlights.live.pace import BEHIND_SEC, PROGRESS_EVERY_SEC
from soccer_highlights.live.runner import STATE_EVERY_SEC, LiveSettings, run_live
from soccer_highlights.writers.outputs import Output
from tests.live_fakes import FakeClock, FakeStream, FakeTokens, features, live_run

# short spans, a low threshold: an untrained model's scores give spans every few seconds; spans never shortened to
# their max_length, so each one is final by the documented bound (`final_by`)
RULE = ClassRule(before=2, after=3, threshold=0.05, min_peak_distance=3, merge_gap=1, min_length=0, max_length=60)
DECODER = DecoderConfig(rules={}, default=RULE, min_gap_sec=0)
PROGRESS = re.compile(r"^live: (\d+) s recorded, (\d+) s scored, (\d+) span\(s\) so far, (\d+) s behind the stream$")


@pytest.fixture(scope="module")
def pipeline(tiny_model) -> Pipeline:
    """The core's pipeline on the tiny model (8-token windows, 2 tokens a second), one window per model call: a
    window's scores then never depend on the windows scored beside it, so live and offline agree to the bit."""
    return Pipeline(tiny_model, scoring=Scoring(decoder=DECODER, windows_per_call=1))


def _complete(ready: int, pipeline: Pipeline) -> int:
    """Windows whose last token is among the first `ready`: window m is centred on token 2m and ends 3 later."""
    window, stride = pipeline.spec.window_frames, pipeline.scoring.stride
    return sum(1 for m in range(ready) if m * stride + window - 1 - window // 2 < ready)


@pytest.mark.parametrize("seed", range(4))
def test_live_scores_fed_in_chunks_are_exactly_the_offline_scores(pipeline, tmp_path, seed):
    rng = np.random.default_rng(seed)
    tokens = int(rng.integers(9, 80))  # odd lengths too: the last window is padded at the end
    video, audio = features(rng, tokens)
    source = FakeTokens(video, audio)
    run = live_run(pipeline, tmp_path / "live", FakeClock(), source)
    while source.counts[0] < tokens:
        source.come(int(rng.integers(0, 6)), int(rng.integers(0, 6)))  # video and audio each at their own pace
        run.step()
        assert run.windows == _complete(source.ready(), pipeline)  # scored as soon as its last token exists
    source.come(0, tokens)
    run.score_end(*source.final_arrays(), duration=tokens / 2)
    offline = pipeline.scorer.score_half(video, audio, stride=pipeline.scoring.stride, progress=False)
    assert run.probs()[:tokens].shape == offline.shape
    np.testing.assert_array_equal(run.probs()[:tokens], offline)


def test_live_scores_in_larger_batches_equal_offline_scores_to_float_noise(tiny_model, tmp_path):
    pipeline = Pipeline(tiny_model, scoring=Scoring(decoder=DECODER))  # 256 windows per call offline
    rng = np.random.default_rng(7)
    video, audio = features(rng, 101)
    source = FakeTokens(video, audio)
    run = live_run(pipeline, tmp_path / "live", FakeClock(), source)
    while source.counts[0] < 101:
        source.come(int(rng.integers(1, 20)))
        run.step()
    run.score_end(*source.final_arrays(), duration=50.5)
    offline = pipeline.scorer.score_half(video, audio, progress=False)
    np.testing.assert_allclose(run.probs()[:101], offline, atol=1e-6)


def test_the_loop_step_by_step_on_a_fake_clock(pipeline, tmp_path, capsys):
    clock = FakeClock()
    video, audio = features(np.random.default_rng(0), 120)
    source = FakeTokens(video, audio)
    run = live_run(pipeline, tmp_path / "live", clock, source)
    stream, start = FakeStream(run, clock), clock()
    assert run.clock.started == start and run.windows == 0
    queued = []
    for second in range(1, 61):
        seg = stream.play()  # one second of stream, at one second of the clock
        assert source.started and run.clock.arrivals[-1] == (seg, start + second)
        for _ in range(2):  # its two tokens, one at a time
            source.come(1)
            run.step()
            assert run.windows == _complete(source.ready(), pipeline)
            while not run.clips.empty():
                order = run.clips.get_nowait()
                assert order is not None
                queued.append(order)
                # dated on the run's clock: its peak's second arrived at start + peak (the stream in real time),
                # the span was final and queued now
                assert order.since == pytest.approx(start + order.span.peak)
                assert order.queued == clock() and order.waited == pytest.approx(clock() - start - order.span.peak)
                assert order.span.peak <= order.info["final_at"] <= order.info["final_by"]
                assert order.info["final_at"] <= run.recorder.recorded
    assert queued, "no span was final before the stream ended"
    assert all(o.waited <= o.info["final_by"] - o.span.peak for o in queued)
    assert (tmp_path / "live" / "live.json").is_file() and (tmp_path / "live" / "report.html").is_file()

    assert source.ready() == 120
    run.score_end(*source.final_arrays(), duration=60.0)
    rest = []
    while not run.clips.empty():
        order = run.clips.get_nowait()
        assert order is not None
        rest.append(order)
    probs = pipeline.scorer.score_half(video, audio, progress=False)
    offline = decode(probs, pipeline.spec.class_names, 60.0, DECODER, tokens_per_second=2)
    key = lambda s: (s.start, s.end, s.label)  # noqa: E731
    assert sorted((o.span for o in queued + rest), key=key) == sorted(offline, key=key)
    err = capsys.readouterr().err
    assert "falling behind" not in err


def test_falling_behind_is_said_once_when_the_scores_lag_more_than_behind_sec(pipeline, tmp_path, capsys):
    clock = FakeClock()
    video, audio = features(np.random.default_rng(1), 200)
    source = FakeTokens(video, audio)
    run = live_run(pipeline, tmp_path / "live", clock, source)
    stream = FakeStream(run, clock, segment_sec=0.5)
    said = []
    for half_second in range(1, 121):
        stream.play()
        if half_second <= 20:
            source.come(1)  # the first 10 s of tokens come in time, then none: the networks are stuck
        run.step()
        lag = run.pace().lag
        warned = "warning: falling behind" in capsys.readouterr().err
        said.append((clock(), lag, warned))
    (when,) = [(t, lag) for t, lag, warned in said if warned]
    assert when[1] > BEHIND_SEC
    first_over = next(t for t, lag, _ in said if lag > BEHIND_SEC)
    assert first_over <= when[0] <= first_over + STATE_EVERY_SEC + 0.5  # at the next live.json
    assert run.clock.worst_lag > BEHIND_SEC


def test_a_progress_line_every_progress_sec_of_the_clock(pipeline, tmp_path, capsys):
    clock = FakeClock()
    video, audio = features(np.random.default_rng(2), 140)
    source = FakeTokens(video, audio)
    run = live_run(pipeline, tmp_path / "live", clock, source)
    stream = FakeStream(run, clock, segment_sec=0.25)
    lines = []  # (clock since the start, the line's figures, spans given out by then)
    for quarter in range(1, 4 * 65 + 1):
        stream.play()
        if quarter % 2 == 0:
            source.come(1)
        run.step()
        for line in capsys.readouterr().err.splitlines():
            match = PROGRESS.match(line)
            assert match, line
            spans = sum(len(given) for given in run.online.given)
            lines.append((clock() - run.clock.started, tuple(int(g) for g in match.groups()), spans))
    times = [t for t, _, _ in lines]
    assert times == [10.0, 20.0, 30.0, 40.0, 50.0, 60.0]  # steadily, never more often than the period
    assert all(b - a >= PROGRESS_EVERY_SEC for a, b in zip(times, times[1:], strict=False))
    # at 30 s: 60 tokens, the window centred on token 56 the last complete one (29 s scored), nothing behind
    _, figures, spans = lines[2]
    assert figures == (30, 29, spans, 0) and lines[-1][2] > 0


def test_progress_lines_never_come_more_often_than_the_period_however_the_steps_fall(pipeline, tmp_path, capsys):
    rng = np.random.default_rng(3)
    clock = FakeClock()
    source = FakeTokens(*features(rng, 400))
    run = live_run(pipeline, tmp_path / "live", clock, source)
    times = []
    for _ in range(150):
        clock.advance(float(rng.choice([0.25, 0.5, 1.0, 2.75, 6.0])))
        source.come(int(rng.integers(0, 4)))
        run.step()
        printed = capsys.readouterr().err.splitlines()
        assert len(printed) <= 1 and all(PROGRESS.match(line) for line in printed)
        times += [clock()] * len(printed)
    gaps = np.diff([run.clock.started, *times])
    assert len(times) >= 10 and all(PROGRESS_EVERY_SEC <= gap < PROGRESS_EVERY_SEC + 6.0 for gap in gaps), gaps


def test_one_line_says_the_run_is_listening_as_soon_as_the_recorder_starts(tmp_path, capsys):
    out = tmp_path / "live"
    said = []

    def load() -> Pipeline:
        said.append(capsys.readouterr().err)  # the recorder runs; the networks would be built now
        raise UserError("the model is not needed here")

    with pytest.raises(UserError, match="the model is not needed"):
        run_live(load, LiveSettings("udp://127.0.0.1:9"), Output(out), now=FakeClock())
    assert said == [
        f"listening on udp://127.0.0.1:9: recording to {out / 'recording'}, clips to {out / 'clips'} "
        "(Ctrl-C stops and writes the outputs)\n"
    ]
    assert capsys.readouterr().err == ""  # and no other line
