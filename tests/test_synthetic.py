"""synthetic.py: SoccerNet layout, determinism, and that the generated folders read back through dataset.py."""

import json

import numpy as np
import pytest

from soccer_highlights import dataset as ds
from soccer_highlights import synthetic
from soccer_highlights.common.errors import UserError


def test_layout_reads_back_and_is_deterministic(tmp_path):
    data = synthetic.generate_dataset(
        tmp_path / "a", n_games=3, half_minutes=1.0, seed=3, splits=(1, 1, 1), progress=False
    )
    assert sorted(p.name for p in data.lists.values()) == [
        "listgame_Test_1.npy",
        "listgame_Train_1.npy",
        "listgame_Valid_1.npy",
    ]
    game = ds.read_game_list(data.lists["train"])[0]
    assert sorted(p.name for p in game.iterdir()) == [
        "1_ResNET_TF2_PCA512.npy",
        "1_VGGish.npy",
        "2_ResNET_TF2_PCA512.npy",
        "2_VGGish.npy",
        "Labels-v2.json",
    ]
    video, audio = ds.load_half(game, 1, "ResNET", "VGGish", pca=True)
    assert video.dtype == np.float32 and video.shape == audio.shape and video.shape[1] == 512
    assert 120 <= video.shape[0] < 240  # one minute plus stoppage time, 2 per second
    anns = json.loads((game / "Labels-v2.json").read_text())["annotations"]
    assert all(a["label"] in ds.SOCCERNET_V2_LABELS for a in anns)
    a = anns[0]
    assert int(a["position"]) // 1000 == int(a["gameTime"][-5:-3]) * 60 + int(a["gameTime"][-2:])
    assert ds.read_labels(game) == data.games[str(game.relative_to(tmp_path / "a"))]
    again = synthetic.make_game(0, seed=3, half_minutes=1.0)
    np.testing.assert_array_equal(again.halves[0][0], video)
    other = synthetic.make_game(0, seed=4, half_minutes=1.0)
    assert not np.array_equal(other.halves[0][0][:100], video[:100])


def test_traces_follow_the_modalities():
    """A goal moves the audio along the goal direction much more than the video; a card the reverse."""
    sig = synthetic.signatures()
    game = synthetic.make_game(1, seed=0, half_minutes=30.0, event_rate=2.0)
    proj = {}
    for key, label in (("goal", "Goal"), ("card", "Yellow card")):
        rows = [(ev.half - 1, int(ev.position_ms / 500) + 2) for ev in game.events if ev.label == label]
        assert rows, f"no {label} drawn"
        proj[key] = [
            np.mean([game.halves[h][m][min(r, len(game.halves[h][m]) - 1)] @ sig[key][m] for h, r in rows])
            for m in (0, 1)
        ]
    assert proj["goal"][1] > 2 * abs(proj["goal"][0]) and proj["card"][0] > 2 * abs(proj["card"][1])


def test_split_counts():
    assert synthetic.split_counts(10, (0.6, 0.2, 0.2)) == [6, 2, 2]
    assert synthetic.split_counts(3, (8, 1, 1)) == [1, 1, 1]
    with pytest.raises(UserError):
        synthetic.split_counts(2, (1, 1, 1))
