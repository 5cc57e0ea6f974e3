#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Two workers (pytest-xdist): CI has two cores, and the real-process tests mostly wait.
# Each file's tests stay on one worker (see tests/conftest.py), files in collection order:
# the long real-process files (contract, integration, netns) first, the many short ones
# (sim, unit) fill in at the end; xdist's default would start the files with the most
# tests first and leave the few-test real-process files for the end. Later options
# win, so `bash scripts/test.sh -n 0 tests/unit` runs in one process. The 25 slowest
# tests are listed at the end, to see where CI's time goes.
.venv/bin/python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder --durations=25 "$@"
