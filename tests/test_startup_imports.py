"""Start-up imports only what the command's path needs: TensorFlow's start brings no Keras helper packages
(scikit-learn, matplotlib, OpenCV), and a later import of them still works (issue 29, start-up)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

CODE = """
import json, sys
from soccer_highlights.common.quiet import import_tensorflow
import_tensorflow()
import keras
after_tf = sorted(m for m in ("sklearn", "matplotlib", "cv2", "openvino") if m in sys.modules)
import matplotlib.pyplot, sklearn.metrics
print(json.dumps({"after_tf": after_tf, "keras": keras.__version__, "later": "sklearn.metrics" in sys.modules}))
"""


@pytest.mark.slow
def test_tensorflow_starts_without_the_packages_keras_only_might_use():
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, check=True)
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["after_tf"] == []  # 643e491: ['cv2', 'matplotlib', 'sklearn'], ~4 s of a 16 s import
    assert found["keras"] and found["later"]


# Runs the entry point `module:function` with `--help`; at its first non-blank write (stdout or stderr) it prints
# the top-level packages imported so far, as JSON, on the real stderr, and the test reads them there.
FIRST_OUTPUT = """
import importlib, json, sys
module, function, name = sys.argv[1:4]
sys.argv = [name, "--help"]
real_err = sys.__stderr__
class First:
    seen = False
    def __init__(self, stream):
        self.stream = stream
    def write(self, text):
        if text.strip() and not First.seen:
            First.seen = True
            real_err.write("MODULES " + json.dumps(sorted({m.partition(".")[0] for m in sys.modules})) + "\\n")
        return self.stream.write(text)
    def __getattr__(self, name):
        return getattr(self.stream, name)
sys.stdout, sys.stderr = First(sys.stdout), First(sys.stderr)
try:
    getattr(importlib.import_module(module), function)()
except SystemExit:
    pass
"""
HEAVY = {"tensorflow", "keras", "openvino", "matplotlib", "h5py", "sklearn", "cv2", "nncf", "tensorflow_hub", "scipy"}


def _entry_points() -> dict[str, str]:
    import tomllib
    from pathlib import Path

    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    return tomllib.loads(pyproject.read_text())["project"]["scripts"]


@pytest.mark.parametrize("name", sorted(_entry_points()))
def test_every_entry_points_help_comes_before_any_heavy_import(name):
    module, _, function = _entry_points()[name].partition(":")
    proc = subprocess.run(
        [sys.executable, "-c", FIRST_OUTPUT, module, function, name], capture_output=True, text=True, check=False
    )
    line = next((ln for ln in proc.stderr.splitlines() if ln.startswith("MODULES ")), None)
    assert line is not None, proc.stderr[-2000:]
    assert "usage:" in proc.stdout
    assert sorted(HEAVY & set(json.loads(line.removeprefix("MODULES ")))) == []
