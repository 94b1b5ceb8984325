"""The steps of benchmarks/gpu_check.sh, each group in one Python process (issue 18).

Every process start imports torch, timm and fastmotive (several seconds on the device, more on a loaded CPU),
so the steps run in two processes instead of one each: ``correctness`` (env.json, the CUDA tests, the backends
and optimizers bitwise) and ``measurements`` (switch latency, the optimizer step, calibration, loaders,
augmentation, torchrun, then training overhead with its cold compiles last). Correctness has its own process
so that a device fault there (a poisoned CUDA context) cannot take the measurements with it.

Per step: a limit (SIGALRM: the step is stopped, reported as 124, and the next one runs), capped by what is left
of the check's budget (a step with under 10 s left is skipped, reported as 125 with the reason). A step stuck in
native code, where the alarm cannot act, is ended with its process GRACE_S later; the shell then runs the
group's remaining steps in a new one. Each step writes its own JSON as soon as it has a figure; steps.json
({step: {rc, seconds, note}}; rc -2 not reached yet, -1 running) is rewritten around every step and the results
so far are packed into OUT/results.tar.gz each time. torch's global settings and the signal handlers are
restored after each step.

    python benchmarks/gpu_steps.py GROUP --work DIR --out DIR --deadline EPOCH_S [--start EPOCH_S] [--dry-run]
    python benchmarks/gpu_steps.py settle --work DIR --out DIR --rc N [--final]     (after a group's process)
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tarfile
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
MIN_STEP_S = 10   # a step with less than this left of the budget is skipped, not started
DRY_SLACK = 2     # the dry run's limits: its toy sizes on a slow, shared CPU, not the device's figures


class StepTimeout(KeyboardInterrupt):
    """Raised in the main thread at a step's limit; a KeyboardInterrupt, so pytest ends its session on it."""


@dataclass
class Context:
    work: Path
    out: Path
    dry: bool
    commit: str
    start: float
    deadline: float

    @property
    def device(self) -> str:
        return "cpu" if self.dry else "cuda"

    def json(self, name: str) -> str:
        return str(self.work / name)

    def pick(self, device: list[str], dry: list[str]) -> list[str]:
        return dry if self.dry else device


@dataclass(frozen=True)
class Step:
    name: str
    limit_s: int
    run: Callable[[Context], int | None]   # its exit code (None: 0)


# %% the steps --------------------------------------------------------------------------------------------------
def _pytest(args: list[str]) -> int:
    import pytest
    # plugins imported by an earlier session of this process cannot be assertion-rewritten: say nothing of it
    return int(pytest.main(["-q", "-p", "no:cacheprovider", "-W", "ignore::pytest.PytestAssertRewriteWarning",
                            *args]))


def env(ctx: Context) -> int:
    import torch
    if not ctx.dry and not torch.cuda.is_available():
        print("no CUDA device visible to this python: this is the GPU check (use --dry-run on a CPU)")
        return 2
    import gpu_env
    gpu_env.main(ctx.json("env.json"), ctx.commit, ctx.device)
    return 0


def gpu_tests(ctx: Context) -> int:
    # only the files that hold gpu-marked tests: collecting the whole suite would import every test module
    files = sorted(str(p) for p in (ROOT / "tests").rglob("test_*.py") if "mark.gpu" in p.read_text())
    return _pytest(["-m", "gpu", *files])


def bitwise(ctx: Context) -> int:
    select = "bitwise and not vit and not resnet18" if ctx.dry else "bitwise or matches"
    return _pytest([str(ROOT / "benchmarks/test_bench_switch.py"), str(ROOT / "benchmarks/test_bench_optim.py"),
                    "-k", select, "--benchmark-disable"])


