#!/usr/bin/env bash
# Set up (if needed) and run the main job: `medswarm simulate` on the shipped BreastMNIST.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/medswarm simulate "$@"
