"""Rewrite tests/slow.txt: the tests of the fast subset that take over a threshold (setup + call), measured by
running `pytest -m "not slow" --durations=0` here. Usage: python scripts/slow_tests.py [--threshold 0.3]"""

from __future__ import annotations

import argparse
import collections
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINE = re.compile(r"([\d.]+)s (?:call|setup|teardown)\s+(\S.*)$")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threshold", type=float, default=0.3, help="seconds (setup + call) that make a test slow")
    args = p.parse_args()
    slow_file = ROOT / "tests" / "slow.txt"
    header = [ln for ln in slow_file.read_text().splitlines() if ln.startswith("#")]
    slow_file.write_text("\n".join(header) + "\n")  # measure everything not marked in its file
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow", "--durations=0"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True).stdout
    seconds: collections.Counter[str] = collections.Counter()
    for line in out.splitlines():
        m = LINE.match(line.rstrip())
        if m:
            seconds[m.group(2)] += float(m.group(1))
    slow = sorted(k for k, v in seconds.items() if v > args.threshold)
    slow_file.write_text("\n".join([*header, *slow]) + "\n")
    print(f"{len(slow)} tests over {args.threshold:g} s -> {slow_file}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
