"""A window cache belongs to the data it was made from (issue: two trainings in one folder trained on each other's
data, a failed run deleted a good cache's settings, the --tflog lock came after the caches)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from soccer_highlights.common.errors import UserError
from soccer_highlights.training import TrainConfig, windows
from soccer_highlights.training.checkpoints import lock_outputs, release_outputs

D = 8
FRAMES = 40  # 20 s a half: two windows of 10 s


def _game(root: Path, name: str, goal_second: int, seed: int = 0) -> Path:
    game = root / name
    game.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for half in (1, 2):
        np.save(game / f"{half}_ResNET_TF2_PCA512.npy", rng.standard_normal((FRAMES, D)).astype(np.float32))
        np.save(game / f"{half}_VGGish.npy", rng.standard_normal((FRAMES, D)).astype(np.float32))
    annotations = [{"gameTime": f"1 - 00:{goal_second:02d}", "label": "Goal"}]
    (game / "Labels-v2.json").write_text(json.dumps({"annotations": annotations}))
    return game


def _list(folder: Path, names: list[str]) -> Path:
    """`listgame_Train_1.npy` in `folder`: every run's list has the same name, as SoccerNet's do."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "listgame_Train_1.npy"
    np.save(path, np.array(names))
    return path


def _config() -> windows.DataConfig:
    return windows.DataConfig(pca=True, window_seconds=10.0, feature_dim=D)


def _two_datasets(tmp_path: Path) -> tuple[Path, Path]:
    """Two lists of the same name on different games: a goal in window 0 in one, in window 1 in the other."""
    a, b = tmp_path / "a", tmp_path / "b"
    _game(a, "g", goal_second=3, seed=1)
    _game(b, "g", goal_second=13, seed=2)
    return _list(a, ["g"]), _list(b, ["g"])


GOAL = 4  # highlight map: background, kick, subs, card, goal


def test_two_runs_on_different_data_never_share_a_cache(tmp_path):
    list_a, list_b = _two_datasets(tmp_path)
    root = tmp_path / "cache"
    cache_a = windows.open_split(list_a, root, _config(), prepare=True, progress=False)
    labels_a = cache_a.labels.copy()
    video_a, _ = cache_a.read(0, 2)
    cache_b = windows.open_split(list_b, root, _config(), prepare=True, progress=False)
    assert cache_a.dir != cache_b.dir and cache_a.dir.parent == cache_b.dir.parent == root
    # the first run's cache is what it was, and still what the first run reads
    np.testing.assert_array_equal(windows.WindowCache(cache_a.dir).labels, labels_a)
    np.testing.assert_array_equal(cache_a.read(0, 2)[0], video_a)
    assert labels_a[:2, GOAL].tolist() == [1, 0] and cache_b.labels[:2, GOAL].tolist() == [0, 1]
    # each reopens its own
    assert windows.open_split(list_a, root, _config(), prepare=False).dir == cache_a.dir
    assert windows.open_split(list_b, root, _config(), prepare=False).dir == cache_b.dir


def test_changed_files_need_a_new_cache_and_the_old_one_goes_once_unused(tmp_path):
    list_a, _ = _two_datasets(tmp_path)
    root = tmp_path / "cache"
    old = windows.open_split(list_a, root, _config(), prepare=True, progress=False)
    assert windows.open_split(list_a, root, _config(), prepare=True, progress=False).built_now is False  # reused
    label_file = tmp_path / "a" / "g" / "Labels-v2.json"
    label_file.write_text(json.dumps({"annotations": [{"gameTime": "1 - 00:14", "label": "Goal"}]}))
    with pytest.raises(UserError, match="made from other files.*rerun with --formatdataset 1"):
        windows.open_split(list_a, root, _config(), prepare=False)
    new = windows.open_split(list_a, root, _config(), prepare=True, progress=False)
    assert new.built_now and new.dir != old.dir
    assert (old.dir / "settings.json").is_file()  # `old` is open (a running training): kept
    assert old.labels[:2, GOAL].tolist() == [1, 0] and new.labels[:2, GOAL].tolist() == [0, 1]
    del old
    label_file.write_text(json.dumps({"annotations": [{"gameTime": "1 - 00:04", "label": "Goal"}]}))
    newest = windows.open_split(list_a, root, _config(), prepare=True, progress=False)
    assert newest.dir.exists() and new.dir.exists()  # `new` is still open
    kept = sorted(p.name for p in root.iterdir() if not p.name.startswith("."))
    assert kept == sorted([new.dir.name, newest.dir.name])  # the unused first cache was removed


