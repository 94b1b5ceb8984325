#!/usr/bin/env bash
# One-shot GPU check of fastmotive, within BUDGET_S seconds of work (default 420 s: a 15-minute device budget
# then leaves room for one rerun). Correctness first, then the measurements, the cold compiles last:
#   1. CUDA tests (`pytest -m gpu tests`), then Triton vs torch vs naive switch bitwise and the arena
#      optimizers vs torch.optim, on the GPU;
#   2. switch latency per backend: device time (CUDA events) and host time beside the copy floor;
#   3. the optimizer benchmark (arena vs torch.optim foreach/fused);
#   4. BatchNorm calibration cost, loader images/sec, recipe V's augmentation per loader against timm's, training
#      with and without it, torchrun with one process against the plain run;
#   5. training images/sec for base / motivated / alternating against the plain timm loop, compile off and
#      `reduce-overhead` (benchmarks/overhead.py: the cold inductor compiles).
# A step past its limit is stopped and reported; a step the budget cannot fit is skipped and reported, never
# silently. Every step writes its JSON as soon as it has a figure, and after each step the results so far are
# packed, so at most three files are left in $OUT (default benchmarks/results/gpu):
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
if [ -z "${PYTHON:-}" ]; then
    if python3 -c "import torch" 2>/dev/null; then PYTHON=python3; else PYTHON=$ROOT/.venv/bin/python; fi
