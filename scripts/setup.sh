#!/usr/bin/env bash
# Create ./.venv (once) and install robustfair with its test extras into it.
# ROBUSTFAIR_TORCH pins the torch requirement, e.g. ROBUSTFAIR_TORCH="torch==2.13.0" for a
# CPU-only build where the registry offers one; unset, pip picks the normal wheel.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
VPY=.venv/bin/python
stamp=.venv/.robustfair-installed
want="$(cat pyproject.toml | md5sum | cut -d' ' -f1) ${ROBUSTFAIR_TORCH:-torch}"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  "$VPY" -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null 2>&1 || true
  "$VPY" -m pip install -q --disable-pip-version-check "${ROBUSTFAIR_TORCH:-torch}"
  "$VPY" -m pip install -q --disable-pip-version-check -e ".[test,autoattack]"
  echo "$want" > "$stamp"
fi
