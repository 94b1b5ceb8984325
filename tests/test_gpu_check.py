"""benchmarks/gpu_check.sh on the CPU (--dry-run): every step at toy sizes, the same three files left in $OUT as
on the device, so a broken script is found here and not on a lent GPU (make test-slow; about two minutes)."""
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
JSON = {"env.json", "steps.json", "switch_latency.json", "bench_optim.json", "bn_calibration.json", "loaders.json",
        "augment_loaders.json", "augment_cost.json", "distributed_one_gpu.json", "overhead.json", "summary.json"}


@pytest.mark.slow
def test_the_gpu_check_dry_run_passes_and_leaves_three_files(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "PYTHON": str(Path(os.sys.executable))}
    done = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--dry-run"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stdout[-4000:]
    assert sorted(p.name for p in out.iterdir()) == ["gpu_check.log", "results.tar.gz", "summary.json"]
    with tarfile.open(out / "results.tar.gz") as tar:
        names = {Path(n).name for n in tar.getnames() if n not in (".", "./")}
        steps = json.load(tar.extractfile("./steps.json"))
    assert names == JSON, names ^ JSON
    assert steps and set(steps.values()) == {0}, steps
    assert "=== done in" in (out / "gpu_check.log").read_text()   # the log's end is not cut
