#!/usr/bin/env bash
# BAT's Table 1 at a reduced schedule in one GPU call (docs/PERFORMANCE.md, "GPU").
#
#   bash scripts/gpu_table1.sh prepare        # here, before the call: fills the ignored folder .gpu_carry/
#   bash scripts/gpu_table1.sh run [ARGS]     # on the GPU machine: writes into $OUT (see scripts/gpu_table1.py)
#
# prepare copies cifar10_jpeg.npz (from $ROBUSTFAIR_DATA, default ../shared/data) and the
# pure-Python AutoAttack package (from the installed pyautoattack; its code only) into
# .gpu_carry/, with the commit it was prepared at. Nothing there is committed.
# run copies the data to local disk, checks its md5, and runs scripts/gpu_table1.py from the
# source tree (PYTHONPATH=src, nothing installed) under a hard time limit (TABLE1_HARD_S,
# default 535 s; the script plans to finish by TABLE1_BUDGET_S, default 505 s), teeing its
# output to $OUT/log.txt. ARGS go to scripts/gpu_table1.py (e.g. --smoke --dataset digits).
set -euo pipefail
cd "$(dirname "$0")/.."
CARRY=.gpu_carry
PY=${PYTHON:-python3}
MD5=ec7efd27f0694c5f78717cd2defeba50

case "${1:-}" in
  prepare)
    data=${ROBUSTFAIR_DATA:-../shared/data}
    PY=${PYTHON:-.venv/bin/python}
    mkdir -p "$CARRY/data" "$CARRY/site"
    cp "$data/cifar10_jpeg.npz" "$CARRY/data/"
    pkg=$("$PY" -c "import os, pyautoattack; print(os.path.dirname(pyautoattack.__file__))")
    rm -rf "$CARRY/site/pyautoattack"
    mkdir -p "$CARRY/site/pyautoattack"
    cp "$pkg"/*.py "$CARRY/site/pyautoattack/"   # the code only, not examples/ (44 MB of sample weights)
    { git rev-parse --short HEAD; git status --short | sed 's/^/  /'; } > "$CARRY/commit.txt"
    du -sh "$CARRY"
    echo "carry: $CARRY ($(du -sm "$CARRY" | cut -f1) MiB; the working tree travels too, 64 MiB in all)"
    ;;
  run)
    shift
    OUT=${OUT:?set OUT to the folder that comes back}
    mkdir -p "$OUT"
    export PYTHONUNBUFFERED=1 ROBUSTFAIR_CACHE=${ROBUSTFAIR_CACHE:-/tmp/robustfair-cache}
    export PYTHONPATH="$PWD/src:$PWD/$CARRY/site${PYTHONPATH:+:$PYTHONPATH}"
    if [ -f "$CARRY/data/cifar10_jpeg.npz" ]; then
      mkdir -p /tmp/robustfair-data
      cp "$CARRY/data/cifar10_jpeg.npz" /tmp/robustfair-data/
      if command -v md5sum >/dev/null; then
        got=$(md5sum /tmp/robustfair-data/cifar10_jpeg.npz | cut -d' ' -f1)
        [ "$got" = "$MD5" ] || { echo "cifar10_jpeg.npz: md5 $got, expected $MD5" >&2; exit 2; }
      fi
      export ROBUSTFAIR_DATA=/tmp/robustfair-data
    fi
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv 2>/dev/null || true
    "$PY" -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda)"
    set -o pipefail
    status=0
    limit=(timeout -s INT -k 15 "${TABLE1_HARD_S:-535}")
    command -v timeout >/dev/null || limit=()   # the script's own deadline still holds
    "${limit[@]}" "$PY" scripts/gpu_table1.py --out "$OUT" \
      --work "${TABLE1_WORK:-/tmp/robustfair-table1}" --budget-s "${TABLE1_BUDGET_S:-505}" "$@" 2>&1 \
      | tee "$OUT/log.txt" || status=$?
    ls -la "$OUT"
    exit "$status"
    ;;
  *)
    echo "usage: bash scripts/gpu_table1.sh prepare | run [--smoke] [ARGS of scripts/gpu_table1.py]" >&2
    exit 2
    ;;
esac
