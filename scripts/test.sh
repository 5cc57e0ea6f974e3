#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Two workers (pytest-xdist): CI has two cores, and the real-process tests mostly wait.
# Each file's tests stay on one worker (see tests/conftest.py); later options
# win, so `bash scripts/test.sh -n 0 tests/unit` runs in one process. The 25 slowest
# tests are listed at the end, to see where CI's time goes.
.venv/bin/python -m pytest -q -n 2 --dist loadfile --durations=25 "$@"
