"""The distributed path on one GPU: the same short training run as a plain process and under
``torchrun --standalone --nproc_per_node=1`` (one rank: `Distributed.from_env` sees WORLD_SIZE 1 and runs the
plain path, so any overhead is the launcher's and the set-up's), and ``--nproc 2`` when two GPUs are present
(NCCL collectives). Images/sec are read from each run's metrics.json (the training loop only); the target for
one process is <= 2 % overhead. Data: a synthetic CIFAR-10 in the standard on-disk layout.

    python benchmarks/distributed_one_gpu.py [--arch resnet20:resnet32] [--steps 200] [--json PATH]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fastmotive.testing import write_cifar10  # noqa: E402


def train(command: list[str], data: Path, output: Path, name: str, args) -> dict:
    flags = ["--arch", args.arch, "--dataset", "cifar10", "--data-dir", str(data), "-b", str(args.batch_size),
             "--epochs", "1", "--val-batches", "1", "--bn-calibrate", "0", "--no-progress", "--condition",
             "streak:2", "--output", str(output), "--experiment", name, "--loader", "tensor"]
    # a session of its own: a run stopped from outside (gpu_check's step limit) ends with its torchrun workers
    proc = subprocess.Popen([*command, *flags], start_new_session=True)
    try:
        if proc.wait():
            raise subprocess.CalledProcessError(proc.returncode, command)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    return json.loads((output / name / "metrics.json").read_text())


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="resnet20:resnet32")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=200, help="training batches (one epoch)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    plain = [sys.executable, "-m", "fastmotive", "train"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
                "-m", "fastmotive", "train"]
    commands = {"plain": (plain, "plain"), "torchrun x1": (torchrun, "torchrun1")}
    if torch.cuda.device_count() >= 2:
        commands["--nproc 2 (NCCL)"] = ([*plain, "--nproc", "2"], "nproc2")
    rates: dict[str, float] = {}
    result = {"device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu", "args": vars(args),
              "images_per_sec": rates}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_cifar10(tmp / "data", n_train=args.steps * args.batch_size // 5 + 1, n_test=args.batch_size)
        for name, (command, experiment) in commands.items():
            rates[name] = train(command, tmp / "data", tmp / "runs", experiment, args)["images_per_sec"]
            print(f"{name:18} {rates[name]:10.1f} images/s", flush=True)
            if "torchrun x1" in rates:
                result["overhead_torchrun_x1"] = 1 - rates["torchrun x1"] / rates["plain"]
            if args.json:   # after each run: a step stopped at its time limit keeps what it measured
                Path(args.json).write_text(json.dumps(result, indent=1))
    print(f"torchrun x1 overhead: {result['overhead_torchrun_x1']:+.1%} (target <= 2%)")


if __name__ == "__main__":
    main()
