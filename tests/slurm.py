"""A real two-node Slurm cluster on this machine for the tests: Debian's munge, slurmctld and two slurmd.

`SlurmCluster.start(folder)` installs the Debian packages when missing (as root, non-interactive), writes a
munge key, slurm.conf and the spool folders under `folder`, starts `munged`, `slurmctld` and `slurmd -N n1` /
`slurmd -N n2` in the foreground on free ports (each with its PID file), and waits until both nodes are idle.
MinJobAge is 16 s (Slurm's default is 300): `sbatch --wait` polls its job 2 s, 8 s, then 32 s apart, but stays at
8 s when ended jobs are kept only 16 s, which saves the tests up to half a minute a job (scontrol still sees an
ended job for 16 s). `stop()` cancels the cluster's jobs and ends every daemon it started by its PID (TERM, then KILL), whatever the
tests did. Commands reach this cluster only through `cluster.env` (SLURM_CONF points to its slurm.conf).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path

PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
PROGRAMS = ("slurmctld", "slurmd", "sbatch", "srun", "munged")
INSTALL_TIMEOUT = 900
READY_TIMEOUT = 90
STOP_TIMEOUT = 15

SLURM_CONF = """\
ClusterName=testcluster
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge_socket},cred_expire=10
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool/%n
SlurmctldPidFile={root}/run/slurmctld.pid
SlurmdPidFile={root}/run/slurmd.%n.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
ReturnToService=2
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
MinJobAge=16
GresTypes=gpu
NodeName=n1 NodeHostname={host} NodeAddr=127.0.0.1 Port={port_n1} CPUs=8 RealMemory=64000 Gres=gpu:2 State=UNKNOWN
NodeName=n2 NodeHostname={host} NodeAddr=127.0.0.1 Port={port_n2} CPUs=8 RealMemory=64000 Gres=gpu:2 State=UNKNOWN
PartitionName=gpu Nodes=n[1-2] Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
"""


def free_ports(n: int) -> list[int]:
    """n distinct ports free now on localhost (bound to port 0 together, then released)."""
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def install() -> str | None:
    """Install Debian's Slurm and munge when a program is missing; None when ready, else why it cannot be."""
    if all(shutil.which(p) or Path("/usr/sbin", p).exists() for p in PROGRAMS):
        return None
    if not shutil.which("apt-get"):
        return "Slurm is not installed and there is no apt-get to install it"
    if os.geteuid() != 0:
        return "Slurm is not installed and installing it needs root"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", *PACKAGES]):
        done = subprocess.run(
            cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=INSTALL_TIMEOUT
        )
        if done.returncode != 0:
            return f"{' '.join(cmd)} failed: {(done.stderr or done.stdout)[-500:]}"
    return None


