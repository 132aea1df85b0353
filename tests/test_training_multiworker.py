"""Two training workers on localhost ports (MultiWorkerMirroredStrategy through TF_CONFIG), killed after
their first checkpoint and resumed as a group: both exit 0, only the chief writes into --tflog, and the chief's weights
equal those of one process trained on the same global batches without interruption.

Dropout is 0 (`--dropout 0`) and the pooling is MAX (no batch-norm) so the two runs compute the same function."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from soccer_highlights import synthetic
from tests.argv import train_argv

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 120
# The model of every run here and in test_slurm_training (MAX pooling, no dropout: the same function in one process
# or several); --formatdataset is left to each run.
SAME_FUNCTION = {
    "network": "MAX",
    "VLAD_k": None,
    "dropout": 0,
    "LR": 0.01,
    "batch_size": 3,
    "micro_batch_windows": 4,
    "formatdataset": None,
}

SCRIPT = """
from soccer_highlights.common.errors import run_cli
from soccer_highlights.commands import train as cmb
run_cli(cmb.main)
"""


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def launch(argv, tf_config=None):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    env.pop("TF_CONFIG", None)
    if tf_config is not None:
        env["TF_CONFIG"] = json.dumps(tf_config)
    return subprocess.Popen(
        [sys.executable, "-c", SCRIPT, *argv],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def start_group(argv_per_worker):
    """One process per argv, started at once; several form a TF_CONFIG cluster on free localhost ports."""
    ports = free_ports(len(argv_per_worker))
    cluster = {"worker": [f"localhost:{p}" for p in ports]}
    return [
        launch(argv, {"cluster": cluster, "task": {"type": "worker", "index": i}} if len(ports) > 1 else None)
        for i, argv in enumerate(argv_per_worker)
    ]


def kill_group_after(procs, path):
    """SIGKILL every process as soon as `path` exists (or one exits, or the timeout passes)."""
    deadline = time.time() + TIMEOUT
    while not path.exists() and all(p.poll() is None for p in procs) and time.time() < deadline:
        time.sleep(0.05)
    for p in procs:
        p.kill()
        p.communicate()


def run_group(argv_per_worker):
    """Run processes as one group to the end; kill every one on a timeout or a failure."""
    procs = start_group(argv_per_worker)
    try:
        outs = [p.communicate(timeout=TIMEOUT) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
    return outs


def weights(path):
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def last_weights(tflog):
    state = json.loads((tflog / "mw_resume" / "state.json").read_text())
    return state, weights(tflog / "mw_resume" / state["weights"])


@pytest.mark.slow
def test_two_workers_resume_and_match_one_process(tmp_path):
    data = synthetic.generate_dataset(
        tmp_path / "d", n_games=4, half_minutes=1.0, seed=3, splits=(2, 1, 1), event_rate=4.0, progress=False
    )
    cache = tmp_path / "cache"

    def argv(tflog, *extra):
        return train_argv(
            data.lists, tflog, *extra, **SAME_FUNCTION, class_map="highlight", cache_dir=cache, outputPrefix="mw"
        )

    one, group = tmp_path / "one", tmp_path / "group"
    run_group([argv(one, "--formatdataset", "1", "--max_epoch", "3")])
    kill_group_after(start_group([argv(group, "--max_epoch", "3")] * 2), group / "mw_resume" / "state.json")
    done = json.loads((group / "mw_resume" / "state.json").read_text())["schedule"]["epoch"]
    assert done < 3, "the group finished before it could be killed"
    outs = run_group([argv(group, "--max_epoch", "3", "--resume")] * 2)
    assert all(f"resumed after epoch {done}" in o for o, _ in outs)

    ref_state, ref = last_weights(one)
    state, got = last_weights(group)
    assert state["schedule"]["epoch"] == ref_state["schedule"]["epoch"] == 3
    assert set(got) == set(ref)
    for name in ref:
        np.testing.assert_allclose(got[name], ref[name], rtol=1e-4, atol=1e-5, err_msg=name)
    for key in ("train_loss", "valid_loss", "valid_mAP"):
        assert np.isclose(state["history"][-1][key], ref_state["history"][-1][key], rtol=1e-4), key
    # only the chief wrote into --tflog; the other worker's temporary folder is gone
    assert sorted(p.name for p in group.iterdir()) == sorted(p.name for p in one.iterdir())
    assert not list(group.glob("workertemp_*"))