def switch_latency(ctx: Context) -> None:
    import switch_latency
    switch_latency.main(["--device", ctx.device, "--json", ctx.json("switch_latency.json"), *ctx.pick(
        ["--pairs", "efficientnet_b0:b2", "resnet18:34", "vit_tiny_patch16_224:vit_small_patch16_224",
         "--num-classes", "1000", "--repeats", "30"],
        ["--pairs", "resnet20:resnet32", "--num-classes", "10", "--repeats", "3"])])


def optimizer(ctx: Context) -> int:
    return _pytest([str(ROOT / "benchmarks/test_bench_optim.py"), "--benchmark-enable", "--benchmark-only",
                    f"--benchmark-json={ctx.json('bench_optim.json')}", "--benchmark-columns=median,iqr,rounds",
                    *ctx.pick([], ["-k", "adamw and (arena or foreach)"])])


def bn_calibration(ctx: Context) -> None:
    import bn_calibration
    bn_calibration.main(["--json", ctx.json("bn_calibration.json"), *ctx.pick(
        ["--rounds", "3"], ["--arch", "resnet20:resnet32", "--images", "32", "--batch-size", "16", "--rounds", "1"])])


def loaders(ctx: Context) -> None:
    import loaders
    loaders.main(["--device", ctx.device, "--data", "array32", "--json", ctx.json("loaders.json"), *ctx.pick(
        ["--loaders", "tensor,dali,torch", "--repeats", "3"],
        ["--loaders", "tensor,torch", "--array-images", "512", "--repeats", "1"])])


def augment_loaders(ctx: Context) -> None:
    import augment_loaders
    augment_loaders.main(["--device", ctx.device, "--json", ctx.json("augment_loaders.json"), *ctx.pick(
        ["--repeats", "3"], ["--pipelines", "tensor,timm", "--sizes", "32", "--images-32", "256", "--repeats", "1"])])


def augment_cost(ctx: Context) -> None:
    import augment_cost
    augment_cost.main(["--json", ctx.json("augment_cost.json"), *ctx.pick(
        ["--arch", "efficientnet_b0:b2", "--img-size", "224", "--batch-size", "64", "--steps", "10", "--rounds", "3"],
        ["--arch", "resnet20:resnet32", "--img-size", "32", "--batch-size", "16", "--steps", "2", "--rounds", "1"])])


def distributed(ctx: Context) -> None:
    import distributed_one_gpu   # the two runs are processes of their own: the launcher is what is measured
    distributed_one_gpu.main(["--json", ctx.json("distributed_one_gpu.json"),
                              *ctx.pick(["--steps", "200"], ["--steps", "4", "--batch-size", "16"])])


def overhead(ctx: Context) -> None:
    import overhead
    overhead.main(["--device", ctx.device, "--json", ctx.json("overhead.json"), *ctx.pick(
        ["--compile", "none,reduce-overhead", "--steps", "20", "--epochs", "2", "--rounds", "3",
         "--parts", "training,switch"],
        ["--arch", "resnet20:resnet32", "--compile", "none", "--steps", "2", "--epochs", "1", "--rounds", "1",
         "--repeats", "3", "--switch-batch-sizes="])])


GROUPS = {
    "correctness": [Step("environment", 60, env), Step("pytest -m gpu tests", 60, gpu_tests),
                    Step("bitwise switch + optimizer parity", 90, bitwise)],
    "measurements": [Step("switch latency", 60, switch_latency), Step("optimizer benchmark", 45, optimizer),
                     Step("bn calibration", 30, bn_calibration), Step("loaders", 40, loaders),
                     Step("augmentation loaders", 45, augment_loaders),
                     Step("training with augmentation", 45, augment_cost),
                     Step("distributed: torchrun x1 vs plain", 45, distributed),
                     Step("training overhead", 150, overhead)],   # the cold compiles last
}


# %% running them -----------------------------------------------------------------------------------------------
PENDING, RUNNING = -2, -1   # steps.json's rc of a step not reached yet, and of the step in progress
STUCK_EXIT = 3              # the process ended itself to leave a step stuck in native code
GRACE_S = 15                # past its limit, the time a step has to notice its alarm before the process ends


