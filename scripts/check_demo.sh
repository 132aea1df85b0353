#!/usr/bin/env bash
# The README's first command as a new user runs it: `bash run_inference.sh` in a copy of the checkout's tracked files
# with nothing made yet (it generates the demo match, trains the demo model, runs the feature networks on a clip
# and cuts the reel), and what it prints compared with the README's demo block, line for line, times aside (the
# `time` line and the extraction's seconds). First-run steps (making the match, training) are not in the block.
# Usage: scripts/check_demo.sh   Env: VENV (the environment to run it with; default .venv, made if missing).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="$(cd "$ROOT" && realpath -m "${VENV:-.venv}")"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
git -C "$ROOT" ls-files -z | tar -C "$ROOT" --null --no-recursion -T - -cf - | tar -xf - -C "$WORK"
echo "check_demo: bash run_inference.sh in a fresh copy of the checkout ($WORK)" >&2
(cd "$WORK" && VENV="$VENV" TF_CPP_MIN_LOG_LEVEL=2 bash run_inference.sh >"$WORK/demo.out" 2>"$WORK/demo.err") || {
  tail -n 20 "$WORK/demo.err" >&2
  exit 1
}
"$VENV/bin/python" - "$ROOT/README.md" "$WORK/demo.out" "$WORK/demo.err" <<'EOF'
import re, sys
from pathlib import Path

readme, out, err = (Path(p).read_text() for p in sys.argv[1:])
block = re.search(r"<!-- demo-output -->\s*```text\n(.*?)```\s*<!-- /demo-output -->", readme, re.S)
if not block:
    sys.exit("check_demo: README.md has no <!-- demo-output --> block")
first_run = ("== making the demo match", "== training the demo model")
steps = [ln for ln in err.splitlines() if ln.startswith("== ") and not ln.startswith(first_run)]
timed = re.compile(r"^(time  |== \d+ s for )")


def kept(lines):
    """The lines, with the numbers of timed lines (seconds differ from run to run) replaced by N."""
    return [re.sub(r"\d+(\.\d+)?", "N", ln) if timed.match(ln) else ln for ln in lines]


printed, shown = kept(steps + out.splitlines()), kept(block.group(1).splitlines())
if printed != shown:
    import difflib

    diff = "\n".join(difflib.unified_diff(shown, printed, "README.md", "the demo printed", lineterm=""))
    sys.exit(f"check_demo: the demo does not print what README.md says:\n{diff}")
print(f"check_demo: the demo printed the README's {len(shown)} lines")
EOF
