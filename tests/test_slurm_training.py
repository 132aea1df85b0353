"""Training as a Slurm step on a real two-node cluster (tests/slurm.py): `srun` with two tasks (one node, and two
nodes x one task) trains as two MultiWorkerMirroredStrategy workers with no TF_CONFIG given; both exit 0, only the
chief writes, and its weights equal the two-worker TF_CONFIG run's. slurm/train.sbatch, sent SIGTERM during
training, requeues itself, resumes and ends with the weights of the uninterrupted run.

The nodes declare two stand-in GPUs each (character devices), so Slurm sets CUDA_VISIBLE_DEVICES=0,1 as on a GPU
node and each task keeps one; TensorFlow finds no CUDA driver here and runs on the CPU."""

import json
import re
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from soccer_highlights import synthetic
from tests.argv import train_argv
from tests.test_training_multiworker import SAME_FUNCTION, last_weights, run_group

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 3
TIMEOUT = 600
pytestmark = pytest.mark.slow


def model_flags(cache: Path) -> list[str]:
    return train_argv(None, None, **SAME_FUNCTION, quiet=None, max_epoch=EPOCHS, cache_dir=cache)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("mwdata")
    return synthetic.generate_dataset(
        root / "d", n_games=4, half_minutes=1.0, seed=3, splits=(2, 1, 1), event_rate=4.0, progress=False
    ), root / "cache"


def lists(data) -> list[str]:
    d, _ = data
    return [
        "--training",
        str(d.lists["train"]),
        "--validation",
        str(d.lists["valid"]),
        "--testing",
        str(d.lists["test"]),
    ]


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory) -> Path:
    """The two-worker TF_CONFIG run (it also builds the window cache the Slurm runs read)."""
    tflog = tmp_path_factory.mktemp("reference")
    argv = [*lists(data), *model_flags(data[1]), "--tflog", str(tflog), "--outputPrefix", "mw", "--quiet"]
    run_group([[*argv, "--formatdataset", "1"]] * 2)  # the chief builds the cache, the other its own copy
    return tflog


def assert_same_run(tflog: Path, reference: Path) -> None:
    """Only the chief's outputs (those of the reference's chief), and its last weights equal the reference's."""
    assert sorted(p.name for p in tflog.iterdir()) == sorted(p.name for p in reference.iterdir())
    ref_state, ref = last_weights(reference)
    state, got = last_weights(tflog)
    assert state["schedule"]["epoch"] == ref_state["schedule"]["epoch"] == EPOCHS
    assert set(got) == set(ref)
    for name in ref:
        np.testing.assert_allclose(got[name], ref[name], rtol=1e-4, atol=1e-5, err_msg=name)


@pytest.mark.parametrize(
    "layout", [["--nodes=1", "--ntasks=2", "--gpus-per-node=2"], ["--nodes=2", "--ntasks-per-node=1"]], ids=str
)
def test_srun_tasks_train_as_workers_of_one_strategy(slurm_cluster, data, reference, tmp_path, layout):
    tflog = tmp_path / "run"
    cmd = ["srun", *layout, "--kill-on-bad-exit=1", f"--chdir={ROOT}", f"--output={tmp_path}/task%t.out"]
    cmd += [sys.executable, "ClassificationMinuteBased.py", *lists(data), *model_flags(data[1])]
    cmd += ["--tflog", str(tflog), "--outputPrefix", "mw", "--quiet"]
    done = slurm_cluster.run(*cmd, timeout=TIMEOUT)
    outs = [(tmp_path / f"task{i}.out").read_text() for i in range(2)]
    assert done.returncode == 0, f"{done.stderr}\n{outs}"
    for i, out in enumerate(outs):
        m = re.search(rf"slurm: worker {i} of 2 at \S+, GPUs (\S+)", out)
        assert m, out
        assert m.group(1) == (str(i) if "--gpus-per-node=2" in layout else "none")  # one GPU each
    assert_same_run(tflog, reference)


def test_sigterm_requeues_the_job_which_resumes_to_the_same_weights(slurm_cluster, data, reference, tmp_path):
    tflog = tmp_path / "run"
    env = {
        "REPO": str(ROOT),
        "PYTHON": sys.executable,
        "TRAIN_LIST": lists(data)[1],
        "VALID_LIST": lists(data)[3],
        "TEST_LIST": lists(data)[5],
        "TFLOG": str(tflog),
        "PREFIX": "mw",
        "MODEL_FLAGS": " ".join(model_flags(data[1])),
    }
    sub = slurm_cluster.run("sbatch", "--parsable", str(ROOT / "slurm" / "train.sbatch"), env=env, cwd=tmp_path)
    assert sub.returncode == 0, sub.stderr
    job = sub.stdout.strip().split(";")[0]
    log = tmp_path / f"slurm-soccer-train-{job}.out"
    state = tflog / "mw_resume" / "state.json"
    deadline = time.monotonic() + TIMEOUT
    while not state.exists() and slurm_cluster.job_state(job) in ("PENDING", "RUNNING", "CONFIGURING", ""):
        assert time.monotonic() < deadline, "no epoch finished in time"
        time.sleep(0.1)
    assert slurm_cluster.run("scancel", "--signal=TERM", "--batch", job).returncode == 0
    final = slurm_cluster.wait_job(job, TIMEOUT)
    text = log.read_text() if log.exists() else "(no log)"
    assert final == "COMPLETED", f"{final}\n{text}"
    stopped_after = re.search(r"resumed after epoch (\d+)", text)
    assert "requeueing job" in text and stopped_after, text
    assert int(stopped_after.group(1)) < EPOCHS, "the run ended before SIGTERM could stop it"
    restarts = re.search(r"Restarts=(\d+)", slurm_cluster.run("scontrol", "-o", "show", "job", job).stdout)
    assert restarts and int(restarts.group(1)) == 1
    assert_same_run(tflog, reference)
    assert json.loads(state.read_text())["schedule"]["epoch"] == EPOCHS
