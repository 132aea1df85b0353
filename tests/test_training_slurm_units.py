"""The parts of training under Slurm that need no cluster: the step's variables, GPU slices, the rendezvous of the
tasks, SIGTERM/SIGUSR1 stopping a run, and `--resume` when the earlier run left nothing to continue."""

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from soccer_highlights.common.atomic import record_files
from soccer_highlights.common.errors import UserError
from soccer_highlights.training.checkpoints import claim_outputs, release_outputs
from soccer_highlights.training.config import TrainConfig
from soccer_highlights.training.slurm import SlurmStep, gpu_share, rendezvous, slurm_step, slurm_workers, tasks_per_node

ROOT = Path(__file__).resolve().parents[1]


def step_env(rank, tasks=2, per_node="2", node=0, local=None, **extra):
    env = {
        "SLURM_PROCID": str(rank),
        "SLURM_STEP_NUM_TASKS": str(tasks),
        "SLURM_STEP_TASKS_PER_NODE": per_node,
        "SLURM_NODEID": str(node),
        "SLURM_LOCALID": str(rank if local is None else local),
        "SLURM_JOB_ID": "41",
        "SLURM_STEP_ID": "0",
    }
    return {**env, **extra}


@pytest.fixture(autouse=True)
def _keep_environment():
    """slurm_workers sets TF_CONFIG and CUDA_VISIBLE_DEVICES in os.environ: restore both after each test (a
    TF_CONFIG left behind would make every later training subprocess wait for workers that never come)."""
    saved = {k: os.environ.get(k) for k in ("TF_CONFIG", "CUDA_VISIBLE_DEVICES")}
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def test_tasks_per_node_expands_slurms_list():
    assert tasks_per_node("2(x3),1") == [2, 2, 2, 1]
    assert tasks_per_node("4") == [4]
    with pytest.raises(UserError, match="tasks-per-node"):
        tasks_per_node("2(3)")


def test_step_of_srun_and_none_outside_one():
    step = slurm_step(step_env(3, tasks=4, per_node="1,3", node=1, local=2, SLURM_RESTART_COUNT="2"))
    assert step == SlurmStep(rank=3, tasks=4, local_rank=2, tasks_on_node=3, job="41", step="0", restart=2)
    assert step.rendezvous_name == ".rendezvous-41.0.2"
    assert slurm_step({}) is None
    assert slurm_step(step_env(0, tasks=1, per_node="1")) is None  # one task: a plain run
    assert slurm_step({"SLURM_PROCID": "0", "SLURM_NTASKS": "2"}) is None  # the batch script, not a step


def test_each_task_keeps_its_slice_of_the_nodes_gpus():
    assert [gpu_share("0,1", i, 2) for i in range(2)] == ["0", "1"]
    assert [gpu_share("4,5,6,7", i, 2) for i in range(2)] == ["4,5", "6,7"]
    assert gpu_share("", 1, 2) is None  # a CPU node: left as it is
    assert gpu_share(None, 0, 2) is None
    assert gpu_share("0", 1, 2) is None  # fewer GPUs than tasks: shared, as Slurm gave them
    assert gpu_share("0,1", 0, 1) is None  # one task on the node: all of them


def test_rendezvous_gives_every_task_all_addresses_by_rank(tmp_path):
    steps = [slurm_step(step_env(r, tasks=3, per_node="3")) for r in range(3)]
    results = {}
    threads = [
        threading.Thread(target=lambda s=s: results.__setitem__(s.rank, rendezvous(tmp_path, s, timeout=30)))
        for s in steps
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results[0] == results[1] == results[2]
    hosts, ports = zip(*(a.rsplit(":", 1) for a in results[0]), strict=True)
    assert len(set(ports)) == 3 and all(p.isdigit() for p in ports)


def test_rendezvous_times_out_with_the_missing_tasks(tmp_path):
    with pytest.raises(UserError, match="tasks task1 did not report"):
        rendezvous(tmp_path, slurm_step(step_env(0)), timeout=0.5)


def test_workers_get_tf_config_and_gpu_and_the_chief_cleans_up(tmp_path, monkeypatch):
    for key in [k for k in os.environ if k.startswith("SLURM_")] + ["TF_CONFIG"]:
        monkeypatch.delenv(key, raising=False)
    stale = tmp_path / ".rendezvous-41.0.0"
    stale.mkdir()  # left by the killed first run of a requeued job
    (tmp_path / ".rendezvous-41.0.1").mkdir()
    (tmp_path / ".rendezvous-41.0.1" / "task1").write_text("otherhost:1234")
    for k, v in step_env(0, SLURM_RESTART_COUNT="1", CUDA_VISIBLE_DEVICES="2,3").items():
        monkeypatch.setenv(k, v)
    with slurm_workers(tmp_path) as step:
        conf = json.loads(os.environ["TF_CONFIG"])
        assert step.rank == 0 and os.environ["CUDA_VISIBLE_DEVICES"] == "2"
    assert conf["task"] == {"type": "worker", "index": 0}
    assert conf["cluster"]["worker"][1] == "otherhost:1234"
    assert not list(tmp_path.iterdir())


def test_a_given_tf_config_wins_over_slurm(tmp_path, monkeypatch):
    for k, v in step_env(1).items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("TF_CONFIG", "{}")
    with slurm_workers(tmp_path) as step:
        assert step is None and os.environ["TF_CONFIG"] == "{}"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_sigterm_and_sigusr1_stop_the_run(sig):
    """In a fresh process: a native library loaded by earlier tests (TensorFlow's own handlers) must not decide."""
    code = (
        "import os, signal\n"
        "from soccer_highlights.common.errors import Terminated\n"
        "from soccer_highlights.training import slurm\n"
        "try:\n"
        "    with slurm.stop_on_signals():\n"
        f"        os.kill(os.getpid(), {int(sig)})\n"
        "except Terminated as stopped:\n"
        "    print('terminated', stopped.signum)\n"
        f"print('restored', signal.getsignal({int(sig)}) is signal.SIG_DFL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["terminated", str(int(sig)), "restored", "True"]  # run_cli: exit 128 + sig
    assert "--resume continues from the last finished epoch" in proc.stderr


def test_resume_with_nothing_to_resume_starts_again(tmp_path, capsys):
    cfg = TrainConfig(architecture="video", tflog=str(tmp_path), output_prefix="r", resume=True)
    try:
        claim_outputs(cfg)  # the killed run's claim: its folders recorded in .outputs.json
        (tmp_path / "r_training").mkdir()  # what a run killed in its first epoch leaves
        (tmp_path / "r_resume").mkdir()
        claim_outputs(cfg)
        assert sorted(p.name for p in tmp_path.iterdir()) == [".outputs.json", ".r.lock"]  # the record, the lock
        assert "stopped before its first epoch ended" in capsys.readouterr().out
        claim_outputs(cfg)  # nothing at all: nothing to say
        (tmp_path / "r_summary.json").write_text("{}")  # a finished run without resume state is not replaced
        record_files(tmp_path, ["r_summary.json"])
        with pytest.raises(UserError, match="left no resume state"):
            claim_outputs(cfg)
    finally:
        release_outputs(cfg)
