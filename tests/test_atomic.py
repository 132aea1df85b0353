"""common/atomic.py: write failures as one line, an output set that appears whole or not at all, leftovers swept."""

from __future__ import annotations

import errno
import json
import os
import subprocess
from pathlib import Path

import pytest

from soccer_highlights.common.atomic import (
    MANIFEST,
    OutputSet,
    atomic_path,
    record_files,
    sweep_leftovers,
    write_json,
)
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
    record_files(tmp_path, ["a.json", "reel.mp4"])  # the earlier run's record
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
    record_files(tmp_path, ["a.json", "b.json"])
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
    assert _names(tmp_path) == [MANIFEST, "a.json", "b.json"]
    assert [(tmp_path / n).read_text() for n in ("a.json", "b.json")] == ["old", "old"]


def test_an_exception_discards_the_run(tmp_path):
    (tmp_path / "a.json").write_text("old")
    record_files(tmp_path, ["a.json"])
    with pytest.raises(KeyboardInterrupt), OutputSet(tmp_path, ["a.json"]) as files:
        files.path("a.json").write_text("new")
        raise KeyboardInterrupt
    assert _names(tmp_path) == [MANIFEST, "a.json"] and (tmp_path / "a.json").read_text() == "old"


def test_a_file_no_run_wrote_refuses_the_run_before_any_work(tmp_path):
    """issue 30.1: the user's own highlights.mp4 / report.html in --out (no record of them) were replaced; now the
    run is refused when the set is made, with one line naming them and the ways out."""
    (tmp_path / "a.json").write_text("the user's notes")
    (tmp_path / "b.json").write_text("the user's")
    with pytest.raises(UserError) as info:
        OutputSet(tmp_path, ["a.json", "b.json", "c.json"])
    message = str(info.value)
    assert "a.json, b.json were not written by this project" in message and "\n" not in message
    assert "another --out" in message and "--keep_old" in message
    assert _names(tmp_path) == ["a.json", "b.json"]


def test_a_file_changed_since_the_run_wrote_it_is_the_users(tmp_path):
    """Recorded, but its content is no longer what the run wrote (the user edited it): refused too; unchanged,
    it is replaced."""
    with OutputSet(tmp_path, ["a.json", "b.json"]) as files:
        files.path("a.json").write_text("run 1")
        files.path("b.json").write_text("run 1")
    assert set(json.loads((tmp_path / MANIFEST).read_text())["files"]) == {"a.json", "b.json"}
    (tmp_path / "b.json").write_text("edited by the user")
    with pytest.raises(UserError, match="b.json was not written by this project .or changed since."):
        OutputSet(tmp_path, ["a.json", "b.json"])
    (tmp_path / "b.json").write_text("run 1")  # as the run wrote it: ours again
    with OutputSet(tmp_path, ["a.json", "b.json"]) as files:
        files.path("a.json").write_text("run 2")
        files.path("b.json").write_text("run 2")
    assert (tmp_path / "b.json").read_text() == "run 2"


def test_keep_old_keeps_the_users_files_under_visible_names(tmp_path, caplog):
    (tmp_path / "report.html").write_text("the user's notes")
    (tmp_path / "report.old-1.html").write_text("an older copy")
    (tmp_path / "spans.json").write_text("the user's, not written by this run")
    with OutputSet(tmp_path, ["report.html", "spans.json"], keep_old=True) as files:
        files.path("report.html").write_text("new")
    assert (tmp_path / "report.html").read_text() == "new"
    assert (tmp_path / "report.old-2.html").read_text() == "the user's notes"
    assert (tmp_path / "report.old-1.html").read_text() == "an older copy"
    assert (tmp_path / "spans.json").read_text() == "the user's, not written by this run"
    assert "kept the earlier files as report.old-2.html" in caplog.text


def test_a_legacy_record_of_names_only_counts_for_files_unchanged_since(tmp_path):
    """A record without sizes and hashes (an earlier version's) shows a file is still what a run wrote only while
    the file's status has not changed since the record was written: a file changed (or put there) after it is
    refused (here the record is made older than the file)."""
    (tmp_path / "a.json").write_text("anything")
    (tmp_path / MANIFEST).write_text('{"written": ["a.json"]}')
    OutputSet(tmp_path, ["a.json"])  # accepted: the run that wrote the record had just written a.json
    past = (tmp_path / "a.json").stat().st_ctime - 1
    os.utime(tmp_path / MANIFEST, (past, past))
    with pytest.raises(UserError, match="a.json was not written by this project"):
        OutputSet(tmp_path, ["a.json"])


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
