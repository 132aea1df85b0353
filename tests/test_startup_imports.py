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