def load_steps(work: Path) -> dict:
    path = work / "steps.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def save_steps(ctx: Context, steps: dict) -> None:
    """Rewrite steps.json, then pack the results so far into one file."""
    path = ctx.work / "steps.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(steps, indent=1))
    os.replace(tmp, path)
    pack(ctx.work, ctx.out)


def record(ctx: Context, name: str, rc: int, seconds: float, note: str = "") -> None:
    steps = load_steps(ctx.work)
    steps[name] = {"rc": rc, "seconds": round(seconds, 1), "note": note}
    save_steps(ctx, steps)


def pack(work: Path, out: Path) -> None:
    """work/* as out/results.tar.gz, replaced atomically (a kill leaves the previous tarball whole)."""
    tmp = out / "results.tar.gz.tmp"
    with tarfile.open(tmp, "w:gz") as tar:
        tar.add(work, arcname=".", filter=lambda info: None if info.name.endswith(".tmp") else info)
    os.replace(tmp, out / "results.tar.gz")


def _torch_settings():
    """The global torch settings a step could change, to restore before the next step sees them."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    return (torch.get_num_threads(), torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
            torch.backends.cudnn.benchmark)


def _restore_torch(saved) -> None:
    if saved is not None:
        import torch
        torch.set_num_threads(saved[0])
        (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
         torch.backends.cudnn.benchmark) = saved[1:]


def _call(step: Step, ctx: Context) -> tuple[int, str]:
    """The step's exit code and, when it failed, why."""
    try:
        return step.run(ctx) or 0, ""
    except StepTimeout:
        return 124, ""
    except SystemExit as e:   # a script's own exit: sys.exit("message") is a failure
        code = e.code if isinstance(e.code, int) else int(e.code is not None)
        return code, "" if code == 0 else f"exit: {e.code}"
    except BaseException as e:   # noqa: BLE001 - reported; the next step still runs
        traceback.print_exc()
        return 1, f"{type(e).__name__}: {str(e)[:300]}"


def _watchdog(ctx: Context, step: Step, limit: int) -> threading.Timer:
    """End the process if the step still runs GRACE_S after its limit: the alarm cannot act while native code
    runs (a long kernel, a hung synchronisation). The shell then runs the group's remaining steps anew."""
    def fire():
        note = f"stuck past its {limit}s limit in native code: its process was ended, the next steps ran in a new one"
        record(ctx, step.name, 124, limit + GRACE_S, note)
        print(f"!!! {step.name}: {note}", flush=True)
        os._exit(STUCK_EXIT)
    timer = threading.Timer(limit + GRACE_S, fire)
    timer.daemon = True
    timer.start()
    return timer


def _skip_reason(ctx: Context, stopped: list, limit: int, left: int) -> str | None:
    if stopped:
        return "the check was stopped from outside"
    if limit < MIN_STEP_S:
        return f"the {ctx.deadline - ctx.start:.0f}s budget is spent ({max(left, 0)}s left; BUDGET_S=... gives more)"
    return None


