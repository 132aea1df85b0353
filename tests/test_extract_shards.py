"""Shards of a batch from a Slurm array task's variables (flags win), and the summary of every shard's games."""

import json
import os
from pathlib import Path

import pytest

from soccer_highlights.commands.extract import main
from soccer_highlights.common.errors import UserError
from soccer_highlights.common.shards import resolve_shard, slurm_array_shard, take_shard
from tests.media import make_video


def array_env(task, count, first=0, step=1):
    return {
        "SLURM_ARRAY_TASK_ID": str(task),
        "SLURM_ARRAY_TASK_COUNT": str(count),
        "SLURM_ARRAY_TASK_MIN": str(first),
        "SLURM_ARRAY_TASK_STEP": str(step),
    }


def test_array_task_place_is_the_shard_for_any_range():
    assert slurm_array_shard(array_env(2, 4)) == (4, 2)
    assert slurm_array_shard(array_env(3, 4, first=1)) == (4, 2)
    assert slurm_array_shard(array_env(4, 4, step=2)) == (4, 2)
    assert slurm_array_shard({}) is None


def test_array_task_off_its_range_is_a_user_error():
    with pytest.raises(UserError, match="--array=0-3"):
        slurm_array_shard(array_env(3, 4, step=2))


def test_flags_win_over_the_array_each_on_its_own():
    env = array_env(1, 4)
    assert resolve_shard(None, None, env) == (4, 1)
    assert resolve_shard(2, None, env) == (2, 1)
    assert resolve_shard(None, 3, env) == (4, 3)
    assert resolve_shard(None, None, {}) == (1, 0)
    with pytest.raises(UserError, match="shard_index"):
        resolve_shard(2, 2, env)


def test_every_item_in_exactly_one_shard():
    items = [(g, h) for g in "abcdefg" for h in (1, 2)]
    shards = [take_shard(items, 3, i, key=lambda x: x[0]) for i in range(3)]
    assert sorted(x for s in shards for x in s) == sorted(items)
    assert all(len({g for g, _ in s}) * 2 == len(s) for s in shards)  # both halves of a game together


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("clip") / "clip.mp4", 0.6)


def make_games(root: Path, clip: Path, n: int) -> list[Path]:
    folders = []
    for g in range(n):
        folder = root / "league" / "2020-2021" / f"game {g}"
        folder.mkdir(parents=True)
        for half in (1, 2):
            os.link(clip, folder / f"{half}_224p.mkv")
        folders.append(folder)
    return folders


def test_array_task_extracts_only_its_games(clip, tmp_path, monkeypatch, capsys):
    folders = make_games(tmp_path, clip, 3)
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "3")
    assert main(["--tree", str(tmp_path), "--weights", "random", "--quiet"]) == 0
    assert "2 extracted, 0 already done (shard 1/3)" in capsys.readouterr().out
    assert [f.name for f in folders if (f / "extraction.json").exists()] == ["game 1"]


def test_summary_names_done_failed_and_missing_games(clip, tmp_path, capsys):
    folders = make_games(tmp_path, clip, 3)
    (folders[2] / "2_224p.mkv").unlink()
    (folders[2] / "2_224p.mkv").write_bytes(b"not a video")
    args = ["--tree", str(tmp_path), "--weights", "random", "--quiet"]
    with pytest.raises(UserError, match="1 of 4 videos failed"):
        main([*args, "--num_shards", "2", "--shard_index", "0"])  # games 0 and 2 are shard 0
    capsys.readouterr()
    errors = json.loads((folders[2] / "extraction_errors.json").read_text())
    assert list(errors) == ["2"]
    assert main([*args, "--summary"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "3 games: 1 done, 1 failed, 1 missing"
    assert out[1:3] == [
        "missing  league/2020-2021/game 1  half 1 (1_224p.mkv)",
        "missing  league/2020-2021/game 1  half 2 (2_224p.mkv)",
    ]
    assert out[3] == f"failed   league/2020-2021/game 2  half 2: {errors['2']}" and "2_224p.mkv" in errors["2"]
    (folders[2] / "2_224p.mkv").unlink()
    os.link(clip, folders[2] / "2_224p.mkv")
    assert main([*args, "--num_shards", "2", "--shard_index", "1"]) == 0
    assert main([*args, "--num_shards", "2", "--shard_index", "0"]) == 0
    assert not (folders[2] / "extraction_errors.json").exists()
    assert main([*args, "--summary"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "3 games: 3 done, 0 failed, 0 missing"
