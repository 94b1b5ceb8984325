#!/usr/bin/env bash
# One-shot GPU check of fastmotive, within BUDGET_S seconds of work (default 420 s: a 15-minute device budget
# then leaves room for one rerun). Correctness first, then the measurements, the cold compiles last:
#   1. CUDA tests (`pytest -m gpu`), then Triton vs torch vs naive switch bitwise and the arena optimizers vs
#      torch.optim, on the GPU;
#   2. switch latency per backend: device time (CUDA events) and host time beside the copy floor;
#   3. the optimizer benchmark (arena vs torch.optim foreach/fused);
#   4. BatchNorm calibration cost, loader images/sec, recipe V's augmentation per loader against timm's, training
#      with and without it, torchrun with one process against the plain run;
#   5. training images/sec for base / motivated / alternating against the plain timm loop, compile off and
#      `reduce-overhead` (benchmarks/overhead.py: the cold inductor compiles).
# The steps run in two Python processes (benchmarks/gpu_steps.py: 1 in one, 2-5 in the other), since every start
# imports torch and timm. A step past its limit is stopped and reported; a step the budget cannot fit is skipped
# and reported, never silently. Every step writes its JSON as soon as it has a figure, and after each step the
# results so far are packed, so at most three files are left in $OUT (default benchmarks/results/gpu):
#   results.tar.gz (every step's JSON, env.json, steps.json), summary.json (the targets table), gpu_check.log.
#
# Usage:   COMMIT=$(git rev-parse HEAD) bash benchmarks/gpu_check.sh      (.git does not travel to the device)
#          OUT=DIR bash benchmarks/gpu_check.sh --dry-run                  every step on the CPU at toy sizes
# Needs:   python with torch (CUDA), triton, timm, numpy, pyyaml, torchvision, pytest, pytest-benchmark,
#          hypothesis. Optional, skipped with a note: nvidia-dali, scikit-learn, safetensors, fvcore (FLOPs are
#          then reported unavailable). Nothing is downloaded: fastmotive is made importable with
#          `pip install --no-deps --no-index --no-build-isolation -e .` (falls back to a .pth path hook), so
#          the machine's own torch stays as it is.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
DRY=0; [ "${1:-}" = "--dry-run" ] && DRY=1
OUT=${OUT:-benchmarks/results/gpu}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d)                         # the JSON files, packed into $OUT/results.tar.gz after each step
trap 'rm -rf "$WORK"' EXIT
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
export TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-/tmp/fastmotive_inductor}
has() { "$1" -c "import importlib.util as u, sys; sys.exit(u.find_spec('$2') is None)" 2>/dev/null; }  # no import
if [ -z "${PYTHON:-}" ]; then
    if has python3 torch; then PYTHON=python3; else PYTHON=$ROOT/.venv/bin/python; fi
fi
COMMIT=${COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
BUDGET_S=${BUDGET_S:-420}
if (( DRY )); then
    export TRITON_INTERPRET=1 CUDA_VISIBLE_DEVICES=""
else
    export TRITON_INTERPRET=0   # tests/conftest.py would turn the interpreter on
fi
START=$(date +%s)
DEADLINE=$(( START + BUDGET_S ))
elapsed() { echo "$(( $(date +%s) - START ))s"; }
pack() { tar -czf "$OUT/results.tar.gz.tmp" -C "$WORK" . && mv "$OUT/results.tar.gz.tmp" "$OUT/results.tar.gz"; }

importable() {   # fastmotive of this checkout, without importing it (-I: not from the current directory)
    "$PYTHON" -I -c "import importlib.util as u, os, sys
s = u.find_spec('fastmotive')
sys.exit(s is None or os.path.realpath(s.origin) != os.path.realpath('$ROOT/fastmotive/__init__.py'))" 2>/dev/null
}

make_importable() {
    echo "making fastmotive importable (no download, no dependency changes)"
    "$PYTHON" -m pip install -q --no-deps --no-index --no-build-isolation -e . && return
    local site
    site=$("$PYTHON" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    cat > "$site/fastmotive_gpu_check.pth" <<EOF
import sys; sys.path.insert(0, "$ROOT"); exec("import sys, importlib.abc, importlib.util\nclass _K(importlib.abc.MetaPathFinder):\n    def find_spec(self, name, path=None, target=None):\n        return importlib.util.spec_from_file_location(name, '$ROOT/kernels/__init__.py', submodule_search_locations=['$ROOT/kernels']) if name == 'fastmotive.kernels' else None\nsys.meta_path.append(_K())", {})
EOF
}

steps() { "$PYTHON" benchmarks/gpu_steps.py "$@" --work "$WORK" --out "$OUT"; }   # no torch import: fast

group() {   # group NAME: one Python process runs the group's steps (benchmarks/gpu_steps.py); bounded from outside
    local rc tries=0 left pending
    while :; do
        left=$(( DEADLINE - $(date +%s) ))
        (( left < 0 )) && left=0
        # the steps stop themselves at the deadline; the margin covers the import and a step stuck in native code
        timeout --kill-after=10 $(( left + 60 )) "$PYTHON" benchmarks/gpu_steps.py "$1" --work "$WORK" --out "$OUT" \
            --deadline "$DEADLINE" --start "$START" --commit "$COMMIT" $( (( DRY )) && echo --dry-run)
        rc=$?
        if (( ++tries < 3 )); then   # its running step ended with it; a third time, the steps left are skipped
            pending=$(steps settle --rc "$rc")
        else
            pending=$(steps settle --rc "$rc" --final)
        fi
        echo "=== [$(elapsed)] $1: exit $rc$( (( pending )) && echo ", $pending steps not reached: a new process goes on")"
        (( pending )) || return "$rc"
    done
}

main() {
    echo "=== fastmotive GPU check$( (( DRY )) && echo ' (dry run on the CPU)'), commit $COMMIT, $(date -Iseconds), python: $PYTHON"
    (( DRY )) || nvidia-smi -L 2>/dev/null || echo "nvidia-smi: not available"
    importable || make_importable
    group correctness
    (( $? == 2 )) && return 2   # no CUDA device: the measurements would mean nothing
    group measurements
    "$PYTHON" benchmarks/gpu_summary.py "$WORK" && cp "$WORK/summary.json" "$OUT/summary.json"
    pack
    echo "=== done in $(elapsed): $OUT/results.tar.gz, $OUT/summary.json, $OUT/gpu_check.log"
    steps settle --final >/dev/null   # exit 0 when every step passed
}

rm -f "$OUT/results.tar.gz" "$OUT/summary.json"
main 2>&1 | tee "$OUT/gpu_check.log"   # a pipe, not a process substitution: tee has written all before exit
exit "${PIPESTATUS[0]}"
