"""Training as a Slurm step: `srun -n N python ClassificationMinuteBased.py ...` makes N workers of
MultiWorkerMirroredStrategy with no TF_CONFIG written by hand.

Each task of the step (SLURM_STEP_NUM_TASKS > 1, SLURM_PROCID its rank) binds a free port on its host, writes
`host:port` into a rendezvous folder under the shared `--tflog` (`.rendezvous-<job>.<step>.<restart>/`), waits
for every task's file, and sets TF_CONFIG for its own process: worker i is task i, task 0 the chief. Ports come
from the kernel on each host, so neither two jobs sharing a node nor two tasks of one job clash (a port is free
when chosen and taken by TensorFlow a moment later). The folder name carries the requeue count, so a requeued
job never reads the addresses of its previous run; the chief removes it when training ends.

Why not `tf.distribute.cluster_resolver.SlurmClusterResolver`: it addresses workers by Slurm node name (often,
and on the test cluster, not a host name), gives every job on a node the same ports (port_base + local task),
runs `nvidia-smi` unless told the GPU count, and hides every GPU on CPU nodes by its defaults.

GPUs: where the node's visible GPUs (CUDA_VISIBLE_DEVICES, as Slurm sets it for `--gpus-per-node`) are shared
by several tasks of the step, each task keeps its own equal slice, by SLURM_LOCALID: one GPU per task when the
job asks as many GPUs as tasks per node. On a CPU node the list is empty and stays so (the same code runs).
A TF_CONFIG already in the environment wins: nothing here runs.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from soccer_highlights.common.atomic import atomic_path
from soccer_highlights.common.errors import Terminated, UserError

RENDEZVOUS_TIMEOUT = 600.0


@dataclass(frozen=True)
class SlurmStep:
    """Where this process stands in its Slurm job step."""

    rank: int
    tasks: int
    local_rank: int
    tasks_on_node: int
    job: str
    step: str
    restart: int

    @property
    def rendezvous_name(self) -> str:
        return f".rendezvous-{self.job}.{self.step}.{self.restart}"


def tasks_per_node(spec: str) -> list[int]:
    """Slurm's compressed tasks-per-node list ("2(x3),1") expanded: [2, 2, 2, 1]."""
    out: list[int] = []
    for part in spec.split(","):
        m = re.fullmatch(r"(\d+)(?:\(x(\d+)\))?", part.strip())
        if not m:
            raise UserError(f"SLURM_STEP_TASKS_PER_NODE={spec!r}: not Slurm's tasks-per-node list")
        out += [int(m.group(1))] * int(m.group(2) or 1)
    return out


def slurm_step(env: Mapping[str, str] | None = None) -> SlurmStep | None:
    """The step of an `srun` with several tasks, or None (one process, a batch script, or no Slurm)."""
    env = os.environ if env is None else env
    try:
        tasks = int(env.get("SLURM_STEP_NUM_TASKS", "1"))
        if tasks < 2 or "SLURM_PROCID" not in env:
            return None
        per_node = tasks_per_node(env.get("SLURM_STEP_TASKS_PER_NODE", str(tasks)))
        node = int(env.get("SLURM_NODEID", "0"))
        return SlurmStep(
            rank=int(env["SLURM_PROCID"]),
            tasks=tasks,
            local_rank=int(env.get("SLURM_LOCALID", "0")),
            tasks_on_node=per_node[node] if node < len(per_node) else 1,
            job=env.get("SLURM_JOB_ID", "0"),
            step=env.get("SLURM_STEP_ID", env.get("SLURM_STEPID", "0")),
            restart=int(env.get("SLURM_RESTART_COUNT", "0")),
        )
    except ValueError as exc:
        raise UserError(f"the Slurm step's variables are not numbers ({exc})") from exc


def gpu_share(visible: str | None, local_rank: int, tasks_on_node: int) -> str | None:
    """This task's CUDA_VISIBLE_DEVICES: its equal slice of the node's visible GPUs (one each when there are as
    many GPUs as tasks), or None to leave the variable as it is (unset, empty, or fewer GPUs than tasks)."""
    gpus = [g for g in (visible or "").split(",") if g.strip()]
    if tasks_on_node < 2 or len(gpus) < tasks_on_node:
        return None
    k = len(gpus) // tasks_on_node
    return ",".join(gpus[local_rank * k : (local_rank + 1) * k])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def rendezvous(folder: Path, step: SlurmStep, timeout: float = RENDEZVOUS_TIMEOUT) -> list[str]:
    """Publish this task's `host:port` in `folder`, wait for all tasks'; their addresses by rank."""

    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / f"task{step.rank}") as tmp:
        Path(tmp).write_text(f"{socket.gethostname()}:{_free_port()}")
    paths = [folder / f"task{i}" for i in range(step.tasks)]
    deadline = time.monotonic() + timeout
    while not all(p.is_file() for p in paths):
        if time.monotonic() > deadline:
            missing = [p.name for p in paths if not p.is_file()]
            raise UserError(f"{folder}: tasks {', '.join(missing)} did not report within {timeout:.0f} s")
        time.sleep(0.2)
    return [p.read_text().strip() for p in paths]


def tf_config(addresses: list[str], rank: int) -> dict:
    return {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": rank}}


@contextlib.contextmanager
def slurm_workers(tflog: str | os.PathLike):
    """Around a training run: in a Slurm step with several tasks (and no TF_CONFIG), this task's GPU slice and
    TF_CONFIG set before TensorFlow starts; the chief removes the rendezvous folder at the end. Yields the step
    (None outside one)."""
    import json

    step = None if os.environ.get("TF_CONFIG") else slurm_step()
    if step is None:
        yield None
        return
    share = gpu_share(os.environ.get("CUDA_VISIBLE_DEVICES"), step.local_rank, step.tasks_on_node)
    if share is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = share
    folder = Path(tflog) / step.rendezvous_name
    addresses = rendezvous(folder, step)
    os.environ["TF_CONFIG"] = json.dumps(tf_config(addresses, step.rank))
    gpus = os.environ.get("CUDA_VISIBLE_DEVICES") or "none"
    print(f"slurm: worker {step.rank} of {step.tasks} at {addresses[step.rank]}, GPUs {gpus}", flush=True)
    try:
        yield step
    finally:
        if step.rank == 0:  # this run's folder, and those a killed earlier run of the requeued job left
            for restart in range(step.restart + 1):
                shutil.rmtree(Path(tflog) / replace(step, restart=restart).rendezvous_name, ignore_errors=True)


@contextlib.contextmanager
def stop_on_signals():
    """SIGTERM or SIGUSR1 (a Slurm preemption or time-limit warning: slurm/train.sbatch sends USR1 to its workers,
    as TensorFlow's multi-worker runtime takes SIGTERM over for itself) ends the run as an error would: the resume
    state of the last finished epoch stays and `--resume` continues from it; exit status 128 + the signal. It
    raises `Terminated`, so `run_cli` ends the process without the interpreter's teardown under TensorFlow's
    threads (which can abort, exit 134)."""

    def stop(signum, frame):
        name = signal.Signals(signum).name
        print(f"{name}: stopping; --resume continues from the last finished epoch", file=sys.stderr, flush=True)
        raise Terminated(signum)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGUSR1)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
