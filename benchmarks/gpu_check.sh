#!/usr/bin/env bash
# One-shot GPU check of fastmotive (issue 5), under 10 minutes on an H100 (BUDGET_S, default 540 s, caps the
# steps; a step past its limit is stopped and reported, the rest still run):
#   1. CUDA tests: `pytest -m gpu tests`, then on the GPU: Triton vs torch vs naive switch bitwise for
#      efficientnet_b0:b2, resnet18:34 and vit_tiny:small, and the arena optimizers vs torch.optim;
#   2. switch latency per backend with the device-to-device copy floor (benchmarks/switch_latency.py);
#   3. the optimizer benchmark (benchmarks/test_bench_optim.py: arena vs torch.optim foreach/fused);
#   4. images/sec for base / motivated / alternating and the plain timm loop, the tensor loader, compile off
#      and `reduce-overhead` (benchmarks/overhead.py), with the framework-overhead ratios;
#   5. loader images/sec (tensor, torch DataLoader, DALI if it imports);
#   6. recipe V's augmentation (RandAugment, erasing, Mixup, CutMix) per loader against timm's pipeline, training
#      images/sec with and without it, and the distributed path: torchrun with one process against the plain
#      run (and --nproc 2 over NCCL when two GPUs are present);
# then one summary table (benchmarks/gpu_summary.py). JSON and the log go to $OUT if set, else
# benchmarks/results/gpu: env.json steps.json switch_latency.json bench_optim.json overhead.json loaders.json bn_calibration.json
# augment_loaders.json augment_cost.json distributed_one_gpu.json summary.json gpu_check.log (11 files).
#
# Usage:   bash benchmarks/gpu_check.sh            (PYTHON=... to choose the interpreter; COMMIT=... to record it)
# Needs:   python with torch (CUDA), triton, timm, numpy, pyyaml, torchvision, pytest, pytest-benchmark,
#          hypothesis (collected by tests/). Those are the hard imports. Optional, skipped with a note:
#          nvidia-dali (DALI loader), scikit-learn (the digits CUDA loader test), safetensors (export),
#          fvcore (FLOPs). Nothing is downloaded: fastmotive is made importable with
#          `pip install --no-deps --no-index --no-build-isolation -e .` (falls back to a .pth path hook), so
#          the machine's own torch stays as it is (pyproject pins another version).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUTDIR=${OUT:-benchmarks/results/gpu}
mkdir -p "$OUTDIR"
exec > >(tee "$OUTDIR/gpu_check.log") 2>&1
START=$(date +%s)
export TRITON_INTERPRET=0                 # tests/conftest.py would turn the interpreter on
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
export TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-/tmp/fastmotive_inductor}
if [ -z "${PYTHON:-}" ]; then
    if python3 -c "import torch" 2>/dev/null; then PYTHON=python3; else PYTHON=$ROOT/.venv/bin/python; fi
fi
COMMIT=${COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
declare -A RC
elapsed() { echo "$(( $(date +%s) - START ))s"; }
BUDGET_S=${BUDGET_S:-540}                 # the whole check; each step's limit is cut to what is left
step() {   # step NAME TIMEOUT_S COMMAND...: run, record the exit code, never stop the script
    local name=$1 limit=$2; shift 2
    local left=$(( BUDGET_S - ($(date +%s) - START) ))
    (( limit > left )) && limit=$left
    echo; echo "=== [$(elapsed)] $name (limit ${limit}s)"
    if (( limit < 15 )); then
        echo "!!! skipped: the ${BUDGET_S}s budget is spent"; RC[$name]=125; return
    fi
    timeout --kill-after=10 "$limit" "$@"
    RC[$name]=$?
    [ "${RC[$name]}" -eq 124 ] && echo "!!! $name ran past ${limit}s and was stopped"
}

# --- 0. environment ------------------------------------------------------------------------------------
echo "=== fastmotive GPU check, commit $COMMIT, $(date -Iseconds), python: $PYTHON"
nvidia-smi -L 2>/dev/null || echo "nvidia-smi: not available"
if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "no CUDA device visible to $PYTHON: this is the GPU check, nothing to do"; exit 2
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
"$PYTHON" - "$OUTDIR/env.json" "$COMMIT" <<'EOF'
import datetime, importlib, json, os, sys
import torch
notes, versions = [], {}
for name in ("triton", "timm", "torchvision", "numpy", "yaml", "pytest", "pytest_benchmark", "hypothesis",
             "nvidia.dali", "sklearn", "safetensors", "fvcore", "rich", "matplotlib"):
    try:
        versions[name] = getattr(importlib.import_module(name), "__version__", "present")
    except Exception as e:   # noqa: BLE001
        versions[name] = None
        notes.append(f"{name} does not import ({type(e).__name__}): " + {
            "nvidia.dali": "the DALI loader is skipped (carry the nvidia-dali-cuda130 wheel to include it)",
            "sklearn": "the digits CUDA loader test is skipped/fails; everything else runs",
            "safetensors": "export is unavailable; not used here", "fvcore": "FLOP counts unavailable; not used here",
        }.get(name, "needed by this check"))
import fastmotive
env = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "cuda": torch.version.cuda,
       "triton": versions.get("triton"), "commit": sys.argv[2], "date": datetime.datetime.now().isoformat(timespec="seconds"),
       "cpus": os.cpu_count(), "versions": versions, "notes": notes, "fastmotive": fastmotive.__file__}
