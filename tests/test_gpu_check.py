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
STEPS = ["environment", "pytest -m gpu tests", "bitwise switch + optimizer parity", "switch latency",
         "optimizer benchmark", "bn calibration", "loaders", "augmentation loaders", "training with augmentation",
         "distributed: torchrun x1 vs plain", "training overhead"]


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
    assert list(steps) == STEPS, list(steps)   # in order: correctness, measurements, the cold compiles last
    assert all(s["rc"] == 0 for s in steps.values()), steps
    assert "=== done in" in (out / "gpu_check.log").read_text()   # the log's end is not cut


RUNNER = """
import signal, sys, time
sys.path.insert(0, {bench!r})
import gpu_steps as g

def ok(ctx):
    (ctx.work / "ok.json").write_text("{{}}")

def slow(ctx):                 # Python code: the alarm stops it
    time.sleep(60)

def stuck(ctx):                # native code that never sees its alarm: the watchdog ends the process
    signal.pthread_sigmask(signal.SIG_BLOCK, {{signal.SIGALRM}})
    time.sleep(60)

def broken(ctx):
    raise ValueError("no such pair")

g.GROUPS = {{"g": [g.Step("ok", 1, ok), g.Step("slow", 1, slow), g.Step("stuck", 1, stuck),
                  g.Step("broken", 5, broken), g.Step("after", 5, ok)], "late": [g.Step("late", 60, ok)]}}
g.MIN_STEP_S, g.GRACE_S = 1, 1
sys.exit(g.main(sys.argv[1:]))
"""


def test_the_step_runner_stops_skips_and_goes_on_after_a_stuck_step(tmp_path):
    """gpu_steps.py (no torch, a few seconds): a step past its limit is stopped (124) and the next runs; one
    stuck in native code ends its process (exit 3) and a new process goes on after it; a failure is noted; a
    step the budget cannot fit is skipped (125) with the reason."""
    import time

    work, out = tmp_path / "work", tmp_path / "out"
    work.mkdir()
    out.mkdir()
    code = RUNNER.format(bench=str(ROOT / "benchmarks"))
    deadline = str(time.time() + 60)

    def run(*args):
        return subprocess.run([os.sys.executable, "-c", code, *args, "--work", str(work), "--out", str(out)],
                              capture_output=True, text=True, timeout=60, check=False)

    first = run("g", "--deadline", deadline)
    assert first.returncode == 3, first.stdout + first.stderr          # ended by the stuck step's watchdog
    assert run("settle", "--rc", "3").stdout.strip() == "2"           # "broken" and "after" not reached
    again = run("g", "--deadline", deadline)
    assert again.returncode == 0, again.stdout + again.stderr
    assert run("late", "--deadline", str(time.time() - 1)).returncode == 0
    steps = json.loads((work / "steps.json").read_text())
    assert {k: v["rc"] for k, v in steps.items()} == {"ok": 0, "slow": 124, "stuck": 124, "broken": 1, "after": 0,
                                                     "late": 125}
    assert "native code" in steps["stuck"]["note"] and "ValueError: no such pair" in steps["broken"]["note"]
    assert "budget is spent" in steps["late"]["note"]
    with tarfile.open(out / "results.tar.gz") as tar:                  # packed after every step
        assert {"./steps.json", "./ok.json"} <= set(tar.getnames())
    settled = run("settle", "--final")
    assert settled.returncode == 1 and settled.stdout.strip() == "0"   # nothing pending; not every step passed
