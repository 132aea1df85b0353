"""The job templates in slurm/ are accepted by a real slurmctld as they are (`sbatch --test-only`), and each keeps
the marked block a user edits at the top."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = sorted((ROOT / "slurm").glob("*.sbatch"))
pytestmark = pytest.mark.slow


def test_the_three_templates_exist():
    assert [t.name for t in TEMPLATES] == ["extract.sbatch", "spot.sbatch", "train.sbatch"]


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_template_passes_sbatch_test_only(slurm_cluster, template, tmp_path):
    done = slurm_cluster.run("sbatch", "--test-only", str(template), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "to start at" in done.stderr  # sbatch --test-only reports where and when the job would run
    text = template.read_text()
    assert text.index("# ---- edit: resources") < text.index("#SBATCH --partition=") < text.index("set -euo")
    assert "# ---- edit: paths" in text
