"""pytest-benchmark suites of fastmotive (issue 5): switch, optimizer step, training, loaders.

    make bench                                   # all suites, JSON in benchmarks/results/bench.json
    .venv/bin/python -m pytest benchmarks --benchmark-enable --benchmark-only     # the same, by hand
    .venv/bin/python -m pytest benchmarks        # each benchmark once (pyproject's --benchmark-disable)

`make test` never collects this folder (pyproject: testpaths = tests). Correctness is asserted outside the
timed calls. On CUDA the Triton switch is timed for real; without CUDA it is skipped, never timed in the
interpreter (TRITON_INTERPRET=1 runs kernels in Python, thousands of times slower).
"""
import os
import subprocess
from pathlib import Path

import torch

if torch.cuda.is_available():
    # tests/conftest.py turns the interpreter on for the CPU test-suite; here kernels must run on the GPU
    os.environ["TRITON_INTERPRET"] = "0"
os.environ.setdefault("MPLBACKEND", "Agg")

from _common import DEVICE  # benchmarks/ is on sys.path (pytest inserts a conftest's folder)


def pytest_benchmark_update_machine_info(config, machine_info):
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], check=False, capture_output=True, text=True,
                                cwd=Path(__file__).parent, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = None
    machine_info["fastmotive"] = {
        "device": torch.cuda.get_device_name() if DEVICE.type == "cuda" else "cpu",
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "commit": commit,
        "loadavg": list(os.getloadavg()),
    }
