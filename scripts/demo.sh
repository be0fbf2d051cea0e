#!/usr/bin/env bash
# Set up ./.venv if needed, then run the embedded CPU demo (`robustfair demo`).
# Extra arguments go to the demo, e.g. `bash scripts/demo.sh --methods all`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/robustfair demo "$@"
