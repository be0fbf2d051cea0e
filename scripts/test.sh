#!/usr/bin/env bash
# Set up ./.venv if needed, then run the default test suite (slow and GPU tests excluded),
# printing the reason of every skipped test (-rs).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m slow`.
#
# Real datasets: tests that need them read $ROBUSTFAIR_DATA, which defaults here to
# ../shared/data (the folder beside this checkout on the project's own machines). Outside
# users do not have it: those tests skip with a message saying where they looked.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export ROBUSTFAIR_DATA="${ROBUSTFAIR_DATA:-$(cd .. && pwd)/shared/data}"
exec .venv/bin/python -m pytest -q -rs "$@"
