"""common/atomic.py: write failures as one line, an output set that appears whole or not at all, leftovers swept."""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest

from soccer_highlights.common.atomic import MANIFEST, OutputSet, atomic_path, sweep_leftovers, write_json
from soccer_highlights.common.errors import UserError


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_failed_write_is_one_line_and_leaves_nothing(tmp_path):
    message = r"x.bin: cannot write \(No space left on device\)"
    with pytest.raises(UserError, match=message), atomic_path(tmp_path / "x.bin") as tmp:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert not tmp.exists() and _names(tmp_path) == []


def test_a_folder_in_the_way_is_one_line_before_writing(tmp_path):
    (tmp_path / "s.json").mkdir()
    with pytest.raises(UserError, match="s.json: is a folder"):
        write_json(tmp_path / "s.json", {})
    assert _names(tmp_path) == ["s.json"]


def test_output_set_replaces_the_earlier_run_and_removes_what_it_does_not_write(tmp_path, caplog):
    for name in ("a.json", "reel.mp4"):
        (tmp_path / name).write_text("old")
    (tmp_path / MANIFEST).write_text('{"written": ["a.json", "reel.mp4"]}')  # the earlier run's record
    with OutputSet(tmp_path, ["a.json", "b.json", "reel.mp4"]) as files:
        files.path("a.json").write_text("new a")
        files.path("b.json").write_text("new b")
        assert any(n.startswith(f".partial.{os.getpid()}.") for n in _names(tmp_path))
        assert (tmp_path / "a.json").read_text() == "old"  # nothing visible before the end
    assert _names(tmp_path) == [MANIFEST, "a.json", "b.json"]
    assert (tmp_path / "a.json").read_text() == "new a"
    assert "removed reel.mp4 of an earlier run" in caplog.text


def test_output_set_failing_midway_restores_the_earlier_run(tmp_path, monkeypatch):
    for name in ("a.json", "b.json"):
        (tmp_path / name).write_text("old")
    real, failed = os.replace, []

    def replace(src, dst):  # the new b.json cannot be moved into place (once)
        if Path(dst).name == "b.json" and Path(src).name == "b.json" and not failed:
            failed.append(dst)
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real(src, dst)

    files = OutputSet(tmp_path, ["a.json", "b.json"])
    files.path("a.json").write_text("new")
    files.path("b.json").write_text("new")
    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(UserError, match="b.json: cannot write"), files:
        pass
    assert _names(tmp_path) == ["a.json", "b.json"]
    assert [(tmp_path / n).read_text() for n in ("a.json", "b.json")] == ["old", "old"]


def test_an_exception_discards_the_run(tmp_path):
    (tmp_path / "a.json").write_text("old")
    with pytest.raises(KeyboardInterrupt), OutputSet(tmp_path, ["a.json"]) as files:
        files.path("a.json").write_text("new")
        raise KeyboardInterrupt
    assert _names(tmp_path) == ["a.json"] and (tmp_path / "a.json").read_text() == "old"


def test_sweep_removes_dead_runs_leftovers_only(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / f".partial.{dead.pid}.abcd1234").mkdir()
    (tmp_path / f".reel.{dead.pid}.abcd1234").mkdir()
    (tmp_path / f".spans.{dead.pid}.abcd_234.json").write_text("{")
    (tmp_path / f".spans.{os.getpid()}.abcd1234.json").write_text("{")  # a live run's
    (tmp_path / ".config").write_text("")
    assert len(sweep_leftovers(tmp_path)) == 3
    assert _names(tmp_path) == [".config", f".spans.{os.getpid()}.abcd1234.json"]
