"""Benchmark: the overhead of the Slurm path on this machine (a real two-node Slurm from tests/slurm.py).

Extraction: a 4-game tree (random weights, `--seconds` per half) by one process vs `sbatch --wait --array=0-3`
of slurm/extract.sbatch; where an array task's time goes (start-up vs the halves' extraction, from
extraction.json; the queue from scontrol). Training: 2 workers of MultiWorkerMirroredStrategy on tiny data
(4 one-minute games, 3 epochs) started by hand with TF_CONFIG vs `srun --nodes=1 --ntasks=2` and
`srun --nodes=2 --ntasks-per-node=1` (rendezvous through --tflog), and what an empty `srun` step costs.

    flock /tmp/bench.lock .venv/bin/python bench/bench_slurm.py [--seconds 5] [--out bench/results_slurm.md]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

from tests.media import make_video  # noqa: E402
from tests.slurm import SlurmCluster, install  # noqa: E402


def timed(fn) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def job_times(cluster: SlurmCluster, job: str) -> list[dict[str, datetime]]:
    """Submit/Start/End times of every task of an array job (one-second resolution)."""
    out = cluster.run("scontrol", "-o", "show", "job", job).stdout
    rows = []
    for line in out.splitlines():
        fields = dict(re.findall(r"(\w+)=(\S+)", line))
        rows.append({k: datetime.fromisoformat(fields[k]) for k in ("SubmitTime", "StartTime", "EndTime")})
    return rows


def extraction(cluster: SlurmCluster, work: Path, seconds: float) -> dict:
    clip = make_video(work / "clip.mp4", seconds)
    tree = work / "tree"
    for g in range(4):
        folder = tree / "league" / "2019-2020" / f"game {g}"
        folder.mkdir(parents=True)
        for half in (1, 2):
            os.link(clip, folder / f"{half}_224p.mkv")
    one_cmd = [sys.executable, "-m", "extract_features", "--tree", str(tree), "--weights", "random", "--quiet"]
    one, _ = timed(lambda: subprocess.run([*one_cmd, "--out", str(work / "one")], cwd=ROOT, check=True))
    env = {"REPO": str(ROOT), "PYTHON": sys.executable, "VIDEOS": str(tree), "OUT_ROOT": str(work / "array")}
    env["EXTRACT_FLAGS"] = "--weights random"
    logs = work / "logs"
    logs.mkdir()
    cmd = ["sbatch", "--wait", "--parsable", "--array=0-3", "--cpus-per-task=1", str(ROOT / "slurm/extract.sbatch")]
    array, done = timed(lambda: cluster.run(*cmd, env=env, cwd=logs, timeout=1800, check=True))
    job = done.stdout.strip().split(";")[0]
    tasks = job_times(cluster, job)
    runs = [(t["EndTime"] - t["StartTime"]).total_seconds() for t in tasks]
    queue = (min(t["StartTime"] for t in tasks) - min(t["SubmitTime"] for t in tasks)).total_seconds()

    def half_seconds(root: Path) -> float:
        return sum(
            h["seconds"] for f in root.rglob("extraction.json") for h in json.loads(f.read_text())["halves"].values()
        )

    return {
        "one": one,
        "array": array,
        "queue": queue,
        "task_mean": sum(runs) / len(runs),
        "task_max": max(runs),
        "halves_one": half_seconds(work / "one"),
        "halves_array": half_seconds(work / "array"),
    }


def training(cluster: SlurmCluster, work: Path) -> dict:
    from soccer_highlights import synthetic
    from tests.test_training_multiworker import run_group

    data = synthetic.generate_dataset(
        work / "d", n_games=4, half_minutes=1.0, seed=3, splits=(2, 1, 1), event_rate=4.0, progress=False
    )
    flags = [
        *("--training", str(data.lists["train"]), "--validation", str(data.lists["valid"])),
        *("--testing", str(data.lists["test"]), "--architecture", "concat", "--PCA", "--network", "MAX"),
        *("--dropout", "0", "--WindowSize", "10", "--LR", "0.01", "--batch_size", "3", "--micro_batch_windows", "4"),
        *("--max_epoch", "3", "--cache_dir", str(work / "cache"), "--outputPrefix", "mw", "--quiet"),
    ]
    run_group([[*flags, "--tflog", str(work / "warm"), "--formatdataset", "1"]] * 2)  # builds the cache
    by_hand, _ = timed(lambda: run_group([[*flags, "--tflog", str(work / "tfconfig")]] * 2))
    out = {"tf_config": by_hand}
    for name, layout in (("srun_1x2", ["--nodes=1", "--ntasks=2"]), ("srun_2x1", ["--nodes=2", "--ntasks-per-node=1"])):
        cmd = [
            "srun",
            *layout,
            "--kill-on-bad-exit=1",
            f"--chdir={ROOT}",
            sys.executable,
            "ClassificationMinuteBased.py",
        ]
        cmd += [*flags, "--tflog", str(work / name)]
        out[name], _ = timed(lambda cmd=cmd: cluster.run(*cmd, timeout=1800, check=True))
    empty = [timed(lambda: cluster.run("srun", "--nodes=1", "--ntasks=2", "true", check=True))[0] for _ in range(3)]
    out["empty_step"] = min(empty)
    return out


def report(ext: dict, tr: dict, seconds: float) -> str:
    startup = ext["task_mean"] - ext["halves_array"] / 4
    return f"""# Slurm path overhead (issue 18)

