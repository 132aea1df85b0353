"""Every command's first screen is clean: its real work path, run tiny in a subprocess without
TF_CPP_MIN_LOG_LEVEL, writes none of TensorFlow's C++ start-up lines (nor Python's runpy warning) to stderr;
`--verbose` shows them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.argv import train_argv

ROOT = Path(__file__).resolve().parent.parent
# absl's pre-init notice, oneDNN / CPU-instruction notes, cuInit on machines without a GPU, glog-style lines
# (E0000 00:00:...), and runpy's warning when a package imported the module `python -m` runs.
NOISE = re.compile(r"absl::InitializeLog|oneDNN|cuInit|cpu_feature_guard|^[IWEF]\d{4} |RuntimeWarning", re.M)

pytestmark = pytest.mark.slow


def _run(cwd: Path, *argv: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = str(ROOT)
    cmd = [sys.executable, *(argv if argv[0] == "-m" else (str(ROOT / argv[0]), *argv[1:]))]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return proc


def _clean(proc: subprocess.CompletedProcess) -> None:
    assert not NOISE.search(proc.stderr), proc.stderr


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A tiny dataset made by `python -m soccer_highlights.synthetic.games` (its own first screen checked)."""
    work = tmp_path_factory.mktemp("first_screen")
    _clean(
        _run(
            work,
            "-m",
            "soccer_highlights.synthetic.games",
            "--out",
            "data",
            "--games",
            "5",
            "--half_minutes",
            "2",
            "--quiet",
        )
    )
    return work


def _list(work: Path, split: str) -> str:
    return str(next((work / "data").glob(f"listgame_{split}_*.npy")))


@pytest.fixture(scope="module")
def model(work) -> Path:
    """Two epochs of ClassificationMinuteBased.py (NetVLAD-4, 4 s windows), its first screen checked."""
    lists = {key: _list(work, split) for key, split in (("train", "Train"), ("valid", "Valid"), ("test", "Test"))}
    flags = {"class_map": "highlight", "WindowSize": 4, "batch_size": None, "max_epoch": 2, "cache_dir": None}
    argv = train_argv(lists, "model", **flags, outputPrefix="tiny")
    _clean(_run(work, "ClassificationMinuteBased.py", *argv))
    return work / "model" / "tiny_best.keras"


def test_training_and_prediction_first_screens(work, model):
    predict = (
        "--mode",
        "predict",
        "--testing",
        _list(work, "Test"),
        "--PCA",
        "--model",
        str(model),
        "--tflog",
        "model",
    )
    _clean(_run(work, "ClassificationMinuteBased.py", *predict, "--outputPrefix", "tiny", "--WindowSize", "4"))


def test_spotting_and_evaluation_first_screens(work, model):
    spot = ("ClassificationSecondBased.py", "--testing", _list(work, "Test"), "--model", str(model), "--quiet")
    _clean(_run(work, *spot, "--output", "spots"))
    scores = ("--labels", "data", "--predictions", "spots", "--game_list", _list(work, "Test"), "--model", str(model))
    _clean(_run(work, "evaluate.py", *scores))
    verbose = _run(work, *spot, "--output", "spots_verbose", "--verbose")
    assert NOISE.search(verbose.stderr), verbose.stderr


def test_video_extraction_and_highlights_first_screens(work, model):
    _clean(_run(work, "-m", "soccer_highlights.synthetic.video", "--duration", "6", "--out", "match.mp4"))
    extract = ("-m", "extract_features", "--video", "match.mp4", "--out", "features", "--weights", "random")
    proc = _run(work, *extract, "--quiet")
    assert not NOISE.search(proc.stderr) and "random weights" in proc.stderr, proc.stderr
    infer = ("inference.py", "--model", str(model), "--video", "match.mp4", "--weights", "random", "--out", "hl")
    proc = _run(work, *infer, "--fast", "--quiet", "--intro_sec", "0", "--outro_sec", "0")
    assert not NOISE.search(proc.stderr), proc.stderr
