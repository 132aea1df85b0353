#!/usr/bin/env bash
# The test command: set up the environment with the test requirements if missing, then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
VENV="$VENV" scripts/setup_env.sh requirements-dev.txt
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
exec "$VENV/bin/python" -m pytest -q "$@"