`.venv/bin/python bench/bench_slurm.py --seconds {seconds:g}` — a real two-node Slurm on this 2-core VM (both
`slurmd` on the one machine, so the nodes share the same two cores), {datetime.now():%Y-%m-%d}.

## Extraction: 4 games (8 halves of {seconds:g} s, random weights)

| path | wall s | extraction of the 8 halves, s (extraction.json) |
|---|---|---|
| one process over the tree | {ext["one"]:.1f} | {ext["halves_one"]:.1f} |
| `sbatch --wait --array=0-3` of slurm/extract.sbatch | {ext["array"]:.1f} | {ext["halves_array"]:.1f} |

Where an array task's time goes: queue (submit to first start) {ext["queue"]:.0f} s; a task runs
{ext["task_mean"]:.1f} s on average (longest {ext["task_max"]:.1f} s), of which its two halves take
{ext["halves_array"] / 4:.1f} s and the rest, {startup:.1f} s, is Python, TensorFlow and the networks starting
in each of the four processes at once on two cores (one second resolution from scontrol). The array's wall
time runs to `sbatch --wait` returning, which polls the job 2 s, then 8 s apart on the test cluster (MinJobAge
16 s; with Slurm's default 300 s the polls go 32 s apart and the same tasks cost up to half a minute more).

## Training: 2 workers, 3 epochs on tiny data

| path | wall s |
|---|---|
| two processes with TF_CONFIG written by hand | {tr["tf_config"]:.1f} |
| `srun --nodes=1 --ntasks=2` (rendezvous under --tflog) | {tr["srun_1x2"]:.1f} |
| `srun --nodes=2 --ntasks-per-node=1` | {tr["srun_2x1"]:.1f} |
| an empty 2-task step (`srun -n2 true`, best of 3) | {tr["empty_step"]:.2f} |

A Slurm step adds no measurable time to training: the step itself starts in a fraction of a second and the
rendezvous under --tflog (each task writes host:port, waits for the others) costs a few file polls; the
differences between the rows are those of the shared cores.
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=5.0, help="length of each half of the 4-game tree")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results_slurm.md")
    args = p.parse_args()
    reason = install()
    if reason:
        sys.exit(f"error: {reason}")
    work = Path(tempfile.mkdtemp(prefix="bench_slurm_"))
    cluster = SlurmCluster.start(work / "slurm")
    try:
        (work / "extract").mkdir()
        ext = extraction(cluster, work / "extract", args.seconds)
        tr = training(cluster, work / "train")
    finally:
        cluster.stop()
    text = report(ext, tr, args.seconds)
    args.out.write_text(text)
    print(text)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
