"""The library core as a notebook uses it: `Pipeline(model)(Match...) -> Result`, values only, and the writers
over a Result; the README's Python example runs verbatim."""

from __future__ import annotations

import contextlib
import io
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import soccer_highlights
from soccer_highlights import Match, Output, Pipeline, Result, Scoring, summary, write_outputs
from soccer_highlights.common.errors import UserError
from soccer_highlights.synthetic.games import generate_dataset

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = re.compile(r"<!-- python-example -->\s*```python\n(.*?)```\s*<!-- /python-example -->", re.S)


@pytest.fixture(scope="module")
def game(tmp_path_factory) -> Path:
    """One generated SoccerNet game folder (features of both halves and Labels-v2.json)."""
    root = tmp_path_factory.mktemp("data")
    generate_dataset(root, n_games=3, half_minutes=1, seed=3, progress=False)
    return next(p.parent for p in root.rglob("Labels-v2.json"))


def test_the_package_names_its_api():
    assert set(soccer_highlights.__all__) <= set(dir(soccer_highlights)) | set(soccer_highlights._EXPORTS)
    for name in soccer_highlights.__all__:
        assert getattr(soccer_highlights, name) is not None
    with pytest.raises(AttributeError):
        _ = soccer_highlights.nothing_of_that_name


def test_importing_the_package_loads_neither_tensorflow_nor_the_core():
    code = "import sys, soccer_highlights.common.errors; print('tensorflow' in sys.modules, 'soccer_highlights.core' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert out.split() == ["False", "False"]


def test_a_match_is_one_tagged_input(tmp_path):
    video = Match.video(tmp_path / "m.mp4", labels=tmp_path, half=2)
    assert (video.kind, video.video_file, video.labels, video.half) == ("video", tmp_path / "m.mp4", tmp_path, 2)
    feats = Match.features("v.npy", "a.npy", video="m.mp4")
    assert feats.kind == "features" and feats.inputs() == [Path("m.mp4"), Path("v.npy"), Path("a.npy")]
    assert feats.paths() == {"video": "m.mp4", "features_video": "v.npy", "features_audio": "a.npy"}
    assert Match.game(tmp_path).source == tmp_path and Match.recording("r.m3u8").kind == "recording"


def test_a_pipeline_scores_many_matches_and_writes_nothing(tiny_model, game, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    pipeline = Pipeline(tiny_model, scoring=Scoring(stride=2))
    whole = pipeline(Match.game(game))
    one = pipeline(Match.features(game / "1_ResNET_TF2_PCA512.npy", game / "1_VGGish.npy", labels=game))
    assert list(tmp_path.iterdir()) == []  # values only
    assert isinstance(whole, Result) and [h.number for h in whole.halves] == [1, 2]
    curves = whole.curves(half=1)
    assert curves.shape == (len(np.load(game / "1_VGGish.npy")), len(whole.class_names))
    assert np.allclose(one.curves(half=1), curves)  # the same half, scored alone
    assert whole.class_names[0] == "background" and set(whole.timings) == {"load model", "features", "scores", "spans"}
    assert set(one.timings) == {"features", "scores", "spans"}  # the model loaded once, for the first match
    assert all(0 <= s.start <= s.end for _, s in whole.spans())
    assert [h for h, _ in whole.spans()] == sorted(h for h, _ in whole.spans())
    assert whole.covered()[1] == sum(len(h.events) for h in whole.halves) > 0
    with pytest.raises(KeyError):
        whole.curves(half=3)


def test_the_writers_take_a_result(tiny_model, game, tmp_path):
    result = Pipeline(tiny_model)(Match.game(game))
    written = write_outputs(result, Output(tmp_path / "out", reel=False))
    assert set(written.files) == {"spans", "spotting", "timeline", "report"}
    assert all(p.is_file() for p in written.files.values())
    assert "true events covered" in summary(result, written)
    again = write_outputs(result, tmp_path / "plain")  # a folder alone: the default settings
    assert (tmp_path / "plain" / "spans.json").is_file() and again.reel_seconds == 0.0


def test_a_video_match_needs_real_extraction_settings(tiny_model, tmp_path):
    with pytest.raises(UserError, match="--pca"):  # imagenet weights, no PCA: said before any network is built
        Pipeline(tiny_model).extractor()


def test_the_readme_example_runs_verbatim(tiny_model, tmp_path, monkeypatch):
    block = EXAMPLE.search((ROOT / "README.md").read_text())
    assert block, "README.md: no <!-- python-example --> block"
    monkeypatch.chdir(tmp_path)
    subprocess.run(
        [sys.executable, "-m", "soccer_highlights.synthetic.video", "--demo", "--out", "demo_data"],
        check=True,
        capture_output=True,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    (tmp_path / "demo_data" / "model").mkdir()
    shutil.copy(tiny_model, tmp_path / "demo_data" / "model" / "demo_best.keras")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(block.group(1), "README.md", "exec"), {})
    assert "half 1" in printed.getvalue() or "[" in printed.getvalue()
    assert (tmp_path / "my_highlights" / "report.html").is_file()
    assert (tmp_path / "my_highlights" / "highlights.mp4").is_file()


def test_a_reel_that_fails_keeps_the_other_outputs(tiny_model, game, tmp_path, monkeypatch, capsys):
    from soccer_highlights.synthetic.video import make_match_video
    from soccer_highlights.writers import outputs

    def broken(*args, **kwargs):
        raise UserError("m.mp4: cutting the reel: ffmpeg failed (Invalid argument)")

    video = make_match_video(tmp_path / "m.mp4", 60.0, size="64x36")
    feats = (game / "1_ResNET_TF2_PCA512.npy", game / "1_VGGish.npy")
    result = Pipeline(tiny_model)(Match.features(*feats, video=video))
    monkeypatch.setattr(outputs, "make_reel", broken)
    written = write_outputs(result, tmp_path / "out")
    assert "reel" not in written.files and all(p.is_file() for p in written.files.values())
    assert set(written.files) == {"spans", "spotting", "timeline", "report"}
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert (
        line
        == "warning: no reel: m.mp4: cutting the reel: ffmpeg failed (Invalid argument) (the other outputs are written)"
    )
