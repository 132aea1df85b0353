#!/usr/bin/env bash
# Create the virtual environment ($VENV, default .venv) if missing and install the requirements and the project
# (editable).
# Usage: scripts/setup_env.sh [requirements-file]   (default requirements.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
REQ="${1:-requirements.txt}"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
stamp="$VENV/.installed-$(basename "$REQ")-$(cat requirements*.txt pyproject.toml | cksum | cut -d' ' -f1)"
if [[ ! -x "$VENV/bin/python" ]]; then
  echo "setting up $VENV with $("$PY" --version 2>&1) ..." >&2
  "$PY" -m venv "$VENV"
fi
if [[ ! -e "$stamp" ]]; then
  "$VENV/bin/python" -m pip install -q --upgrade pip >&2
  "$VENV/bin/python" -m pip install -q -r "$REQ" >&2
  # The project itself, editable: `import soccer_highlights` from any folder (notebooks, bench/) and the soccer-*
  # commands in $VENV/bin, all running this checkout's files.
  "$VENV/bin/python" -m pip install -q --no-deps --no-build-isolation -e . >&2
  touch "$stamp"
fi