fi
COMMIT=${COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
BUDGET_S=${BUDGET_S:-420}
if (( DRY )); then
    DEVICE=cpu; export TRITON_INTERPRET=1 CUDA_VISIBLE_DEVICES=""
else
    DEVICE=cuda; export TRITON_INTERPRET=0   # tests/conftest.py would turn the interpreter on
fi
declare -A RC
START=$(date +%s)
elapsed() { echo "$(( $(date +%s) - START ))s"; }

pack() {   # the results so far, as one file (a later kill of the script still leaves them)
    "$PYTHON" - "$WORK/steps.json" <<EOF
import json, sys
json.dump({$(for k in "${!RC[@]}"; do printf '"%s": %s, ' "$k" "${RC[$k]}"; done)}, open(sys.argv[1], "w"), indent=1)
EOF
    tar -czf "$OUT/results.tar.gz.tmp" -C "$WORK" . && mv "$OUT/results.tar.gz.tmp" "$OUT/results.tar.gz"
}

step() {   # step NAME TIMEOUT_S COMMAND...: run, record the exit code, pack, never stop the script
    local name=$1 limit=$2; shift 2
    local left=$(( BUDGET_S - ($(date +%s) - START) ))
    (( limit > left )) && limit=$left
    echo; echo "=== [$(elapsed)] $name (limit ${limit}s)"
    if (( limit < 10 )); then
        echo "!!! skipped: the ${BUDGET_S}s budget is spent (BUDGET_S=... to give it more)"; RC[$name]=125
    else
        timeout --kill-after=10 "$limit" "$@"
        RC[$name]=$?
        [ "${RC[$name]}" -eq 124 ] && echo "!!! $name ran past ${limit}s and was stopped (its JSON keeps what it had)"
    fi
    pack
}

# The same steps on the device and in the dry run; only the sizes differ.
if (( DRY )); then
    PAIRS="resnet20:resnet32"; CLASSES=10; REPEATS=3; BENCH="--benchmark-max-time=0.05 --benchmark-min-rounds=1"
    OVERHEAD="--arch resnet20:resnet32 --compile none --steps 2 --epochs 1 --rounds 1 --repeats 3 --switch-batch-sizes="
    CALIBRATION="--images 32 --rounds 1"; LOADERS="--loaders tensor,torch --array-images 512 --repeats 1"
    AUGMENT="--pipelines tensor,timm --sizes 32 --images-32 256 --repeats 1"
    AUG_COST="--arch resnet20:resnet32 --img-size 32 --batch-size 16 --steps 2 --rounds 1"
    DIST="--steps 4 --batch-size 16"; BITWISE="bitwise and not vit and not resnet18"
else
    PAIRS="efficientnet_b0:b2 resnet18:34 vit_tiny_patch16_224:vit_small_patch16_224"; CLASSES=1000; REPEATS=30
    BENCH=""; OVERHEAD="--compile none,reduce-overhead --steps 20 --epochs 2 --rounds 3 --parts training,switch"
    CALIBRATION="--rounds 3"; LOADERS="--loaders tensor,dali,torch --repeats 3"; AUGMENT="--repeats 3"
    AUG_COST="--arch efficientnet_b0:b2 --img-size 224 --batch-size 64 --steps 10 --rounds 3"
    DIST="--steps 200"; BITWISE="bitwise or matches"
fi

main() {
    echo "=== fastmotive GPU check$( (( DRY )) && echo ' (dry run on the CPU)'), commit $COMMIT, $(date -Iseconds), python: $PYTHON"
    if (( ! DRY )); then
        nvidia-smi -L 2>/dev/null || echo "nvidia-smi: not available"
        if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
            echo "no CUDA device visible to $PYTHON: this is the GPU check (use --dry-run on a CPU)"; return 2
        fi
    fi
    if ! "$PYTHON" -c "import fastmotive.kernels" 2>/dev/null; then
        echo "making fastmotive importable (no download, no dependency changes)"
        if ! "$PYTHON" -m pip install -q --no-deps --no-index --no-build-isolation -e . ; then
            site=$("$PYTHON" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
            cat > "$site/fastmotive_gpu_check.pth" <<EOF
import sys; sys.path.insert(0, "$ROOT"); exec("import sys, importlib.abc, importlib.util\nclass _K(importlib.abc.MetaPathFinder):\n    def find_spec(self, name, path=None, target=None):\n        return importlib.util.spec_from_file_location(name, '$ROOT/kernels/__init__.py', submodule_search_locations=['$ROOT/kernels']) if name == 'fastmotive.kernels' else None\nsys.meta_path.append(_K())", {})
EOF
        fi
    fi
    "$PYTHON" benchmarks/gpu_env.py "$WORK/env.json" "$COMMIT" "$DEVICE"

    # --- 1. correctness on the device ----------------------------------------------------------------------
    step "pytest -m gpu tests" 60 "$PYTHON" -m pytest -q -p no:cacheprovider -m gpu tests --continue-on-collection-errors
    step "bitwise switch + optimizer parity" 90 "$PYTHON" -m pytest -q -p no:cacheprovider benchmarks \
        -k "$BITWISE" --benchmark-disable
    # --- 2. switch latency, device and host, with the copy floor -------------------------------------------
    step "switch latency" 60 "$PYTHON" benchmarks/switch_latency.py --device "$DEVICE" --pairs $PAIRS \
        --num-classes "$CLASSES" --repeats "$REPEATS" --json "$WORK/switch_latency.json"
    # --- 3. optimizer step ---------------------------------------------------------------------------------
    # shellcheck disable=SC2086
    step "optimizer benchmark" 45 "$PYTHON" -m pytest -q -p no:cacheprovider benchmarks/test_bench_optim.py \
        --benchmark-enable --benchmark-only --benchmark-json="$WORK/bench_optim.json" \
        --benchmark-columns=median,iqr,rounds $BENCH
    # --- 4. calibration, loaders, augmentation, the distributed path ---------------------------------------
    # shellcheck disable=SC2086
    step "bn calibration" 30 "$PYTHON" benchmarks/bn_calibration.py $CALIBRATION --json "$WORK/bn_calibration.json"
    # shellcheck disable=SC2086
    step "loaders" 40 "$PYTHON" benchmarks/loaders.py --device "$DEVICE" --data array32 $LOADERS \
        --json "$WORK/loaders.json"
    # shellcheck disable=SC2086
    step "augmentation loaders" 45 "$PYTHON" benchmarks/augment_loaders.py --device "$DEVICE" $AUGMENT \
        --json "$WORK/augment_loaders.json"
    # shellcheck disable=SC2086
    step "training with augmentation" 45 "$PYTHON" benchmarks/augment_cost.py $AUG_COST --json "$WORK/augment_cost.json"
    # shellcheck disable=SC2086
    step "distributed: torchrun x1 vs plain" 45 "$PYTHON" benchmarks/distributed_one_gpu.py $DIST \
        --json "$WORK/distributed_one_gpu.json"
    # --- 5. training images/sec; the cold compiles last ----------------------------------------------------
    # shellcheck disable=SC2086
    step "training overhead" 150 "$PYTHON" benchmarks/overhead.py --device "$DEVICE" $OVERHEAD \
        --json "$WORK/overhead.json"

    "$PYTHON" benchmarks/gpu_summary.py "$WORK" && cp "$WORK/summary.json" "$OUT/summary.json"
    pack
    echo "=== done in $(elapsed): $OUT/results.tar.gz, $OUT/summary.json, $OUT/gpu_check.log"
    for k in "${!RC[@]}"; do [ "${RC[$k]}" -ne 0 ] && return 1; done
    return 0
}

rm -f "$OUT/results.tar.gz" "$OUT/summary.json"
main 2>&1 | tee "$OUT/gpu_check.log"   # a pipe, not a process substitution: tee has written all before exit
exit "${PIPESTATUS[0]}"
