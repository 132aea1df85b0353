"""common.workers.Workers: the one helper of every background thread (extraction stages, the live recorder, its
decoders and networks, its clip cutter)."""

from __future__ import annotations

import threading

import pytest

from soccer_highlights.common.workers import Workers, check


def test_an_error_stops_the_group_and_is_raised_in_the_caller():
    workers = Workers()
    release = threading.Event()

    def waits() -> None:
        workers.stop.wait()  # a worker that runs until the group stops

    def fails() -> None:
        release.wait()
        raise ValueError("decoder broke")

    workers.start(waits)
    workers.start(fails, name="decoder")
    assert [t.name for t in workers.threads] == ["waits", "decoder"] and workers.alive()
    workers.check()  # nothing yet
    release.set()
    with pytest.raises(ValueError, match="decoder broke"):
        workers.wait()
    assert workers.stop.is_set() and not workers.alive()


def test_join_is_bounded_per_thread_and_says_whether_all_ended():
    workers = Workers()
    go = threading.Event()
    workers.start(go.wait)
    assert workers.join(0.01) is False and workers.alive()
    go.set()
    assert workers.join() is True and not workers.alive()
    assert Workers().join(0.0) is True  # no thread: nothing to wait for


def test_check_over_groups_raises_the_preferred_error_first():
    class Full(OSError):
        pass

    a, b = Workers(), Workers()
    a.fail(RuntimeError("decoder: truncated segment"))
    b.fail(Full("disk full"))
    with pytest.raises(RuntimeError):
        check(a, b)
    with pytest.raises(Full):
        check(a, b, prefer=(Full,))
    assert a.stop.is_set() and b.stop.is_set()
    a.wait(check=False)  # no thread, and the caller checks itself


def test_args_go_to_the_worker():
    workers, seen = Workers(), []
    workers.start(seen.append, 42, name="append")
    workers.wait()
    assert seen == [42]
