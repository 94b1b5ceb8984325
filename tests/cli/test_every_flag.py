"""Every ``fastmotive train`` setting is used or refused, never accepted and ignored (issue 21), family by family.

For each setting, a tiny run (resnet20:resnet32 on digits, 2 epochs of 3 batches of 8) with the flag is compared
with the same run without it (plus the flags that give it something to act on, the same in both): the flag must
change what the run records (steps.csv, summary.csv less its timings, the files written, the printed lines with
numbers blanked) or be refused in one ``fastmotive train: error:`` line, exit 2. The settings that decide how or
where a run goes, not what it computes, are listed in `EXEMPT` with why and where they are tested.
"""
import csv
import re
from pathlib import Path

import pytest

from fastmotive.cli.main import main
from fastmotive.config.train_config import SETTINGS

pytestmark = pytest.mark.slow   # about 75 tiny runs

BASE = ["--arch", "resnet20:resnet32", "-b", "8", "--epochs", "2", "--epoch-batches", "3", "--val-batches", "1",
        "--bn-calibrate", "16", "--no-progress", "--opt", "sgd", "--lr", "0.05", "--warmup-epochs", "0",
        "--condition", "streak:1"]
FOLDER = "{folder}"   # an image folder of 3 classes (written once), for the settings of image folders
STEP = ["--sched", "step", "--decay-epochs", "1"]

# setting -> (flags both runs get, the flag under test)
CASES = {
    # model and data
    "arch": ([], ["--arch", "resnet20:resnet44"]),
    "dataset": ([], ["--dataset", "folder", "--data-dir", FOLDER]),
    "data_dir": (["--dataset", "folder", "--data-dir", FOLDER], ["--data-dir", FOLDER + "-other"]),
    "img_size": ([], ["--img-size", "24"]),
    "num_classes": ([], ["--num-classes", "12"]),
    "no_flip": (["--dataset", "folder", "--data-dir", FOLDER], ["--no-flip"]),
    "skip_bad_images": ([], ["--skip-bad-images"]),   # refused on digits (image folders with bad files: tests/data)
    "head_init": ([], ["--head-init", "default"]),
    "epoch_batches": ([], ["--epoch-batches", "2"]),
    "val_batches": ([], ["--val-batches", "2"]),
    # augmentation
    "aa": ([], ["--aa", "rand-m9-n2-mstd0.5"]),
    "hflip": ([], ["--hflip", "0.5"]),
    "scale": ([], ["--scale", "0.5", "1"]),
    "ratio": ([], ["--ratio", "0.5", "2"]),
    "aug_repeats": ([], ["--aug-repeats", "2"]),
    "reprob": ([], ["--reprob", "0.5"]),
    "remode": (["--reprob", "0.5"], ["--remode", "const"]),
    "recount": (["--reprob", "0.5"], ["--recount", "3"]),
    "mixup": ([], ["--mixup", "0.8"]),
    "cutmix": ([], ["--cutmix", "1.0"]),
    "cutmix_minmax": (["--cutmix", "1.0"], ["--cutmix-minmax", "0.2", "0.8"]),
    "mixup_prob": (["--mixup", "0.8"], ["--mixup-prob", "0.5"]),
    "mixup_switch_prob": (["--mixup", "0.8", "--cutmix", "1.0"], ["--mixup-switch-prob", "0.1"]),
    "mixup_mode": (["--mixup", "0.8"], ["--mixup-mode", "elem"]),
    "mixup_off_epoch": (["--mixup", "0.8"], ["--mixup-off-epoch", "1"]),
    "bce_loss": ([], ["--bce-loss"]),
    # regularization
    "drop": ([], ["--drop", "0.5"]),
    "drop_path": ([], ["--drop-path", "0.1"]),
    "initial_checkpoint": ([], ["--initial-checkpoint", "{source}:base"]),
    # optimization
    "batch_size": ([], ["-b", "4"]),
    "opt": ([], ["--opt", "adamw"]),
    "lr": ([], ["--lr", "0.01"]),
    "momentum": ([], ["--momentum", "0.5"]),
    "weight_decay": ([], ["--weight-decay", "0.1"]),
    "decay_1d": ([], ["--decay-1d"]),
    "opt_eps": (["--opt", "adamw"], ["--opt-eps", "1e-3"]),
    "opt_betas": (["--opt", "adamw"], ["--opt-betas", "0.8", "0.9"]),
    "clip_grad": ([], ["--clip-grad", "0.1"]),
    "clip_mode": (["--clip-grad", "0.1"], ["--clip-mode", "value"]),
    "grad_accum_steps": ([], ["--grad-accum-steps", "3"]),
    "sched": ([], ["--sched", "step"]),
    "warmup_epochs": ([], ["--warmup-epochs", "1"]),
    "warmup_lr": (["--warmup-epochs", "1"], ["--warmup-lr", "0.01"]),
    "warmup_prefix": ([*STEP, "--warmup-epochs", "1"], ["--warmup-prefix"]),
    "decay_epochs": (["--sched", "step"], ["--decay-epochs", "1"]),
    "decay_rate": (STEP, ["--decay-rate", "0.5"]),
    "min_lr": ([], ["--min-lr", "0.01"]),
    "epochs": ([], ["--epochs", "1"]),
    "smoothing": ([], ["--smoothing", "0.1"]),
    "condition": ([], ["--condition", "never"]),
    "bn_calibrate": (["--growth-init", "paper"], ["--bn-calibrate", "0"]),   # identity growth: nothing stale
    "bn_calibrate_models": (["--condition", "never"], ["--bn-calibrate-models", "all"]),   # the base not stale
    "bn_calibrate_from": (["--growth-init", "paper"], ["--bn-calibrate-from", "val"]),
    "eval_interval": ([], ["--eval-interval", "2"]),
    "bn_buffers": ([], ["--bn-buffers", "keep"]),
    "growth_init": ([], ["--growth-init", "paper"]),
    "seed": ([], ["--seed", "1"]),
    # run
    "max_steps": ([], ["--max-steps", "2"]),
    "log_interval": ([], ["--log-interval", "1"]),
    "amp": ([], ["--amp"]),
    "log_tensorboard": ([], ["--log-tensorboard"]),
    "log_wandb": ([], ["--log-wandb"]),
    # distributed, in one process
    "sync_bn": ([], ["--sync-bn"]),
    "dist_bn": ([], ["--dist-bn", "none"]),
    "check_sync": ([], ["--check-sync", "1"]),
}
EXEMPT = {   # how or where, not what: the same numbers by design, each tested where named
    "loader": "which loader delivers the same batches (tests/data: the loaders agree)",
    "workers": "decoding processes of the torch loader, DALI's threads (tests/data); refused with the tensor "
               "loader (tests/cli/test_bad_input.py)",
    "switch_backend": "the switch's implementation; the three agree bitwise (tests/core/test_switch.py)",
    "compile": "torch.compile of the same model (tests/training/test_compile.py)",
    "channels_last": "memory layout of the same tensors; the same numbers to rounding "
                     "(tests/core/test_channels_last.py)",
    "device": "where it runs (here the default is the CPU already)",
    "checkpoint_every": "when last.pt is written; seen after a kill -9 (tests/cli/test_cli.py)",
    "output": "where the run directory is", "experiment": "the run directory's name",
    "resume": "continues a run (tests/cli/test_cli.py, test_bad_input.py)",
    "nproc": "processes (tests/distributed/)", "no_progress": "the progress display",
}