def test_a_failed_build_leaves_the_good_cache_and_no_temporary_folder(tmp_path):
    list_a, _ = _two_datasets(tmp_path)
    root = tmp_path / "cache"
    good = windows.open_split(list_a, root, _config(), prepare=True, progress=False)
    settings = (good.dir / "settings.json").read_bytes()
    (tmp_path / "a" / "g" / "2_VGGish.npy").unlink()  # the same list, now broken
    with pytest.raises(UserError, match="no feature file 2_"):
        windows.open_split(list_a, root, _config(), prepare=True, progress=False)
    assert (good.dir / "settings.json").read_bytes() == settings
    assert sorted(p.name for p in root.iterdir()) == [good.dir.name]  # no lock file, no temporary folder


@pytest.mark.slow  # imports the training loop (TensorFlow)
def test_a_run_that_fails_its_checks_keeps_a_cache_it_reused(tmp_path):
    from soccer_highlights.training.loop import _check_then_claim

    list_a, _ = _two_datasets(tmp_path)
    root = tmp_path / "cache"
    data = windows.DataConfig(pca=True, window_seconds=10.0, feature_dim=D, class_map=windows.load_class_map("v2"))
    cfg = TrainConfig(training=str(list_a), data=data, formatdataset=1, cache_dir=str(root))
    built = windows.open_split(list_a, root, data, prepare=True, progress=False)
    reused = windows.open_split(list_a, root, data, prepare=True, progress=False)
    with pytest.raises(UserError, match="no positive training window"):  # v2 has 17 classes, the game one goal
        _check_then_claim(cfg, {"training": reused}, chief=False)
    assert (built.dir / "settings.json").is_file()
    with pytest.raises(UserError, match="no positive training window"):
        _check_then_claim(cfg, {"training": built}, chief=False)
    assert not built.dir.exists()  # what this run built itself is removed, as before


@pytest.mark.slow  # imports the training loop (TensorFlow)
def test_the_tflog_lock_is_taken_before_any_cache_is_built(tmp_path):
    from soccer_highlights.training.loop import _setup

    list_a, _ = _two_datasets(tmp_path)
    root = tmp_path / "cache"
    cfg = TrainConfig(
        architecture="concat",
        training=str(list_a),
        validation=str(list_a),
        testing=str(list_a),
        data=_config(),
        formatdataset=1,
        cache_dir=str(root),
        tflog=str(tmp_path / "Model"),
    )
    from soccer_highlights.training import checkpoints

    lock_outputs(cfg)
    held = checkpoints._LOCKS.pop(Path(cfg.tflog) / ".concat.lock")  # held as another process would hold it
    try:
        with pytest.raises(UserError, match="a training writes concat_\\* here"):
            _setup(cfg)
        assert not root.exists()  # refused before any window was cut
    finally:
        held.release()
        release_outputs(cfg)


_BUILD = textwrap.dedent(
    """
    import sys
    import numpy as np
    from soccer_highlights.training import windows
    cfg = windows.DataConfig(pca=True, window_seconds=10.0, feature_dim={d})
    cache = windows.open_split(sys.argv[1], sys.argv[2], cfg, prepare=True, progress=False)
    video, _ = cache.read(0, cache.n_windows)
    np.save(sys.argv[3], np.concatenate([cache.labels, video.reshape(len(video), -1)], axis=1))
    print(cache.dir)
    """
).format(d=D)


@pytest.mark.slow
@pytest.mark.parametrize("same", [True, False], ids=["same data", "different data"])
def test_two_runs_started_together(tmp_path, same):
    """Two processes preparing caches at once in one folder: on the same data one builds and the other waits and
    reuses it; on different data each gets its own. Each reads exactly its own games' windows."""
    list_a, list_b = _two_datasets(tmp_path)
    second = list_a if same else list_b
    root = tmp_path / "cache"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _BUILD, str(lst), str(root), str(tmp_path / f"out{i}.npy")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i, lst in enumerate((list_a, second))
    ]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    dirs = [out.strip().splitlines()[-1] for out, _ in results]
    assert (dirs[0] == dirs[1]) == same
    for i, lst in enumerate((list_a, second)):  # each read its own games: as a build of them alone
        alone = windows.open_split(lst, tmp_path / f"alone{i}", _config(), prepare=True, progress=False)
        video, _ = alone.read(0, alone.n_windows)
        expected = np.concatenate([alone.labels, video.reshape(len(video), -1)], axis=1)
        np.testing.assert_array_equal(np.load(tmp_path / f"out{i}.npy"), expected)
    assert not [p for p in root.iterdir() if ".tmp" in p.name]
