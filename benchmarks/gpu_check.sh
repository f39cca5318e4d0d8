#!/usr/bin/env bash
# The GPU evidence in one call of the device tool (about 8 minutes), needing nothing from outside.
#
#   here, once:      python benchmarks/gpu_wheels.py          # .whl/: what the device image lacks
#   on the device:   bash benchmarks/gpu_check.sh             # with .whl carried; writes $OUT
#   rehearsal here:  OUT=DIR bash benchmarks/gpu_check.sh --rehearse
#   sections only:   OUT=DIR bash benchmarks/gpu_check.sh --here [--quick]   # this environment as it is
#
# It installs .whl/ with --no-index into a private folder, runs the preflight (a loud failure if a
# package is missing), then each section of benchmarks/gpu_check.py in a process of its own under a
# time box, so one that fails or hangs leaves the others' figures; gpu_check.json, gpu_check.md
# and gpu_check.log land in $OUT. --rehearse builds .whl/ when missing, then runs this same script
# on this machine in a fresh venv holding only torch plus wheels, with PIP_NO_INDEX=1, on the CPU
# at quick sizes. Where this Python is not the device's 3.12, the venv gets the same requirements
# built for this Python (benchmarks/gpu_wheels.py --local), and .whl/ is checked for the device.
# BUDGET (seconds, default 470) bounds the whole run; docs/gpu.md says what each section measures.
set -uo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"
OUT="${OUT:-$repo/gpu_check_out}"
mode=device quick=""
for arg in "$@"; do
    case "$arg" in
        --rehearse) mode=rehearse ;;
        --here) mode=here ;;
        --quick) quick=--quick ;;
        --device-flow) mode=device ;;  # the rehearsal's second half
        *) echo "gpu_check.sh: unknown argument $arg (use --rehearse, --here, --quick)" >&2; exit 2 ;;
    esac
done
mkdir -p "$OUT"

if [ "$mode" = rehearse ]; then
    set -e
    python3 - <<'PY' || { echo "gpu_check.sh --rehearse: run it from an environment with torch (and pip)" >&2; exit 2; }
import torch  # noqa: F401  (its wheel goes into the fresh venv)
PY
    [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1 || python3 benchmarks/gpu_wheels.py --dest .whl
    python3 benchmarks/gpu_wheels.py --check .whl
    # The venv stands in for the device image: torch and the image's packages, built for this Python,
    # plus the same wheels .whl/ carries (resolved from the same requirements).
    wheels=.whl-rehearse
    [ -d "$wheels" ] && ls "$wheels"/torch-*.whl >/dev/null 2>&1 || python3 benchmarks/gpu_wheels.py --local --dest "$wheels"
    scratch="$(mktemp -d)"
    trap 'rm -rf "$scratch"' EXIT
    venv="$scratch/venv"
    python3 -m venv "$venv"
    export PIP_NO_INDEX=1
    # The venv gets what the image holds (torch among it) in its site-packages; the projects .whl/
    # carries are installed by the device flow below, into a --target folder on PYTHONPATH, as there.
    # (Where a package lives matters: dill pickles by value what is not in site-packages.)
    python3 benchmarks/gpu_wheels.py --split "$wheels" .whl "$scratch/carried" "$scratch/image"
    "$venv/bin/python" -m pip install -q --no-index --no-deps "$scratch"/image/*.whl
    set +e
    PATH="$venv/bin:$PATH" WHEELS="$scratch/carried" OUT="$OUT" BUDGET="${BUDGET:-1200}" bash "$0" --device-flow --quick
    exit $?
fi

budget="${BUDGET:-470}"
[ -n "$quick" ] && budget="${BUDGET:-1200}"
started=$SECONDS
log="$OUT/gpu_check.log"
: >"$log"
say() { echo "== $*" | tee -a "$log"; }

if [ "$mode" = device ]; then
    wheels="${WHEELS:-.whl}"
    site="$(mktemp -d)/site"
    say "installing $wheels (no index) into $site"
    if ! ls "$wheels"/*.whl >/dev/null 2>&1; then
        say "NO WHEELS in $wheels: build them here first (python benchmarks/gpu_wheels.py) and carry .whl"
    elif ! PIP_NO_INDEX=1 python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
            --target "$site" "$wheels"/*.whl >>"$log" 2>&1; then
        say "INSTALL FAILED (see $log)"
    fi
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
check() { python3 benchmarks/gpu_check.py "$@" --out "$OUT" $quick; }

# section:time box (s). The paper shape runs last, in what is left.
status=0
for entry in preflight:60 proxy:75 graph:110 jobs:160 latency:50 determinism:45 paper:90; do
    section="${entry%%:*}" box="${entry##*:}"
    [ -n "$quick" ] && box=$((box * 3))  # a shared 2-core CPU, not 16 cores and a GPU
    left=$((budget - (SECONDS - started) - 10))
    [ "$box" -gt "$left" ] && box=$left
    if [ "$box" -lt 15 ]; then
        check "$section" --set-status "skipped: the check's time budget was spent" >>"$log" 2>&1
        continue
    fi
    say "$section (at most ${box}s, $((SECONDS - started))s gone)"
    timeout -k 10 "$box" python3 benchmarks/gpu_check.py "$section" --out "$OUT" $quick 2>&1 | tee -a "$log"
    rc=${PIPESTATUS[0]}
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
        check "$section" --set-status "stopped at its time box of ${box}s (figures above are partial)" >>"$log" 2>&1 \
            && rc=0  # it had finished and was only slow to exit
    fi
    if [ "$rc" != 0 ]; then
        status=1
        say "$section: exit code $rc"
        [ "$section" = preflight ] && say "PREFLIGHT FAILED: the figures below may be missing; see $log"
    fi
done
check report | tee -a "$log" >/dev/null
say "done in $((SECONDS - started))s: $OUT/gpu_check.json, $OUT/gpu_check.md"
exit $status
