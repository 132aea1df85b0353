"""Extraction as a Slurm array job (slurm/extract.sbatch) on a real two-node cluster (tests/slurm.py): four
array tasks with no shard flags give the files of one process over the whole tree, and each half is extracted by
exactly one task."""

import json
import os
import re
import sys
from pathlib import Path

import pytest

from soccer_highlights.commands.extract import main
from tests.media import make_video

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


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
                    half.pop("backbone_seconds")
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
    env = {"REPO": str(ROOT), "PYTHON": sys.executable, "VIDEOS": str(tree), "OUT_ROOT": str(tmp_path / "array")}
    env["EXTRACT_FLAGS"] = "--weights random"
    logs = tmp_path / "logs"
    logs.mkdir()
    template = ROOT / "slurm" / "extract.sbatch"  # as a user submits it, the test cluster's sizes given
    cmd = ["sbatch", "--wait", "--array=0-3", "--cpus-per-task=1", "--job-name=ex", str(template)]
    done = slurm_cluster.run(*cmd, env=env, cwd=logs, timeout=420)
    task_logs = {p.name: p.read_text() for p in logs.glob("slurm-ex-*.out")}
    assert done.returncode == 0, f"{done.stderr}\n{task_logs}\n{slurm_cluster.logs()}"
    assert len(task_logs) == 4, task_logs

    lines = sorted(re.search(r"\d+ extracted.*", text).group(0) for text in task_logs.values())
    assert lines == [f"2 extracted, 0 already done (shard {i}/4)" for i in range(4)], task_logs

    assert main(["--tree", str(tree), "--weights", "random", "--quiet", "--out", str(tmp_path / "one")]) == 0
    array, one = files(tmp_path / "array"), files(tmp_path / "one")
    assert len(one) == 4 * 5  # per game: two halves × (video, audio features), one extraction.json
    assert array.keys() == one.keys()
    assert all(array[name] == one[name] for name in one)
