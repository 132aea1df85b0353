#!/usr/bin/env bash
# The test command: set up the environment with the test requirements if missing, then pytest on two workers.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
VENV="$VENV" scripts/setup_env.sh requirements-dev.txt
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
# Two workers (TEST_WORKERS; 0: one process), the Slurm tests together on one of them (their cluster is shared):
# the suite waits on ffmpeg, daemons and subprocesses often enough that both cores stay busy.
exec "$VENV/bin/python" -m pytest -q -n "${TEST_WORKERS:-2}" --dist loadgroup "$@"
