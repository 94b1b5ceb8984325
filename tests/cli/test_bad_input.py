"""Nothing lost, nothing silently wrong: bad settings are refused before any file is written, with one
``fastmotive <command>: error:`` line and exit 2; run directories are never overwritten; a second process is kept
out of a run directory; a finished run resumed changes nothing; Ctrl-C exits 130.

Bad inputs tried and what they get (each row is a case below):

| input | error |
|---|---|
| a new run into an existing run directory | refused, naming it and `--resume` |
| `--resume` / `export` / `eval` of a missing directory | "is not a fastmotive run directory", nothing created |
| `--arch=resnet20:resnet44` / `-b16` on `--resume` | the clash check sees every spelling |
| `--lr -1`, `--lr nan`, `--lr inf`, `--momentum -1`, `--epochs 0`, `--max-steps 0`, `--num-classes 0`, `--smoothing -0.1` | the flag, the value and what is allowed |
| `--condition streak:0`, `--device tpu`, `--experiment ..` | the same |
| `--opt bogus`, `--sched bogus`, `--compile bogus`, `--switch-backend bogus` | argparse's choices |
| `--switch-backend triton` on a CPU | refused at set-up, before the run directory |
| `--warmup-epochs 100 --epochs 1`, `--min-lr` above `--lr` | the contradiction |
| `--num-classes 3` on 10 classes | fewer than the dataset's classes |
| YAML `epochs: 1.5`, a YAML list, a non-YAML file | the key, or the file |
| `resnet20:resnet20`, `resnet32:resnet20` | the same model twice; the larger model given first |
| a ViT at `--img-size 8` (patch 16) | the input holds no patch |
| `--aa rand-foo`, `--drop 1.5`, `--mixup -1`, `--opt-betas 0.9 1.5`, `--nproc 0` | the flag, the value and what is allowed |
| `--drop-path` on the CIFAR ResNets, `--sync-bn` on a CPU, a missing `--initial-checkpoint` | what is wrong and what to do |
| `--grad-accum-steps` over an epoch's batches, `--condition` on a single model | the contradiction |
| `map --num-classes -3`, `map resnet20`, `tune-k --folds 100000` | argparse; a single model has no map; the rarest class's count |
| a read-only `--output` | the OS error in one line |
| a second process in a running run's directory | "in use by another fastmotive process (PID ...)" |
| a `.lock` of a reused PID (not fastmotive, not Python) / of another host | taken over / never: the host named |
| `--growth-init identity` on a single model | "trains one model alone" |
| flags that would change nothing: `--opt-eps` with `--opt sgd`, `--warmup-prefix` with cosine, `--clip-mode` without `--clip-grad`, `--dist-bn`/`--check-sync` in one process, `--hflip` with `--no-flip`, `--bn-buffers keep` on a single model, `--data-dir` without `--dataset`, `--scale`/`--ratio` on an array dataset | "would change nothing", the flag and why |
| timm's `--crop-pct`, `--val-split`, `--color-jitter`, `--sched-on-updates`, `--model-ema`, `--pretrained`; `--input-size 3 32 48` | what to use instead (`--model` and a square `--input-size` are taken as `--arch` and `--img-size`) |
| `--seed -1`, `--nproc 999` on 2 cores | the flag and the allowed range (no process is started) |
| `--initial-checkpoint RUN_DIR` (no `:base`), `RUN_DIR/last.pt`, `SINGLE_RUN:motivated` | what to give instead |
| a run directory whose args.yaml is not YAML, a list, or lacks model_kwargs (`eval`, `export`, `--resume`) | the file and what is wrong |
| a `last.pt` holding a pickle payload | refused, nothing run, no advice to load it anyway |
| `--resume` of a run killed before its first checkpoint | trains it from its start with its recorded settings |
| `--resume DIR --epochs N` on a finished run | extends it (N above the recorded epochs; fewer is refused) |
| kill -9 of the `--nproc 2` launcher (`tests/distributed/test_launcher.py`, slow) | no worker alive 5 s later (each asked the kernel for SIGKILL when its parent dies) |
| SIGINT / SIGTERM to the `--nproc 2` launcher, SIGTERM to one worker alone (the same file) | every rank stops after the same step, checkpoint written, lock released, exit 130 / 143 from the launcher, no traceback |
| an error every worker meets (a run directory that holds a run) under `--nproc 2` (the same file) | one `fastmotive train: error:` line, exit 2, no launcher advice |
| `--lr -1` under torchrun (the same file) | fastmotive's one line first and only once; torchrun's summary quotes it as the root cause (torchrun's own traceback and exit 1 are torch's) |
| `--opt sgd --momentum 0`, `--opt adamw --momentum 0.5` | Nesterov needs momentum (give `--opt momentum`); "--momentum: --opt adamw has no momentum" |
| `--opt sgd` / `nesterov` / `momentum` | timm's meanings: Nesterov SGD, the same, classical momentum (`test_optimizer_names_mean_what_they_mean_in_timm`) |
| `transfer --to imagenet22k`, `--to folder` without data, a bad `--to-data-dir` (`tests/experiments/test_transfer.py`) | refused before any source run trains: "--to NAME: unknown dataset" / "needs --data-dir" / "no such directory" |
| `--skip-bad-images` on an array dataset | "would change nothing": only image folders hold undecodable files |
| `-j 4` with the tensor loader (arrays) | "-j/--workers would change nothing: the tensor loader has no workers" |
| every `train` setting, family by family (`tests/cli/test_every_flag.py`, slow) | changes steps.csv / summary.csv / the files / the printed lines against the run without it, or is refused in one line; the exempt few (how or where, not what) are listed with where they are tested |
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from fastmotive.cli.main import main

FAST = ["--arch", "resnet20:resnet32", "-b", "64", "--no-progress", "--opt", "sgd", "--lr", "0.05",
        "--warmup-epochs", "0", "--bn-calibrate", "64"]


def fastmotive(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "fastmotive", *map(str, args)], capture_output=True, text=True,
                          timeout=600, check=False, **kwargs)


def refused(proc, *needles):
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("fastmotive ") and ": error: " in line]
    assert len(errors) == 1, proc.stderr
    for needle in needles:
        assert needle in proc.stderr, (needle, proc.stderr)


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    proc = fastmotive("train", *FAST, "--epochs", "1", "--epoch-batches", "2", "--output", out, "--experiment", "r")
    assert proc.returncode == 0, proc.stderr
    return out / "r"


def test_a_new_run_never_overwrites_an_existing_one(finished_run):
    before = snapshot(finished_run)
    proc = fastmotive("train", *FAST, "--epochs", "1", "--epoch-batches", "2", "--output", finished_run.parent,
                      "--experiment", "r")
    refused(proc, "already holds a run", "--resume")
    assert snapshot(finished_run) == before


def test_resuming_a_finished_run_changes_nothing(finished_run):
    before = snapshot(finished_run)
    proc = fastmotive("train", "--resume", finished_run)
    assert proc.returncode == 0 and "nothing to do" in proc.stdout, proc.stderr
    assert snapshot(finished_run) == before


@pytest.mark.parametrize("flag", [["--arch=resnet20:resnet44"], ["-b16"], ["--lr=0.1"]])
def test_every_spelling_of_a_flag_is_checked_on_resume(finished_run, flag):
    refused(fastmotive("train", "--resume", finished_run, *flag), "differ from the run's args.yaml")


@pytest.mark.parametrize("command", [["train", "--resume"], ["export"], ["eval"]])
def test_a_missing_run_directory_is_named_and_not_created(tmp_path, command):
    missing = tmp_path / "nowhere"
    refused(fastmotive(*command, missing), "not a fastmotive run directory")
    assert not missing.exists()


@pytest.mark.parametrize("flags, needle", [
    (["--lr", "-1"], "--lr"), (["--lr", "nan"], "--lr"), (["--lr", "inf"], "--lr"),
    (["--momentum", "-1"], "--momentum"), (["--epochs", "0"], "--epochs"), (["--max-steps", "0"], "--max-steps"),
    (["--num-classes", "0"], "--num-classes"), (["--smoothing", "-0.1"], "--smoothing"),
    (["--condition", "streak:0"], "--condition"), (["--device", "tpu"], "--device"),
    (["--experiment", ".."], "--experiment"), (["--opt", "bogus"], "--opt"), (["--sched", "bogus"], "--sched"),
    (["--compile", "bogus"], "--compile"), (["--switch-backend", "bogus"], "--switch-backend"),
    (["--switch-backend", "triton"], "triton"), (["--warmup-epochs", "100", "--epochs", "1"], "--warmup-epochs"),
    (["--min-lr", "1"], "--min-lr"), (["--num-classes", "3"], "--num-classes 3"),
    (["--arch", "resnet20:resnet20"], "twice"), (["--arch", "resnet32:resnet20"], "larger"),
    (["--arch", "vit_tiny_patch16_224:vit_small_patch16_224", "--img-size", "8"], "holds none"),
    (["--aa", "rand-foo"], "--aa"), (["--drop", "1.5"], "--drop"), (["--drop-path", "0.1"], "--drop-path: resnet20"),
    (["--mixup", "-1"], "--mixup"), (["--opt-betas", "0.9", "1.5"], "--opt-betas"), (["--nproc", "0"], "--nproc"),
    (["--initial-checkpoint", "missing.safetensors"], "no such file"), (["--sync-bn"], "--sync-bn needs CUDA"),
    (["--grad-accum-steps", "100", "--epoch-batches", "2"], "--grad-accum-steps 100"),
    (["--arch", "resnet20", "--condition", "streak:2"], "trains one model alone"),
    (["--arch", "resnet20", "--growth-init", "identity"], "trains one model alone"),
    (["--opt-eps", "1e-3"], "--opt-eps: --opt sgd has no epsilon"), (["--warmup-prefix"], "--warmup-prefix"),
    (["--clip-mode", "agc"], "--clip-mode: no --clip-grad"), (["--dist-bn", "none"], "--dist-bn: one process"),
    (["--check-sync", "2"], "--check-sync: one process"), (["--hflip", "0.5", "--no-flip"], "--hflip: --no-flip"),
    (["--arch", "resnet20", "--bn-buffers", "keep"], "--bn-buffers: a single model"),
    (["--scale", "0.5", "1"], "--scale would change nothing"), (["--seed", "-1"], "--seed -1"),
    (["--nproc", "999"], "--nproc 999: this machine has"), (["--data-dir", "somewhere"], "--dataset folder"),
    (["--crop-pct", "0.9"], "--crop-pct is timm's"), (["--pretrained"], "--initial-checkpoint"),
    (["--input-size", "3", "32", "48"], "H == W"),
    (["--momentum", "0"], "--opt sgd is SGD with Nesterov momentum"),
    (["--opt", "adamw", "--momentum", "0.5"], "--momentum: --opt adamw has no momentum"),
    (["--skip-bad-images"], "--skip-bad-images would change nothing"),
    (["-j", "4"], "-j/--workers would change nothing"),
])
def test_bad_settings_are_refused_before_any_file_is_written(tmp_path, flags, needle, monkeypatch, capsys):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)   # triton on a CPU must be refused
    out = tmp_path / "out"
    code = main(["train", *FAST, *flags, "--output", str(out)])   # in process: the same main, no interpreter start
    refused(subprocess.CompletedProcess([], code, *capsys.readouterr()), needle)
    assert not out.exists()


@pytest.mark.parametrize("text, needle", [("epochs: 1.5\n", "epochs"), ("- a\n- b\n", "mapping"),
                                          ("lr: [1, 2\n", "not valid YAML")])
def test_bad_config_files_are_refused(tmp_path, text, needle):
    config = tmp_path / "c.yaml"
    config.write_text(text)
    refused(fastmotive("train", "-c", config, "--output", tmp_path / "out"), needle)
    assert not (tmp_path / "out").exists()


def test_other_commands_check_their_numbers(tmp_path):
    refused(fastmotive("map", "resnet20:resnet32", "--num-classes", "-3"), "positive")
    refused(fastmotive("map", "resnet20"), "one model has no weights map")
    refused(fastmotive("tune-k", "--arch", "resnet20:resnet32", "--folds", "100000", "--output", tmp_path),
            "rarest class")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_output_is_one_line(tmp_path):
    tmp_path.chmod(0o500)
    refused(fastmotive("train", *FAST, "--max-steps", "1", "--output", tmp_path / "out"), "ermission")


def test_a_second_process_is_kept_out_and_ctrl_c_exits_130(tmp_path):
    args = ["train", *FAST, "--epochs", "3", "--output", tmp_path, "--experiment", "busy"]
    first = subprocess.Popen([sys.executable, "-m", "fastmotive", *map(str, args)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    steps = tmp_path / "busy" / "steps.csv"
    deadline = time.time() + 300
    while time.time() < deadline and not (steps.exists() and len(steps.read_text().splitlines()) > 3):
        time.sleep(0.05)
    second = fastmotive("train", "--resume", tmp_path / "busy")
    refused(second, "in use by another fastmotive process", str(first.pid))
    first.send_signal(signal.SIGINT)
    out, err = first.communicate(timeout=300)
    assert first.returncode == 130, err
    assert "--resume" in out and not (tmp_path / "busy" / ".lock").exists()


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    from fastmotive.run.lock import RunLock
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True).stdout.strip()
    (tmp_path / ".lock").write_text(dead)   # the format of older versions: the PID alone
    lock = RunLock(tmp_path).acquire()
    assert (tmp_path / ".lock").read_text() == f"{socket.gethostname()} {os.getpid()}"
    lock.release()
    assert not (tmp_path / ".lock").exists()


def test_a_lock_of_a_reused_pid_is_taken_over_and_another_hosts_never(tmp_path):
    from fastmotive.errors import ConfigError
    from fastmotive.run.lock import RunLock
    other = subprocess.Popen(["sleep", "30"])   # alive, but neither fastmotive nor Python: a reused PID
    try:
        (tmp_path / ".lock").write_text(f"{socket.gethostname()} {other.pid}")
        RunLock(tmp_path).acquire().release()
    finally:
        other.kill()
    (tmp_path / ".lock").write_text(f"another-host {os.getpid()}")   # a shared filesystem: cannot be checked
    with pytest.raises(ConfigError, match="on host another-host .*delete"):
        RunLock(tmp_path).acquire()
    assert (tmp_path / ".lock").read_text() == f"another-host {os.getpid()}"


def test_a_full_disk_is_named(tmp_path, monkeypatch):
    import errno

    from fastmotive.errors import CheckpointError
    from fastmotive.run import checkpoint

    def full(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc] unexpected pos") from \
            OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(torch, "save", full)
    (tmp_path / "last.pt").write_bytes(b"old")
    with pytest.raises(CheckpointError, match="No space left on device.*intact"):
        checkpoint.save_atomic({"x": 1}, tmp_path / "last.pt")
    assert (tmp_path / "last.pt").read_bytes() == b"old"


def test_data_that_cannot_train_is_refused_before_any_file(tmp_path):
    import numpy as np

    from fastmotive.testing import idx_bytes, write_idx_dataset, write_image_folder
    one_class = write_image_folder(tmp_path / "folder", classes=1, per_class=8, size=(32, 32))
    refused(fastmotive("train", *FAST, "-b", "4", "--dataset", "folder", "--data-dir", one_class, "--output",
                       tmp_path / "a"),
            "at least 2")
    idx = write_idx_dataset(tmp_path / "idx", gz=False)
    (idx / "train-images-idx3-ubyte").write_bytes(idx_bytes(np.zeros((60, 0, 0), np.uint8)))
    refused(fastmotive("train", *FAST, "--dataset", "mnist", "--data-dir", idx, "--output", tmp_path / "b"),
            "at least one pixel")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_cifar_keys_of_the_wrong_type_are_named(tmp_path):
    import pickle

    from fastmotive.data import DataError, read_dataset
    from fastmotive.testing import write_cifar10
    folder = write_cifar10(tmp_path)
    batch = folder / "data_batch_1"
    with open(batch, "rb") as f:
        d = pickle.load(f, encoding="bytes")
    batch.write_bytes(pickle.dumps({k.decode(): v for k, v in d.items()}))
    with pytest.raises(DataError, match=r"'data'.*bytes"):
        read_dataset("cifar10", tmp_path)


def test_compare_refuses_a_bad_condition_before_training(tmp_path):
    refused(fastmotive("compare", "--arch", "resnet20:resnet32", "--condition", "bogus", "--output", tmp_path),
            "condition")
    assert not any(tmp_path.iterdir())


def test_initial_checkpoint_points_at_what_to_give(tmp_path):
    run = tmp_path / "out" / "src"
    assert main(["train", "--arch", "resnet20", "--epochs", "1", "--epoch-batches", "1", "--val-batches", "1",
                 "-b", "16", "--no-progress", "--output", str(tmp_path / "out"), "--experiment", "src"]) == 0
    for spec, needle in ((run, f"give {run}:base"), (run / "last.pt", f"give {run}:base"),
                         (f"{run}:motivated", f"give {run}:base")):
        out = tmp_path / f"new{len(needle)}"
        refused(fastmotive("train", *FAST, "--arch", "resnet20", "--initial-checkpoint", spec, "--output", out),
                needle)


@pytest.mark.parametrize("text, needle", [("a: [1\n", "not valid YAML"), ("- 1\n", "holds no run"),
                                          ("arch: resnet20\n", "holds no run"),
                                          ("x: !!python/object/apply:os.system ['true']\n", "not valid YAML")])
def test_a_broken_args_yaml_is_named_not_a_traceback(tmp_path, text, needle):
    run = tmp_path / "run"
    run.mkdir()
    (run / "args.yaml").write_text(text)
    for command in (["eval", run], ["export", run], ["train", "--resume", run]):
        refused(fastmotive(*command), str(run / "args.yaml"), needle)


def test_a_pickle_payload_is_refused_without_advice_to_load_it(tmp_path):
    import torch

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'ran'}",))
    torch.save({"x": Payload()}, tmp_path / "last.pt")
    from fastmotive.errors import CheckpointError
    from fastmotive.run import checkpoint
    with pytest.raises(CheckpointError, match="never unpickles") as err:
        checkpoint.load(tmp_path / "last.pt")
    assert "weights_only" not in str(err.value) and not (tmp_path / "ran").exists()


def test_timm_spellings_are_taken_where_they_mean_the_same():
    from fastmotive.cli.main import parse
    args = parse(["train", "--model", "resnet20", "--input-size", "3", "40", "40"])
    assert (args.arch, args.img_size) == ("resnet20", 40) and {"arch", "img_size"} <= set(args.explicit)
    assert parse(["train", "--model=resnet32"]).arch == "resnet32"


def test_a_run_killed_before_its_first_checkpoint_resumes_from_its_start(tmp_path):
    out = tmp_path / "out"
    assert main(["train", *FAST, "--epochs", "1", "--epoch-batches", "2", "--val-batches", "1", "--output", str(out),
                 "--experiment", "r", "--seed", "3"]) == 0
    (out / "r" / "last.pt").unlink()   # as if killed after writing args.yaml and a few log rows
    again = fastmotive("train", "--resume", out / "r")
    assert again.returncode == 0 and "no checkpoint yet" in again.stdout, again.stderr
    assert (out / "r" / "last.pt").exists()
    assert len((out / "r" / "steps.csv").read_text().splitlines()) == 1 + 2   # one run's rows, not two


def test_a_finished_run_is_extended_with_more_epochs(tmp_path):
    out = tmp_path / "out"
    flags = [*FAST, "--epochs", "1", "--epoch-batches", "2", "--val-batches", "1", "--output", str(out),
             "--experiment", "r"]
    assert main(["train", *flags]) == 0
    assert "nothing to do" in fastmotive("train", "--resume", out / "r").stdout   # finished: unchanged
    extended = fastmotive("train", "--resume", out / "r", "--epochs", "2")
    assert extended.returncode == 0 and "extended to 2 epochs" in extended.stdout, extended.stderr
    assert json.loads((out / "r" / "metrics.json").read_text())["epochs"] == 2
    assert "epochs: 2" in (out / "r" / "args.yaml").read_text()
    refused(fastmotive("train", "--resume", out / "r", "--epochs", "1"), "--epochs")   # shortening: refused


def test_optimizer_names_mean_what_they_mean_in_timm(tmp_path):
    """timm's `sgd` is SGD with Nesterov momentum (as its alias `nesterov`), `momentum` classical momentum: the
    same two steps under each name (both first losses are the initial weights', the second shows the update)."""
    import csv

    def losses(opt):
        assert main(["train", *FAST, "--opt", opt, "--max-steps", "2", "--epoch-batches", "4", "--output",
                     str(tmp_path / opt), "--experiment", "r", "--condition", "never"]) == 0
        with open(tmp_path / opt / "r" / "steps.csv") as f:
            return [row["loss"] for row in csv.DictReader(f)]
    sgd, nesterov, momentum = losses("sgd"), losses("nesterov"), losses("momentum")
    assert sgd == nesterov and sgd[0] == momentum[0] and sgd[1] != momentum[1]
