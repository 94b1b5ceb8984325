"""Every training setting, defined once: from this table come the ``train`` flags, the YAML config, args.yaml,
the resume clash check and the frozen `TrainConfig` that the recipe and the Trainer read.

Adding a setting is one `Setting(...)` line here plus the code that reads ``config.<name>``.
"""
from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError
from .setting_checks import (is_augment_policy, is_condition, is_device, is_folder_name, is_finite_positive,
                             is_member_rates, is_non_negative, is_positive)

DEFAULT_ARCH = "efficientnet_b0:b2"


@dataclass(frozen=True)
class Setting:
    name: str                          # attribute of TrainConfig; the flag is --name-with-dashes
    default: Any
    help: str
    type: Callable | None = None       # argparse type; None: a store_true switch (default False)
    group: str = "optimization"        # the --help section
    short: str | None = None           # a one-letter alias such as -b
    choices: tuple | None = None
    saved: bool = True                 # a resumed run takes it from its args.yaml, and a clashing flag is refused
    evaluation_only: bool = False      # changes what is measured, not what is trained: a finished run is
                                       # re-evaluated with a new value rather than refused or retrained
    check: Callable[[Any], bool] | None = None   # valid values (None passes always); `expect` says what they are
    expect: str = ""
    nargs: str | None = None           # "?" with `const`: a flag that may stand alone (--compile)
    const: Any = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


