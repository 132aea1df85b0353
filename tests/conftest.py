"""Shared test settings (quiet TensorFlow, no GPU) and the one tiny model most CLI tests score with."""

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

# Measured slow tests (tests/slow.txt, written by scripts/slow_tests.py) join those marked in their files.
SLOW = {
    line.strip()
    for line in (Path(__file__).parent / "slow.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#")
}


def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        if item.nodeid in SLOW:
            item.add_marker(pytest.mark.slow)
        if "slurm_cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("slurm"))  # one cluster, on one worker (pytest -n)


@pytest.fixture(autouse=True)
def _signal_handlers_restored() -> Iterator[None]:
    """A command run in-process installs its own SIGTERM / SIGINT / SIGUSR1 handlers: put back the earlier ones,
    so that no test depends on which tests ran before it."""
    sigs = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)
    before = {sig: signal.getsignal(sig) for sig in sigs}
    yield
    for sig, handler in before.items():
        if handler is not None:
            signal.signal(sig, handler)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """An untrained `concat` model (NetVLAD-4, 4 s windows, seed 1: seed 0's spots none in the test game's second
    half) saved once per test session; its batch-norm evaluated with the moving averages, so a window scores the
    same alone or with others (live and offline agree)."""
    from soccer_highlights import archis

    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    archis.build_model("concat", vlad_k=4, window_seconds=4, seed=1, bn_eval="moving").save(path)
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
