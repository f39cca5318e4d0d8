#!/usr/bin/env bash
# Everything GPU-side in one call (a lent GPU machine runs this from the repository root):
# the training loop's throughput, then a tiny `search --jobs 2` sharing one GPU (the many-worker path,
# with CUDA latency and peak memory recorded per trial) and its front re-timed together.
set -euo pipefail
python3 -m pip install -q --no-deps -e . 2>/dev/null || true
PYTHONUNBUFFERED=1 python3 benchmarks/gpu_check.py --steps "${STEPS:-300}" --batch-size "${BATCH:-16}"
work="$(mktemp -d)"
time python3 -m studies search --study gpu-jobs --storage "$work/gpu.journal" --jobs 2 --devices cuda:0,cuda:0 \
    --trials "${TRIALS:-3}" --steps "${SEARCH_STEPS:-100}" --objectives val_loss flops_per_token latency_ms
python3 -m studies pareto --study gpu-jobs --storage "$work/gpu.journal" --json | python3 -c '
import json, sys
for point in json.load(sys.stdin):
    print(point["number"], point["summary"], "latency_ms", round(point["latency_ms"], 3))'
python3 - "$work/gpu.journal" <<'PY'
import sys, optuna
from studies.storage import open_storage
study = optuna.load_study(study_name="gpu-jobs", storage=open_storage(sys.argv[1], create=False))
for t in study.get_trials(deepcopy=False):
    print(t.number, t.state.name, t.user_attrs.get("device"), "peak MiB",
          round((t.user_attrs.get("latency_peak_memory_bytes") or 0) / 2**20, 1))
PY