SETTINGS: tuple[Setting, ...] = (
    # model and data
    Setting("arch", DEFAULT_ARCH, "BASE:MOTIVATED, e.g. efficientnet_b0:b2, resnet20:resnet32", str, "model and data"),
    Setting("dataset", None, "digits (default, shipped with scikit-learn), cifar10, cifar100, cifar100_coarse, mnist, "
            "fashion_mnist, folder", str, "model and data"),
    Setting("data_dir", None, "where the dataset's files are", str, "model and data"),
    Setting("loader", "auto", "auto, tensor, dali or torch", str, "model and data",
            choices=("auto", "tensor", "dali", "torch")),
    Setting("img_size", None, "input side (default: the dataset's)", int, "model and data", check=is_positive,
            expect="a positive integer"),
    Setting("num_classes", None, "default: the dataset's", int, "model and data", check=is_positive,
            expect="a positive integer"),
    Setting("no_flip", False, "no random horizontal flip (as --hflip 0)", None, "model and data"),
    Setting("skip_bad_images", False, "skip image files that fail to decode (counted)", None, "model and data",
            saved=False),
    Setting("workers", 2, "data workers / DALI threads", int, "model and data", short="-j", saved=False,
            check=lambda x: x >= 0, expect="an integer >= 0"),
    Setting("head_init", "zero", "zero: zero both classifier heads (timm's EfficientNet head starts at loss ~6-10 on "
            "10 classes and learns far slower from scratch); default: the model's own init", str, "model and data",
            choices=("zero", "default")),
    Setting("epoch_batches", None, "train only the first N batches of each (shuffled) epoch: a random N x batch-size "
            "sample of the training set per epoch, to fit a CPU budget", int, "model and data", check=is_positive,
            expect="a positive integer"),
    Setting("val_batches", None, "evaluate on the first N validation batches only", int, "model and data",
            check=is_positive, expect="a positive integer"),
    # augmentation (timm's flag names; training batches only; docs/data.md)
    Setting("aa", None, "auto-augmentation: rand-m9-n2-mstd0.5 (timm RandAugment), original or v0 (timm "
            "AutoAugment), cifar10 (torchvision's CIFAR-10 AutoAugment policy)", str, "augmentation",
            check=is_augment_policy, expect="rand-m<M>-n<N>[-mstd<S>]..., original, originalr, v0, v0r or cifar10"),
    Setting("hflip", None, "probability of a horizontal flip (default: 0.5, 0 for digit datasets)", float,
            "augmentation", check=lambda x: x is None or 0 <= x <= 1, expect="in [0, 1]"),
    Setting("scale", (0.08, 1.0), "random-resized crop area range (image folders)", float, "augmentation",
            nargs=2, check=lambda v: 0 < v[0] <= v[1] <= 1, expect="two numbers 0 < MIN <= MAX <= 1"),
    Setting("ratio", (3 / 4, 4 / 3), "random-resized crop aspect-ratio range (image folders)", float,
            "augmentation", nargs=2, check=lambda v: 0 < v[0] <= v[1], expect="two numbers 0 < MIN <= MAX"),
    Setting("aug_repeats", 0, "repeated augmentation: each image appears this many times per epoch, each with "
            "its own augmentation (timm's --aug-repeats; 0 off)", int, "augmentation",
            check=lambda x: x == 0 or x >= 2, expect="0 or an integer >= 2"),
    Setting("reprob", 0.0, "random erasing probability per image", float, "augmentation",
            check=lambda x: 0 <= x <= 1, expect="in [0, 1]"),
    Setting("remode", "pixel", "random erasing fill: const, rand (per channel) or pixel (per pixel)", str,
            "augmentation", choices=("const", "rand", "pixel")),
    Setting("recount", 1, "random erasing: boxes per erased image", int, "augmentation", check=is_positive,
            expect="a positive integer"),
    Setting("mixup", 0.0, "Mixup alpha (0 off)", float, "augmentation", check=is_non_negative,
            expect="a number >= 0"),
    Setting("cutmix", 0.0, "CutMix alpha (0 off)", float, "augmentation", check=is_non_negative,
            expect="a number >= 0"),
    Setting("cutmix_minmax", None, "CutMix box size range as fractions of the image (overrides --cutmix's alpha)",
            float, "augmentation", nargs=2, check=lambda v: v is None or 0 < v[0] <= v[1] <= 1,
            expect="two numbers 0 < MIN <= MAX <= 1"),
    Setting("mixup_prob", 1.0, "probability of mixing a batch", float, "augmentation",
            check=lambda x: 0 <= x <= 1, expect="in [0, 1]"),
    Setting("mixup_switch_prob", 0.5, "probability of CutMix rather than Mixup when both are on", float,
            "augmentation", check=lambda x: 0 <= x <= 1, expect="in [0, 1]"),
    Setting("mixup_mode", "batch", "one draw per batch, per pair or per element", str, "augmentation",
            choices=("batch", "pair", "elem")),
    Setting("mixup_off_epoch", 0, "no Mixup/CutMix from this epoch on (0: never off)", int, "augmentation",
            check=lambda x: x >= 0, expect="an integer >= 0"),
    Setting("bce_loss", False, "binary cross-entropy on the (soft) targets instead of cross-entropy (timm's RSB "
            "recipes)", None, "augmentation"),
    # regularization
    Setting("drop", None, "dropout before the classifier: one rate for both, BASE:MOTIVATED, or auto (each "
            "member's own published rate; efficientnet_b0 0.2, b2 0.3); default: the model's constructor default",
            str, "regularization", check=is_member_rates, expect="RATE, BASE:MOTIVATED or auto (rates in [0, 1))"),
    Setting("drop_path", None, "stochastic depth rate: one for both, BASE:MOTIVATED, or auto (each member's own)",
            str, "regularization", check=is_member_rates, expect="RATE, BASE:MOTIVATED or auto (rates in [0, 1))"),
    Setting("initial_checkpoint", None, "start from trained weights: an exported .safetensors file, or "
            "RUN_DIR:base / RUN_DIR:motivated; the classifier is dropped when --num-classes differs", str,
            "regularization"),
    # optimization
    Setting("batch_size", 32, "images per batch", int, short="-b", check=is_positive, expect="a positive integer"),
    Setting("opt", "adamw", "sgd, adamw, rmsprop, rmsproptf, lamb", str,
            choices=("sgd", "adamw", "rmsprop", "rmsproptf", "lamb")),
    Setting("lr", 1e-3, "peak learning rate", float, check=is_finite_positive, expect="a finite number > 0"),
    Setting("momentum", 0.9, "SGD / RMSprop momentum", float, check=lambda x: 0 <= x < 1, expect="in [0, 1)"),
    Setting("weight_decay", 0.05, "weight decay (skips 1-D tensors unless --decay-1d)", float, check=is_non_negative,
            expect="a finite number >= 0"),
    Setting("decay_1d", False, "also weight-decay 1-D tensors (biases, norms)"),
    Setting("opt_eps", None, "optimizer epsilon (default: the optimizer's)", float, check=is_positive,
            expect="a number > 0"),
    Setting("opt_betas", None, "AdamW / LAMB betas", float, nargs=2, check=lambda v: v is None or
            all(0 <= b < 1 for b in v), expect="two numbers in [0, 1)"),
    Setting("clip_grad", None, "clip gradients: max norm (--clip-mode norm), max value (value) or AGC factor "
            "(agc)", float, check=is_positive, expect="a number > 0"),
    Setting("clip_mode", "norm", "gradient clipping mode", str, choices=("norm", "value", "agc")),
    Setting("grad_accum_steps", 1, "batches accumulated per optimizer step (the condition sees one loss per "
            "optimizer step; switches happen between optimizer steps)", int, check=is_positive,
            expect="a positive integer"),
    Setting("sched", "cosine", "cosine, step, constant", str, choices=("cosine", "step", "constant")),
    Setting("warmup_epochs", 1.0, "epochs of linear warmup", float, check=is_non_negative, expect="a number >= 0"),
    Setting("warmup_lr", 0.0, "lr at the start of the warmup", float, check=is_non_negative, expect="a number >= 0"),
    Setting("warmup_prefix", False, "the decay starts counting after the warmup (timm's --warmup-prefix)"),
    Setting("decay_epochs", 30.0, "step schedule: epochs between decays", float, check=is_finite_positive,
            expect="a number > 0"),
    Setting("decay_rate", 0.1, "step schedule: lr factor per decay", float, check=is_finite_positive,
            expect="a number > 0"),
    Setting("min_lr", 0.0, "cosine schedule: final lr", float, check=is_non_negative, expect="a number >= 0"),
    Setting("epochs", 12, "passes over the training set", int, check=is_positive, expect="a positive integer"),
    Setting("smoothing", 0.0, "label smoothing (0 = the paper's plain CE)", float, check=lambda x: 0 <= x < 1,
            expect="in [0, 1)"),
    Setting("condition", "streak:2", "streak:K | ema:K | valloss:K | gradnorm:K | random:P | matched:N | never | always",
            str, check=is_condition, expect="streak:K | ema:K | valloss:K | gradnorm:K | random:P | matched:N | never | "
            "always (K >= 1 and N >= 0 integers, P in [0, 1])"),
    Setting("bn_calibrate", None, "before each evaluation and at export, re-estimate both models' BatchNorm "
            "statistics from this many training images (default: a tenth of the training split, at most 2000; "
            "0: off, the paper's raw statistics; see docs/architecture.md)", int, check=lambda x: x is None or x >= 0,
            expect="an integer >= 0", evaluation_only=True),
    Setting("bn_buffers", "copy", "copy: a switch moves BatchNorm running statistics with the weights (the "
            "paper); keep: each model keeps its own, only weights and optimizer state move", str,
            choices=("copy", "keep")),
    Setting("seed", 0, "seeds the data order, the initial weights and random conditions", int),
    # run
    Setting("output", "output/train", "parent folder of run directories", str, "run", saved=False),
    Setting("experiment", None, "run directory name (default: arch-dataset-seed)", str, "run", saved=False,
            check=is_folder_name, expect="a folder name inside --output (no / or .., at most 200 bytes)"),
    Setting("resume", None, "continue the run in this directory", str, "run", saved=False),
    Setting("checkpoint_every", 0, "also checkpoint every N steps", int, "run", saved=False,
            check=lambda x: x >= 0, expect="an integer >= 0"),
    Setting("max_steps", None, "stop after N batches in all (smoke runs)", int, "run", saved=False, check=is_positive,
            expect="a positive integer"),
    Setting("log_interval", 50, "print a line every N steps when the progress bar is off", int, "run", saved=False,
            check=is_positive, expect="a positive integer"),
    Setting("device", None, "cpu, cuda, cuda:1 (default: cuda if available)", str, "run", saved=False,
            check=is_device, expect="cpu, or cuda / cuda:N on a machine with that GPU"),
    Setting("amp", False, "bf16 autocast", None, "run"),
    Setting("channels_last", False, "feed inputs in channels-last memory format", None, "run"),
    Setting("compile", None, "torch.compile both models (mode: default, reduce-overhead, max-autotune)", str, "run",
            choices=("default", "reduce-overhead", "max-autotune"), nargs="?", const="default"),
    Setting("switch_backend", None, "triton, torch or naive (default: the device's)", str, "run", saved=False,
            choices=("triton", "torch", "naive")),
    Setting("log_tensorboard", False, "also write TensorBoard event files into the run directory", None, "run",
            saved=False),
    Setting("log_wandb", False, "also log to Weights & Biases (offline unless WANDB_MODE says otherwise; needs "
            "pip install 'fastmotive[wandb]')", None, "run", saved=False),
    # distributed (docs/distributed.md)
    Setting("nproc", None, "start this many processes on this machine (torchrun's --nproc_per_node)", int,
            "distributed", saved=False, check=is_positive, expect="a positive integer"),
    Setting("sync_bn", False, "SyncBatchNorm across processes", None, "distributed"),
    Setting("dist_bn", "reduce", "BatchNorm statistics across processes before evaluation and checkpoints: "
            "reduce (average), broadcast (rank 0's) or none", str, "distributed",
            choices=("reduce", "broadcast", "none")),
    Setting("check_sync", 0, "every N steps, check that every process holds the same weights (0: off)", int,
            "distributed", saved=False, check=lambda x: x >= 0, expect="an integer >= 0"),
    Setting("no_progress", False, "no progress bar (a log line every --log-interval steps instead)", None, "run",
            saved=False),
)
BY_NAME = {s.name: s for s in SETTINGS}

