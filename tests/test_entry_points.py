"""Every CLI has a console entry point in pyproject.toml that resolves to its `main` (run through run_cli)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from soccer_highlights.commands import entry

ROOT = Path(__file__).resolve().parent.parent
CLIS = {
    "soccer_highlights.commands.inference",
    "soccer_highlights.commands.spot",
    "soccer_highlights.commands.train",
    "soccer_highlights.commands.evaluate",
    "soccer_highlights.commands.extract",
    "soccer_highlights.synthetic.games",
    "soccer_highlights.synthetic.video",
    "soccer_highlights.commands.trainset",
}


def test_each_cli_has_an_entry_point():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(scripts) == set(entry.COMMANDS) and set(entry.COMMANDS.values()) == CLIS
    for name, target in scripts.items():
        module, func = target.split(":")
        assert module == "soccer_highlights.commands.entry" and callable(getattr(entry, func)), name
        assert getattr(entry, func).__name__.replace("_", "-") in name


@pytest.mark.parametrize("command", ["soccer-highlights", "soccer-evaluate"])
def test_entry_point_runs_the_cli_and_its_errors(command, tmp_path):
    func = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"][command].split(":")[1]
    code = (
        f"import sys; sys.argv = ['{command}', '--help']; from soccer_highlights.commands import entry; entry.{func}()"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0 and "usage:" in proc.stdout
    code = code.replace("'--help'", "'--bogus'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and "error:" in proc.stderr and "Traceback" not in proc.stderr


def test_the_wheels_ranges_hold_the_pinned_versions():
    """Each runtime pin of requirements.txt (the versions tested) is the lower bound of the wheel's range for it,
    and every runtime requirement has a range."""
    from packaging.requirements import Requirement

    ranges = {
        Requirement(r).name.lower(): Requirement(r)
        for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    }
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            req = Requirement(line)
            pins[req.name.lower()] = next(iter(req.specifier)).version
    assert set(ranges) == set(pins)
    for name, version in pins.items():
        spec = ranges[name].specifier
        assert version in spec, f"{name} {version} outside {spec}"
        assert any(s.operator == ">=" and s.version == version for s in spec), f"{name}: lower bound is not {version}"
        assert any(s.operator == "<" for s in spec), f"{name}: no upper bound"
