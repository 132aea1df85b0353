"""Training's `--tflog` keeps the user's files (issue 30.1, training's part): only what a run of this project wrote
there (`.outputs.json`, with sizes and SHA-256 for files, the allowed contents for folders) and that is unchanged
since is replaced or removed, `--overwrite` included; any other file or folder with an output's name refuses the
run before any work, naming it and the ways out, or is kept as NAME.old-N.EXT with `--keep_old`. On 643e491 every
file with an output's name was taken for an earlier run's and `--overwrite` deleted it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from soccer_highlights.common.atomic import MANIFEST, record_files, write_json
from soccer_highlights.common.errors import UserError
from soccer_highlights.training.checkpoints import claim_outputs, release_outputs
from soccer_highlights.training.config import TrainConfig


def _cfg(tmp_path: Path, **kw) -> TrainConfig:
    return TrainConfig(architecture="video", tflog=str(tmp_path), output_prefix="r", **kw)


def _earlier_run(tmp_path: Path) -> None:
    """What a finished run leaves: its folders claimed, events and checkpoint in them, best model and summary
    recorded as they were written."""
    cfg = _cfg(tmp_path)
    claim_outputs(cfg)
    try:
        for split in ("training", "validation", "testing"):
            (tmp_path / f"r_{split}").mkdir()
            (tmp_path / f"r_{split}" / "events.out.tfevents.1.host.2.v2").write_bytes(b"events")
        (tmp_path / "r_resume").mkdir()
        (tmp_path / "r_resume" / "state.json").write_text("{}")
        (tmp_path / "r_best.keras").write_bytes(b"model")
        record_files(tmp_path, ["r_best.keras"])  # as save_model does
        write_json(tmp_path / "r_summary.json", {"epochs": 1})
    finally:
        release_outputs(cfg)  # records the summary this run wrote


def _claim(cfg: TrainConfig) -> None:
    try:
        claim_outputs(cfg)
    finally:
        release_outputs(cfg)


def test_an_earlier_runs_outputs_are_replaced_with_overwrite_only(tmp_path):
    _earlier_run(tmp_path)
    record = json.loads((tmp_path / MANIFEST).read_text())["files"]
    assert record["r_best.keras"]["size"] == 5 and len(record["r_summary.json"]["sha256"]) == 64
    assert record["r_training"] == {"holds": ["events.out.tfevents.*"]}
    with pytest.raises(UserError, match=r"r_best.keras: an earlier run wrote r_best.keras, r_summary.json, r_resume"):
        _claim(_cfg(tmp_path))
    _claim(_cfg(tmp_path, overwrite=True))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("r_")]


@pytest.mark.parametrize(
    "user",
    ["r_best.keras", "r_summary.json", "r_training", "r_resume", "changed r_best.keras", "note in r_validation"],
)
def test_a_users_file_with_an_outputs_name_is_never_replaced(user, tmp_path, capsys):
    """A file or folder no run wrote (or changed since, or a run's folder holding a file of the user's): refused
    before any work even with --overwrite, one line naming it and the ways out; --keep_old keeps it aside."""
    if user.startswith(("changed", "note")):
        _earlier_run(tmp_path)
    name = user.split()[-1]
    path = tmp_path / name
    if user.startswith("changed"):
        path.write_bytes(b"mine!")  # same size as the run's file, other content
    elif user.startswith("note"):
        (path / "notes.txt").write_text("mine")
    elif name.endswith(("keras", "json")):
        path.write_text("mine")
    else:
        path.mkdir()
        (path / "state.json" if name == "r_resume" else path / "events.out.tfevents.1.host.2.v2").write_text("mine")
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    with pytest.raises(UserError) as err:
        _claim(_cfg(tmp_path, overwrite=True))
    message = str(err.value)
    assert "\n" not in message and f"{name} was not written by this project" in message, message
    assert "another --tflog or --outputPrefix, or add --keep_old" in message, message
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == before

    _claim(_cfg(tmp_path, overwrite=True, keep_old=True))
    kept = tmp_path / (name.replace(".", ".old-1.", 1) if "." in name else f"{name}.old-1")
    assert not os.path.lexists(path)
    if kept.is_file():
        assert kept.read_bytes() in (b"mine", b"mine!")
    else:
        assert "mine" in [p.read_text() for p in kept.rglob("*") if p.is_file()]
    assert f"--keep_old: kept {name} as {kept.name}" in capsys.readouterr().out


def test_resume_state_continues_and_a_run_without_overwrite_keeps_the_users_file(tmp_path):
    """Without --overwrite the user's file is refused the same way (not taken for an earlier run's)."""
    (tmp_path / "r_summary.json").write_text("mine")
    with pytest.raises(UserError, match=r"r_summary.json was not written by this project"):
        _claim(_cfg(tmp_path))
    _claim(_cfg(tmp_path, keep_old=True))
    assert (tmp_path / "r_summary.old-1.json").read_text() == "mine"