json.dump(env, open(sys.argv[1], "w"), indent=1)
print(json.dumps(env, indent=1))
EOF

# --- 1. CUDA tests -------------------------------------------------------------------------------------
step "pytest -m gpu tests" 90 "$PYTHON" -m pytest -q -p no:cacheprovider -m gpu tests --continue-on-collection-errors
step "bitwise switch + optimizer parity on CUDA" 120 "$PYTHON" -m pytest -q -p no:cacheprovider benchmarks \
    -k "bitwise or matches" --benchmark-disable

# --- 2. switch latency with the copy floor -------------------------------------------------------------
step "switch latency" 90 "$PYTHON" benchmarks/switch_latency.py --json "$OUTDIR/switch_latency.json"

# --- 3. optimizer step ---------------------------------------------------------------------------------
step "optimizer benchmark" 90 "$PYTHON" -m pytest -q -p no:cacheprovider benchmarks/test_bench_optim.py \
    --benchmark-enable --benchmark-only --benchmark-json="$OUTDIR/bench_optim.json" --benchmark-columns=median,iqr,rounds

# --- 4. training images/sec, compile off and reduce-overhead -------------------------------------------
step "training overhead" 300 "$PYTHON" benchmarks/overhead.py --device cuda --compile none,reduce-overhead \
    --steps 20 --epochs 2 --rounds 3 --parts training,switch --json "$OUTDIR/overhead.json"

# --- 5. loaders ----------------------------------------------------------------------------------------
step "bn calibration" 60 "$PYTHON" benchmarks/bn_calibration.py --rounds 3 --json "$OUTDIR/bn_calibration.json"
step "loaders" 60 "$PYTHON" benchmarks/loaders.py --data array32 --loaders tensor,dali,torch --repeats 3 \
    --json "$OUTDIR/loaders.json"

# --- 6. recipe V's augmentation on the GPU, and the distributed path -----------------------------------
step "augmentation loaders" 90 "$PYTHON" benchmarks/augment_loaders.py --device cuda --repeats 3 \
    --json "$OUTDIR/augment_loaders.json"
step "training with augmentation" 90 "$PYTHON" benchmarks/augment_cost.py --arch efficientnet_b0:b2 --img-size 224 \
    --batch-size 64 --steps 10 --rounds 3 --json "$OUTDIR/augment_cost.json"
step "distributed: torchrun x1 vs plain" 120 "$PYTHON" benchmarks/distributed_one_gpu.py --steps 200 \
    --json "$OUTDIR/distributed_one_gpu.json"

# --- summary -------------------------------------------------------------------------------------------
"$PYTHON" - "$OUTDIR/steps.json" <<EOF
import json, sys
json.dump({$(for k in "${!RC[@]}"; do printf '"%s": %s, ' "$k" "${RC[$k]}"; done)}, open(sys.argv[1], "w"), indent=1)
EOF
"$PYTHON" benchmarks/gpu_summary.py "$OUTDIR"
echo "=== done in $(elapsed); files in $OUTDIR"
failed=0
for k in "${!RC[@]}"; do [ "${RC[$k]}" -ne 0 ] && failed=1; done
exit $failed
