"""The launcher under a new user's hands, through the real CLI (``fastmotive train --nproc 2`` and torchrun, gloo, one
thread per process): a kill -9 of the launcher leaves no worker behind; SIGINT and SIGTERM stop every rank at the
same step, with a checkpoint, the lock released and exit 130 / 143, from the workers and from the launcher; an error
is one line from fastmotive, not one per process, and torchrun's failure summary quotes it."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow,   # each test starts a launcher and two workers that import torch and timm
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")]

TINY = ["--arch", "resnet20:resnet32", "-b", "16", "--no-progress", "--epoch-batches", "50", "--val-batches", "1",
        "--epochs", "3", "--bn-calibrate", "32"]


def start(out: Path, *flags) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "fastmotive", "train", *TINY, "--nproc", "2", "--output", str(out),
                             "--experiment", "r", *flags], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def children(pid: int) -> list[int]:
    """The live processes whose parent is `pid` (zombies left out)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_for_steps(launcher: subprocess.Popen, run: Path, rows: int, timeout: float = 300) -> None:
    steps, deadline = run / "steps.csv", time.time() + timeout
    while not (steps.exists() and len(steps.read_text().splitlines()) > rows):
        assert launcher.poll() is None and time.time() < deadline, launcher.communicate()
        time.sleep(0.1)


def test_kill_9_of_the_launcher_leaves_no_worker(tmp_path):
    launcher = start(tmp_path)
    try:
        wait_for_steps(launcher, tmp_path / "r", 3)
        workers = children(launcher.pid)
        assert len(workers) == 2
        launcher.kill()
        launcher.wait()
        deadline = time.time() + 5
        while any(map(alive, workers)) and time.time() < deadline:
            time.sleep(0.05)
        assert not any(map(alive, workers)), "a worker outlived its launcher"
    finally:
        for pid in children(launcher.pid) + locals().get("workers", []):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def rows(run: Path) -> int:
    return len((run / "steps.csv").read_text().splitlines()) - 1


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_to_the_launcher_checkpoints_every_rank_at_one_step_and_exits_128_plus_it(tmp_path, sig):
    import torch
    launcher, run = start(tmp_path), tmp_path / "r"
    wait_for_steps(launcher, run, 3)
    started = time.time()
    launcher.send_signal(sig)
    out, err = launcher.communicate(timeout=120)
    assert launcher.returncode == 128 + sig, err
    assert time.time() - started < 60   # no rank waited for another in a collective, none was SIGKILLed
    assert "Traceback" not in err and "Unable to shutdown" not in err and "error" not in err, err
    assert "stopped by" in out and "checkpoint written" in out, out
    saved = torch.load(run / "last.pt", weights_only=True)
    assert saved["step"] == rows(run) >= 3   # the checkpoint is of the step the logs end at
    assert not (run / ".lock").exists()


def test_a_signal_to_one_worker_stops_both_at_the_same_step(tmp_path):
    """The agreement: rank 1 alone is signalled, yet rank 0 stops after the same step and checkpoints with it."""
    import torch
    launcher, run = start(tmp_path), tmp_path / "r"
    wait_for_steps(launcher, run, 3)
    workers = sorted(children(launcher.pid))
    os.kill(workers[-1], signal.SIGTERM)
    out, err = launcher.communicate(timeout=120)
    assert launcher.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err and "fastmotive train" not in err, err   # no error, no launcher line
    assert "stopped by signal 15" in out, out
    saved = torch.load(run / "last.pt", weights_only=True)
    assert saved["step"] == rows(run) >= 3
    assert not (run / ".lock").exists()


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("fastmotive train: ")]


def test_an_error_in_the_workers_is_one_line_and_exit_2(tmp_path):
    from fastmotive.cli.main import main
    assert main(["train", *TINY, "--epochs", "1", "--epoch-batches", "1", "--output", str(tmp_path),
                 "--experiment", "r"]) == 0
    launcher = start(tmp_path)   # into the same directory: each worker refuses it at set-up
    _, err = launcher.communicate(timeout=300)
    assert launcher.returncode == 2, err
    assert error_lines(err) == [f"fastmotive train: error: {tmp_path / 'r'} already holds a run; continue it with "
                                f"`fastmotive train --resume {tmp_path / 'r'}`, or start a new one with another "
                                "--experiment (or --output)"], err   # no second rank's, no launcher advice


def test_a_settings_error_under_torchrun_is_our_line_first_and_quoted_in_its_summary(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
                           "fastmotive", "train", "--lr", "-1", "--output", str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1   # torchrun's own status for a failed job; each worker exited 2
    lines = [line for line in proc.stderr.splitlines() if "fastmotive" in line and "error" in line]
    assert lines[0] == "fastmotive train: error: --lr -1.0 is not valid: expected a finite number > 0", proc.stderr
    assert len(error_lines(proc.stderr)) == 1, proc.stderr
    assert "traceback : fastmotive train: error: --lr -1.0" in proc.stderr   # the root cause, not torch's advice
    assert not (tmp_path / "r").exists()