def run_step(ctx: Context, step: Step, stopped: list) -> int:
    """Run one step within its limit and what is left of the budget; record and return its exit code."""
    left = int(ctx.deadline - time.time())
    limit = min(step.limit_s * (DRY_SLACK if ctx.dry else 1), left)
    print(f"\n=== [{time.time() - ctx.start:.0f}s] {step.name} (limit {limit}s)", flush=True)
    why = _skip_reason(ctx, stopped, limit, left)
    if why:
        print(f"!!! skipped: {why}", flush=True)
        record(ctx, step.name, 125, 0.0, f"skipped: {why}")
        return 125
    record(ctx, step.name, RUNNING, 0.0, "running")
    fired: list = []

    def stop(signum, frame):   # the limit (SIGALRM) or the shell's timeout (SIGTERM)
        fired.append(signum)
        if signum == signal.SIGTERM:
            stopped.append(signum)
        raise StepTimeout(f"signal {signum}")

    settings, handlers = _torch_settings(), {s: signal.getsignal(s) for s in (signal.SIGALRM, signal.SIGTERM)}
    for s in handlers:
        signal.signal(s, stop)
    t0, watchdog = time.time(), _watchdog(ctx, step, limit)
    signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        rc, note = _call(step, ctx)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        watchdog.cancel()
        for s, h in handlers.items():
            signal.signal(s, h)
        _restore_torch(settings)
    if fired:   # pytest turns the interrupt into its own exit code: the signal says what happened
        by = "by the check's timeout" if signal.SIGTERM in fired else f"at its {limit}s limit"
        rc, note = 124, f"stopped {by}; its JSON keeps what it had"
        print(f"!!! {step.name} was stopped {by} (its JSON keeps what it had)", flush=True)
    record(ctx, step.name, rc, time.time() - t0, note)
    return rc


def run_group(ctx: Context, group: str) -> int:
    """The group's steps not done yet (a group restarted after a stuck step goes on after it), in order."""
    steps = load_steps(ctx.work)
    todo = [s for s in GROUPS[group] if steps.get(s.name, {"rc": PENDING})["rc"] == PENDING]
    for s in todo:
        steps[s.name] = {"rc": PENDING, "seconds": 0.0, "note": "not reached"}
    save_steps(ctx, steps)
    stopped: list = []
    for step in todo:
        if run_step(ctx, step, stopped) == 2 and step.run is env:
            settle(ctx, 2, final=True, why="no CUDA device")
            return 2   # nothing else means anything
    return 124 if stopped else 0


def settle(ctx: Context, rc: int, final: bool, why: str | None = None) -> tuple[int, bool]:
    """After a group's process ended with `rc`: its running step ended with it; with `final`, the steps not
    reached are skipped. Returns (steps still pending, whether every step recorded so far passed)."""
    steps = load_steps(ctx.work)
    for s in steps.values():
        if s["rc"] == RUNNING:
            s.update(rc=rc if rc else 1, note=f"its process ended with exit {rc} while it ran")
        elif s["rc"] == PENDING and final:
            s.update(rc=125, note=f"skipped: {why or f'its group ended (exit {rc}) before it'}")
    save_steps(ctx, steps)
    pending = sum(s["rc"] == PENDING for s in steps.values())
    return pending, all(s["rc"] == 0 for s in steps.values())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("group", choices=[*GROUPS, "settle"], help="a group to run, or settle: see `settle`")
    p.add_argument("--work", type=Path, required=True, help="where the steps write their JSON")
    p.add_argument("--out", type=Path, required=True, help="where results.tar.gz is kept up to date")
    p.add_argument("--deadline", type=float, default=0.0, help="the budget's end, in epoch seconds")
    p.add_argument("--start", type=float, default=None, help="the check's start (for the log's times)")
    p.add_argument("--commit", default="unknown")
    p.add_argument("--dry-run", action="store_true", help="on the CPU at toy sizes")
    p.add_argument("--rc", type=int, default=0, help="settle: the exit code of the group's process")
    p.add_argument("--final", action="store_true", help="settle: the group is not started again")
    args = p.parse_args(argv)
    ctx = Context(args.work, args.out, args.dry_run, args.commit, args.start or time.time(), args.deadline)
    if args.group == "settle":   # prints the pending steps; exit 0 when every step so far passed
        pending, ok = settle(ctx, args.rc, args.final)
        print(pending)
        return 0 if ok else 1
    sys.path.insert(0, str(ROOT / "benchmarks"))   # the benchmark scripts import as modules
    os.chdir(ROOT)
    return run_group(ctx, args.group)


if __name__ == "__main__":
    sys.exit(main())
