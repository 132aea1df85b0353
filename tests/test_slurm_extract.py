"""Extraction as a Slurm array job on a real two-node cluster (tests/slurm.py): four array tasks with no shard
flags give the files of one process over the whole tree, and each half is extracted by exactly one task."""

import json
import os
import re
import sys
from pathlib import Path

import pytest

from extract_features.__main__ import main
from tests.media import make_video

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def job_script(path: Path, log_dir: Path, command: str) -> Path:
    """A batch script running `command` from the repository with this interpreter, TensorFlow on the CPU."""
    path.write_text(
        "#!/bin/bash\n"
        f"#SBATCH --output={log_dir}/%x_%A_%a.out\n"
        f"#SBATCH --chdir={ROOT}\n"
        "export TF_CPP_MIN_LOG_LEVEL=3 CUDA_VISIBLE_DEVICES=''\n"
        f"export PYTHONPATH={ROOT}\n"
        f"exec {sys.executable} {command}\n"
    )
    return path


def files(root: Path) -> dict[str, bytes]:
    """Every output file under root by relative path; extraction.json without its timings."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            data = p.read_bytes()
            if p.name == "extraction.json":
                record = json.loads(data)
                for half in record["halves"].values():
                    half.pop("seconds")
                data = json.dumps(record, sort_keys=True).encode()
            out[str(p.relative_to(root))] = data
    return out


def test_array_job_extracts_each_half_once_and_matches_one_process(slurm_cluster, tmp_path):
    clip = make_video(tmp_path / "clip.mp4", 0.6)
    tree = tmp_path / "tree"
    for g in range(4):
        folder = tree / "league" / "2019-2020" / f"game {g}"
        folder.mkdir(parents=True)
        for half in (1, 2):
            os.link(clip, folder / f"{half}_224p.mkv")
    flags = f"--tree {tree} --weights random --quiet"
    logs = tmp_path / "logs"
    logs.mkdir()
    script = job_script(tmp_path / "extract.sh", logs, f"-m extract_features {flags} --out_root {tmp_path / 'array'}")
    done = slurm_cluster.run("sbatch", "--wait", "--array=0-3", "--job-name=ex", str(script), timeout=900)
    task_logs = {p.name: p.read_text() for p in logs.glob("ex_*.out")}
    assert done.returncode == 0, f"{done.stderr}\n{task_logs}\n{slurm_cluster.logs()}"

    lines = sorted(re.search(r"\d+ extracted.*", text).group(0) for text in task_logs.values())
    assert lines == [f"2 extracted, 0 already done (shard {i}/4)" for i in range(4)], task_logs

    assert main([*flags.split(), "--out_root", str(tmp_path / "one")]) == 0
    array, one = files(tmp_path / "array"), files(tmp_path / "one")
    assert len(one) == 4 * 5  # per game: two halves × (video, audio features), one extraction.json
    assert array.keys() == one.keys()
    assert all(array[name] == one[name] for name in one)
