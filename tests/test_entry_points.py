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


@pytest.mark.parametrize("how", ["chained", "after_sigterm"])
def test_an_interrupt_a_library_turned_into_its_own_error_exits_as_the_interrupt(how, capsys, monkeypatch):
    """A SIGTERM that lands while TensorFlow traces the first training step came out of `tape.gradient` as a
    TypeError (a traceback and exit 1): run_cli still ends it as the signal, 143 and one line."""
    import signal

    from soccer_highlights.common import errors

    def main(argv):
        if how == "chained":
            try:
                raise errors.Terminated()
            except errors.Terminated as exc:
                raise TypeError("'Terminated' object is not subscriptable") from exc
        errors._received.append(int(signal.SIGTERM))  # what the handler records, as the signal arrived
        raise TypeError("a library's error after the signal")

    exits: list[int] = []
    monkeypatch.setattr(errors, "_exit_now", lambda code: exits.append(code) or sys.exit(code))
    previous = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(SystemExit):
            errors.run_cli(main, [])
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert exits == [143]
    assert capsys.readouterr().err.strip().splitlines() == ["error: terminated (SIGTERM)"]


def test_an_error_with_no_interrupt_behind_it_stays_an_error():
    from soccer_highlights.common import errors

    def main(argv):
        raise TypeError("a real bug")

    import signal

    previous = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(TypeError, match="a real bug"):
            errors.run_cli(main, [])
    finally:
        signal.signal(signal.SIGTERM, previous)
