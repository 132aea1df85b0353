"""A clean first screen: TensorFlow's C++ start-up lines hidden unless --verbose, real errors still shown."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STARTUP_LINES = ("absl::InitializeLog", "oneDNN", "cuInit", "cpu_feature_guard")


def _inference(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    from soccer_highlights import archis, synthetic

    model, game = tmp_path / "m.keras", tmp_path / "game"
    if not model.exists():
        archis.build_model("concat", vlad_k=4, window_seconds=4, seed=0).save(model)
        synthetic.write_game(synthetic.make_game(0, half_minutes=0.5), game)
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run(
        [
            sys.executable,
            str(ROOT / "inference.py"),
            "--model",
            str(model),
            "--game_dir",
            str(game),
            "--out",
            str(tmp_path / "out"),
            "--quiet",
            *extra,
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )


@pytest.mark.slow
def test_startup_lines_hidden_by_default_shown_with_verbose(tmp_path):
    quiet = _inference(tmp_path)
    assert quiet.returncode == 0, quiet.stderr
    assert not any(line in quiet.stderr for line in STARTUP_LINES), quiet.stderr
    verbose = _inference(tmp_path, "--verbose")
    assert verbose.returncode == 0 and any(line in verbose.stderr for line in STARTUP_LINES), verbose.stderr


def test_hidden_output_is_replayed_when_the_step_fails():
    code = (
        "import os\nfrom soccer_highlights.common.quiet import stderr_hidden\n"
        "with stderr_hidden():\n    os.write(2, b'hidden unless it fails\\n')\n"
        "try:\n    with stderr_hidden():\n        os.write(2, b'the real cause\\n')\n"
        "        raise RuntimeError('boom')\nexcept RuntimeError:\n    pass\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0
    assert proc.stderr == "the real cause\n"
