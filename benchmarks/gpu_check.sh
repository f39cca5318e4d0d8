#!/usr/bin/env bash
# Everything GPU-side in one call (a lent GPU machine runs this from the repository root).
set -euo pipefail
python3 -m pip install -q --no-deps -e . 2>/dev/null || true
PYTHONUNBUFFERED=1 python3 benchmarks/gpu_check.py --steps "${STEPS:-300}" --batch-size "${BATCH:-16}"
