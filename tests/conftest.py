"""Shared test settings (quiet TensorFlow, no GPU) and the one tiny model most CLI tests score with."""

import os
from collections.abc import Iterator
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


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory) -> Iterator:
    """A real two-node Slurm (munged, slurmctld, slurmd n1 and n2) on this machine for the session; installed
    from Debian when missing. Skipped only where it cannot be installed, never in CI (CI=true fails instead)."""
    from tests.slurm import SlurmCluster, install

    reason = install()
    if reason:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"the Slurm tests must run in CI: {reason}")
        pytest.skip(reason)
    cluster = SlurmCluster.start(tmp_path_factory.mktemp("slurm"))
    try:
        yield cluster
    finally:
        cluster.stop()