def test_the_table_covers_every_setting():
    assert set(CASES) | set(EXEMPT) == {s.name for s in SETTINGS}
    assert not set(CASES) & set(EXEMPT)


@pytest.fixture(scope="module")
def place(tmp_path_factory):
    from fastmotive.testing import write_image_folder
    root = tmp_path_factory.mktemp("flags")
    write_image_folder(root / "folder", classes=3, per_class=8, size=(32, 32), seed=0)
    write_image_folder(root / "folder-other", classes=3, per_class=8, size=(32, 32), seed=1)
    assert main(["train", *BASE, "--output", str(root), "--experiment", "source"]) == 0
    return root


_TIMINGS = re.compile(r"(_s|_per_sec)$")
_BASELINES: dict[tuple, tuple] = {}


def fingerprint(run: Path, out: str) -> tuple:
    """What a run recorded, less its timings: steps.csv, summary.csv, the files written, the printed lines."""
    def rows(name):
        if not (run / name).exists():
            return None
        with open(run / name) as f:
            return [{k: v for k, v in row.items() if not _TIMINGS.search(k)} for row in csv.DictReader(f)]
    files = sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file() and "events" not in p.name)
    tensorboard = any("events" in p.name for p in run.rglob("*"))
    printed = [re.sub(r"[\d.]+", "#", line.replace(str(run), "RUN")) for line in out.splitlines()
               if "warn" not in line.lower()]   # Python warns once per process, whichever run comes first
    return rows("steps.csv"), rows("summary.csv"), files, tensorboard, printed


def run(place: Path, name: str, flags: list[str], capfd) -> tuple[int, tuple | str]:
    flags = [f.format(folder=place / "folder", source=place / "source") for f in flags]
    code = main(["train", *BASE, *flags, "--output", str(place), "--experiment", name])
    out, err = capfd.readouterr()
    return code, err if code else fingerprint(place / name, out + err)   # the progress lines are on stderr


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_flag_changes_the_run_or_is_refused(place, name, capfd):
    context, flag = CASES[name]
    code, result = run(place, f"{name}-with", [*context, *flag], capfd)
    if code:
        errors = [line for line in result.splitlines() if line.startswith("fastmotive train: error: ")]
        assert code == 2 and len(errors) == 1, result
        return
    if tuple(context) not in _BASELINES:   # runs are deterministic: one baseline per context
        _BASELINES[tuple(context)] = run(place, f"{name}-without", context, capfd)
    code, without = _BASELINES[tuple(context)]
    assert code == 0, without
    assert result != without, f"{' '.join(flag)} was accepted and changed nothing"
