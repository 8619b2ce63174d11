#!/usr/bin/env bash
# Set up modelyard with its test dependencies on a fresh machine and run every test.
# Usage: scripts/test.sh [PYTEST_ARGS...]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
exec .venv/bin/python -m pytest "$@"