def _die_with_parent() -> None:
    """In the daemon before exec: SIGTERM when the test process dies (even killed), so no daemon outlives it."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _program(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


class SlurmCluster:
    """Daemons of one test cluster; `env` is the environment every Slurm command of the tests must get."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: dict[str, subprocess.Popen] = {}
        self.env = {**os.environ, "SLURM_CONF": str(root / "slurm.conf")}
        for name in [k for k in self.env if k.startswith(("SLURM_", "SBATCH_", "SRUN_"))]:
            if name != "SLURM_CONF":
                del self.env[name]  # a test run inside a Slurm job must not submit into that job's cluster

    @classmethod
    def start(cls, root: Path) -> SlurmCluster:
        cluster = cls(root)
        try:
            cluster._write_config()
            cluster._start_daemons()
            cluster.wait_idle()
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def _write_config(self) -> None:
        root = self.root
        for sub in ("state", "run", "log", "spool/n1", "spool/n2", "munge", "dev"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(root / "munge", 0o700)
        key = root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        os.chmod(key, 0o600)
        ctld, n1, n2 = free_ports(3)
        conf = SLURM_CONF.format(
            host=socket.gethostname().split(".")[0],
            ctld_port=ctld,
            port_n1=n1,
            port_n2=n2,
            root=root,
            munge_socket=self.munge_socket,
        )
        (root / "slurm.conf").write_text(conf)
        for i in range(2):  # stand-in GPU devices (Slurm wants character devices): /dev/null's numbers
            os.mknod(root / "dev" / f"nvidia{i}", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        (root / "gres.conf").write_text(f"AutoDetect=off\nNodeName=n[1-2] Name=gpu File={root}/dev/nvidia[0-1]\n")

    @property
    def munge_socket(self) -> Path:
        return self.root / "munge" / "munge.socket"

    def _spawn(self, name: str, cmd: list[str]) -> None:
        log = open(self.root / "log" / f"{name}.out", "w")  # noqa: SIM115 (the daemon keeps it open)
        self.procs[name] = subprocess.Popen(
            cmd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        log.close()

    def _start_daemons(self) -> None:
        m = self.root / "munge"
        self._spawn(
            "munged",
            [_program("munged"), "--foreground", "--force", f"--key-file={m / 'munge.key'}",
             f"--socket={self.munge_socket}", f"--pid-file={m / 'munged.pid'}", f"--log-file={m / 'munged.log'}",
             f"--seed-file={m / 'munged.seed'}"],
        )  # fmt: skip
        self._wait(lambda: self.munge_socket.exists(), "munged did not create its socket", "munged")
        self._spawn("slurmctld", [_program("slurmctld"), "-D", "-i"])
        self._wait(lambda: self.run("scontrol", "ping").returncode == 0, "slurmctld does not answer", "slurmctld")
        for node in ("n1", "n2"):
            self._spawn(f"slurmd.{node}", [_program("slurmd"), "-D", "-N", node])

    def _wait(self, ready, what: str, daemon: str, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            proc = self.procs.get(daemon)
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{what}: {daemon} exited with {proc.returncode}\n{self.logs()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} after {timeout:.0f} s\n{self.logs()}")
            time.sleep(0.3)

    def wait_idle(self) -> None:
        """Both nodes idle (they registered with slurmctld)."""

        def idle() -> bool:
            out = self.run("sinfo", "-h", "-N", "-o", "%N %t").stdout.split()
            return sorted(zip(out[::2], out[1::2], strict=False)) == [("n1", "idle"), ("n2", "idle")]

        self._wait(idle, "the two slurmd nodes are not idle", "slurmd.n1")

    def run(
        self, *cmd: str, timeout: float = 60, check: bool = False, env: dict | None = None, cwd: Path | None = None
    ) -> subprocess.CompletedProcess:
        """A Slurm command (sbatch, srun, scontrol, ...) against this cluster; `env` adds variables."""
        try:
            done = subprocess.run(
                list(cmd),
                env={**self.env, **(env or {})},
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as e:  # a stuck job (a full disk, a node down): say what the daemons said
            raise AssertionError(f"{' '.join(cmd)} still running after {timeout:.0f} s\n{self.logs()}") from e
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
        return done

    def job_state(self, job_id: str) -> str:
        """JobState of a job (PENDING, RUNNING, COMPLETED, FAILED, ...), '' when unknown."""
        out = self.run("scontrol", "-o", "show", "job", job_id).stdout
        m = re.search(r"\bJobState=(\S+)", out)
        return m.group(1) if m else ""

    def wait_job(self, job_id: str, timeout: float, until=("COMPLETED",)) -> str:
        """Wait for the job to reach a state in `until` or to end; its final state (AssertionError on timeout)."""
        ended = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED"}
        deadline = time.monotonic() + timeout
        while (state := self.job_state(job_id)) not in {*until, *ended}:
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} still {state or 'unknown'} after {timeout:.0f} s\n{self.logs()}")
            time.sleep(0.5)
        return state

    def logs(self, tail: int = 3000) -> str:
        """The end of every daemon's log, for failure messages."""
        parts = []
        for log in sorted((self.root / "log").glob("*")) + [self.root / "munge" / "munged.log"]:
            if log.is_file():
                parts.append(f"--- {log.name}\n{log.read_text(errors='replace')[-tail:]}")
        return "\n".join(parts)

    def stop(self) -> None:
        """Cancel the cluster's jobs, then end each daemon this object started, by PID (its process group)."""
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            with contextlib.suppress(Exception):
                self.run("scancel", "--user", str(os.getuid()), timeout=15)
                time.sleep(1)
        for name in [n for n in ("slurmd.n1", "slurmd.n2", "slurmctld", "munged") if n in self.procs]:
            proc = self.procs.pop(name)
            for sig in (signal.SIGTERM, signal.SIGKILL):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, sig)  # the daemon and the job steps it forked in its session
                try:
                    proc.wait(timeout=STOP_TIMEOUT)
                    break
                except subprocess.TimeoutExpired:
                    continue
