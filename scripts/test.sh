#!/usr/bin/env bash
# Set up, then run the test suite on every core (pytest-xdist; a test file stays on one worker,
# so its fixtures are built once and one local Ray instance runs at a time). Pass -n 0 to run serially.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m pytest -q -n auto --dist loadfile "$@"
