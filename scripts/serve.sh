#!/usr/bin/env bash
# Set up modelyard on a fresh machine and start the server (default 127.0.0.1:9997).
# Usage: scripts/serve.sh [--host H] [--port P] [--log-level L]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/modelyard serve "$@"
