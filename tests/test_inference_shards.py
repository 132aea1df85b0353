"""inference.py over many videos in shards (flags, else a Slurm array task's place): each shard does only its
videos, and the index page of the last shard links every report."""

import pytest

from soccer_highlights.commands import inference
from soccer_highlights.common.errors import UserError
from soccer_highlights.synthetic.video import make_match_video


@pytest.mark.slow
def test_shards_do_disjoint_videos_and_the_index_links_all(tiny_model, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "videos"
    folder.mkdir()
    for name in "ab":
        make_match_video(folder / f"{name}.mp4", 4, size="64x36")
    out = tmp_path / "out"
    args = ["--model", str(tiny_model), "--out", str(out), str(folder), "--weights", "random", "--no_reel", "--quiet"]
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "0")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "2")
    assert inference.main(args) == 0
    assert sorted(p.name for p in out.iterdir()) == [".outputs.json", "a", "index.html"]
    assert inference.main([*args, "--shard_index", "1"]) == 0  # the flag wins
    assert sorted(p.name for p in out.iterdir()) == [".outputs.json", "a", "b", "index.html"]
    index = (out / "index.html").read_text()
    assert all(f"{name}/report.html" in index for name in "ab")
    assert "1 of 1 videos done" in capsys.readouterr().err


def test_shard_flags_need_inputs(tiny_model, tmp_path):
    with pytest.raises(UserError, match="give INPUTs"):
        inference.main(["--model", str(tiny_model), "--out", str(tmp_path), "--video", "x.mp4", "--num_shards", "2"])
