#!/usr/bin/env bash
# Set up ./.venv if needed, then run the default test suite (slow and GPU tests excluded).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m slow`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export ROBUSTFAIR_DATA="${ROBUSTFAIR_DATA:-$(cd .. && pwd)/shared/data}"
exec .venv/bin/python -m pytest -q "$@"
