#!/usr/bin/env bash
# Create the virtual environment ($VENV, default .venv) if missing and install the requirements.
# Usage: scripts/setup_env.sh [requirements-file]   (default requirements.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
REQ="${1:-requirements.txt}"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
stamp="$VENV/.installed-$(basename "$REQ")-$(cat requirements*.txt | cksum | cut -d' ' -f1)"
if [[ ! -x "$VENV/bin/python" ]]; then
  echo "setting up $VENV with $("$PY" --version 2>&1) ..." >&2
  "$PY" -m venv "$VENV"
fi
if [[ ! -e "$stamp" ]]; then
  "$VENV/bin/python" -m pip install -q --upgrade pip >&2
  "$VENV/bin/python" -m pip install -q -r "$REQ" >&2
  touch "$stamp"
fi
