"""Shared test settings (quiet TensorFlow, no GPU) and the one tiny model most CLI tests score with."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """An untrained `concat` model (NetVLAD-4, 4 s windows, seed 0) saved once per test session."""
    import archis

    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    archis.build_model("concat", vlad_k=4, window_seconds=4, seed=0).save(path)
    return path