TrainConfig = dataclasses.make_dataclass(
    "TrainConfig", [(s.name, Any, dataclasses.field(default=s.default)) for s in SETTINGS], frozen=True)
TrainConfig.__doc__ = "Every training setting (see `SETTINGS` for meanings and defaults); frozen."
TrainConfig.__module__ = __name__


def replace(config, **changes):
    """A copy of `config` with `changes`, each checked as a flag would be."""
    for name, value in changes.items():
        _check(name, value, origin=f"{name}=")
    return dataclasses.replace(config, **_frozen(changes))


def _frozen(values: dict) -> dict:
    """Multi-value settings as tuples (argparse and YAML give lists), so the config stays hashable and a
    saved value compares equal to a given one."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}


def checked(config):
    """`config` itself, once every value has passed its setting's check (a TrainConfig built directly is not
    checked at construction)."""
    for name, value in dataclasses.asdict(config).items():
        _check(name, value, origin=f"{name}=")
    return config


def record(config) -> dict:
    """The settings as plain values, for args.yaml (tuples as lists: YAML's safe dumper has no tuples)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}


# -- command line and YAML --------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser, exclude: tuple[str, ...] = ()) -> None:
    """Add every setting but `exclude` as a flag (timm's names), grouped as in --help, and -c CONFIG."""
    parser.add_argument("-c", "--config", help="YAML file whose keys set the defaults of these flags")
    groups: dict[str, argparse._ArgumentGroup] = {}
    for s in SETTINGS:
        if s.name in exclude:
            continue
        group = groups.setdefault(s.group, parser.add_argument_group(s.group))
        names = [s.short, s.flag] if s.short else [s.flag]
        if s.type is None:
            group.add_argument(*names, dest=s.name, action="store_true", default=s.default, help=s.help)
        else:
            group.add_argument(*names, dest=s.name, type=s.type, default=s.default, help=s.help, choices=s.choices,
                               nargs=s.nargs, const=s.const)


def explicit_settings(parser_factory: Callable[[], argparse.ArgumentParser], argv: list[str]) -> set[str]:
    """The settings given on the command line, however spelled (``--arch=x``, ``-b16``, abbreviations):
    argparse itself parses `argv` with every default suppressed, so only given flags appear."""
    parser = parser_factory()
    parser.argument_default = argparse.SUPPRESS
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    given, _ = parser.parse_known_args(argv)
    return set(vars(given)) & set(BY_NAME)


def read_yaml(path: str | Path) -> dict:
    """A YAML config's settings, checked: a mapping of known setting names (dashes or underscores)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found")
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {path} must hold a mapping of setting: value, not a "
                          f"{type(loaded).__name__}")
    config = {str(k).replace("-", "_"): v for k, v in loaded.items()}
    unknown = sorted(k for k in config if k not in BY_NAME)
    if unknown:
        raise ConfigError(f"config {path}: unknown keys {', '.join(unknown)} (settings are "
                          "`fastmotive train --help`'s flags without the dashes)")
    for name, value in config.items():
        _check(name, value, origin=f"config {path}: {name}:")
    return config


def from_namespace(args: argparse.Namespace):
    """A TrainConfig from parsed flags; settings the parser lacks keep their defaults, other attributes
    (`config`, `func`, a command's own options) are ignored."""
    values = {s.name: getattr(args, s.name, s.default) for s in SETTINGS}
    for name, value in values.items():
        _check(name, value, origin=BY_NAME[name].flag)
    return TrainConfig(**_frozen(values))


def from_record(saved: dict, source: str = "args.yaml"):
    """The TrainConfig a run recorded (its args.yaml); settings it predates keep their defaults, other keys
    (model_kwargs, git_commit, tune-k's fold) are ignored."""
    values = {s.name: saved.get(s.name, s.default) for s in SETTINGS}
    for name, value in values.items():
        _check(name, value, origin=f"{source}: {name}:")
    return TrainConfig(**_frozen(values))


def _check(name: str, value, origin: str) -> None:
    s = BY_NAME.get(name)
    if s is None:
        raise ConfigError(f"unknown setting {name!r}")
    if value is None and (s.default is None or s.nargs):
        return
    if s.type is None:
        ok = isinstance(value, bool)
        expect = "true or false"
    elif isinstance(s.nargs, int):   # a fixed number of values, e.g. --scale MIN MAX
        ok = isinstance(value, (list, tuple)) and len(value) == s.nargs and \
             all(_has_type(v, s.type) for v in value) and (s.check is None or s.check(value))
        expect = s.expect
    else:
        ok = _has_type(value, s.type) and (s.choices is None or value in s.choices) and \
             (s.check is None or s.check(value))
        expect = ("one of " + ", ".join(map(str, s.choices))) if s.choices else (s.expect or s.type.__name__)
    if not ok:
        raise ConfigError(f"{origin} {value!r} is not valid: expected {expect}")


def _has_type(value, kind) -> bool:
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def check_combinations(config) -> None:
    """Settings that are valid alone but contradict each other; one ConfigError lists every clash."""
    clashes = []
    if config.warmup_epochs > config.epochs:
        clashes.append(f"--warmup-epochs {config.warmup_epochs} is longer than --epochs {config.epochs}: the run "
                       "would end before the learning rate reaches --lr")
    if config.sched == "cosine" and config.min_lr > config.lr:
        clashes.append(f"--min-lr {config.min_lr} is above --lr {config.lr}")
    if clashes:
        raise ConfigError("; ".join(clashes))


# -- resume -----------------------------------------------------------------------------------------------

def resume_config(config, saved: dict, explicit: set[str], run_dir) -> Any:
    """`config` with the saved settings of the run being resumed; a flag that contradicts one is refused."""
    saved = _frozen(saved)
    taken = [s.name for s in SETTINGS if s.saved and s.name in saved]
    clashes = [f"{BY_NAME[k].flag} {getattr(config, k)!r} (the run has {saved[k]!r})"
               for k in taken if k in explicit and saved[k] != getattr(config, k)]
    if clashes:
        raise ConfigError(f"--resume {run_dir}: these flags differ from the run's args.yaml: {'; '.join(clashes)}. "
                          "Resume without them, or start a new run")
    return dataclasses.replace(config, **{k: saved[k] for k in taken})


def differences(expected: dict, saved: dict, names, this: str = "this one") -> list[str]:
    """'name: run has X, <this> Y' for each of `names` where a saved run differs from `expected`."""
    return [f"{k}: run has {saved.get(k)!r}, {this} {expected.get(k)!r}" for k in names
            if saved.get(k) != expected.get(k)]


def training_names() -> tuple[str, ...]:
    """The saved settings that change what is trained: a finished run is reusable when these match."""
    return tuple(s.name for s in SETTINGS if s.saved and not s.evaluation_only)


def with_defaults(saved: dict) -> dict:
    """A run's args.yaml with the settings it predates at their defaults (the behaviour it was trained with)."""
    return {**record(TrainConfig()), **saved}
