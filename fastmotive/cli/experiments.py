"""``fastmotive compare``, ``fastmotive transfer`` and ``fastmotive tune-k`` on the command line: their parsers, and
commands that only turn the parsed flags into a TrainConfig and call the experiment."""
from __future__ import annotations

import argparse

from fastmotive.config import settings
from fastmotive.config.recipes import resolve_config
from fastmotive.experiments.compare import ABLATIONS, compare
from fastmotive.experiments.transfer import transfer
from fastmotive.experiments.tune_k import RULES, tune_k

# Train settings each command sets itself, per run or as its own option (with its own help and default).
COMPARE_OWN = ("seed", "resume", "experiment", "output", "arch", "condition")
TUNE_K_OWN = ("resume", "experiment", "output", "arch", "condition")
_RERUN = "rerun the same command to continue: finished runs are reused, interrupted ones resumed"
_EPILOG = ("Every other flag is `fastmotive train`'s (see `fastmotive train --help`; -c CONFIG.yaml included) and "
           "applies to every run.")


class _Refused(argparse.Action):
    """A train flag this command sets itself: an argparse error (exit 2) that says what to do instead."""

    def __init__(self, option_strings, dest, hint: str, **kwargs):
        kwargs.setdefault("default", argparse.SUPPRESS)   # absent, the setting keeps its TrainConfig default
        super().__init__(option_strings, dest, nargs="?", help=argparse.SUPPRESS, **kwargs)
        self.hint = hint

    def __call__(self, parser, namespace, values, option_string=None):
        parser.error(f"{option_string} is set by this command for each run; {self.hint}")


def _ks(text: str) -> list[int]:
    try:
        ks = sorted({int(k) for k in text.split(",")})
    except ValueError:
        ks = []
    if not ks or ks[0] < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated integers >= 1, e.g. 1,2,3,4")
    return ks


def add_compare_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("compare", help="X-C vs Y-C vs X-Y (and ablations) per training FLOP, over seeds",
                       epilog=_EPILOG + " --seed and --resume are refused: compare sets them for each run.",
                       allow_abbrev=False)   # no abbreviations: --seed is not --seeds
    g = p.add_argument_group("compare")   # first in --help
    settings.add_arguments(p, exclude=COMPARE_OWN)
    g.add_argument("--arch", default=settings.DEFAULT_ARCH, help="BASE:MOTIVATED, e.g. resnet20:resnet32")
    g.add_argument("--condition", default="streak:2", help="the X-Y runs' condition (the paper's: streak:K)")
    g.add_argument("--seeds", type=int, default=3, help="seeds per configuration")
    g.add_argument("--first-seed", type=int, default=0, help="seeds are first-seed .. first-seed + seeds - 1")
    g.add_argument("--ablation", choices=ABLATIONS, default="none",
                   help="random: add experiments A (random activation) and B (matched count) per seed")
    g.add_argument("--output", default="output", help="parent folder of the comparison folder")
    g.add_argument("--experiment", default=None, help="comparison folder name (default: compare-ARCH-DATASET)")
    g.add_argument("--seed", action=_Refused, hint="use --seeds N and --first-seed S")
    g.add_argument("--resume", action=_Refused, hint=_RERUN)
    p.set_defaults(func=cmd_compare)
    return p


def _setting_value(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` for one train setting: the value read as the setting's flag reads it (``none``: None)."""
    key, sep, value = text.partition("=")
    setting = settings.BY_NAME.get(key.strip().replace("-", "_"))
    if not sep or setting is None:
        raise argparse.ArgumentTypeError(f"{text!r}: expected SETTING=VALUE with a `fastmotive train` setting, "
                                         "e.g. epochs=3 or lr=0.01")
    value = value.strip()
    try:
        if value.lower() in ("none", "null"):
            parsed = None
        elif setting.type is None:   # a switch
            parsed = {"true": True, "false": False}[value.lower()]
        elif setting.nargs == 2:
            parsed = tuple(setting.type(v) for v in value.replace(",", " ").split())
        else:
            parsed = setting.type(value)
    except (KeyError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r}: {value!r} is not a value of {setting.flag}") from None
    return setting.name, parsed


def add_transfer_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("transfer", help="fine-tune the base of X-C and of X-Y on a second dataset (paper Table 3)",
                       epilog=_EPILOG + " They are the source runs' settings (X-C and X-Y, as compare's); the "
                       "fine-tune runs take them with --finetune-config and --finetune on top. --seed and --resume are "
                       "refused.", allow_abbrev=False)
    g = p.add_argument_group("transfer")   # first in --help
    settings.add_arguments(p, exclude=COMPARE_OWN)
    g.add_argument("--arch", default=settings.DEFAULT_ARCH, help="BASE:MOTIVATED, e.g. resnet20:resnet32")
    g.add_argument("--condition", default="streak:2", help="the X-Y runs' condition (the paper's: streak:K)")
    g.add_argument("--to", required=True, metavar="DATASET", help="the dataset the bases are fine-tuned on")
    g.add_argument("--to-data-dir", default=None, metavar="DIR", help="its files (as --data-dir)")
    g.add_argument("--finetune-config", default=None, metavar="YAML|RECIPE",
                   help="settings the fine-tune runs change (a YAML file or a recipe name, e.g. paper-transfer; "
                        "arch, dataset and initial_checkpoint are set by transfer)")
    g.add_argument("--finetune", type=_setting_value, action="append", default=[], metavar="SETTING=VALUE",
                   help="one more fine-tune setting, after --finetune-config (repeatable), e.g. --finetune lr=0.01")
    g.add_argument("--seeds", type=int, default=3, help="seeds per configuration")
    g.add_argument("--first-seed", type=int, default=0, help="seeds are first-seed .. first-seed + seeds - 1")
    g.add_argument("--output", default="output", help="parent folder of the source folder")
    g.add_argument("--experiment", default=None, help="source folder name (default: compare-ARCH-DATASET, where "
                   "compare puts its runs: they are reused)")
    g.add_argument("--seed", action=_Refused, hint="use --seeds N and --first-seed S")
    g.add_argument("--resume", action=_Refused, hint=_RERUN)
    p.set_defaults(func=cmd_transfer)
    return p


def add_tune_k_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("tune-k", help="choose the condition's k by k-fold cross-validation on the training set",
                       epilog=_EPILOG + " --seed seeds the runs and the fold split; --resume is refused: tune-k "
                       "sets it for each run.", allow_abbrev=False)
    g = p.add_argument_group("tune-k")   # first in --help
    settings.add_arguments(p, exclude=TUNE_K_OWN)
    g.add_argument("--arch", default=settings.DEFAULT_ARCH, help="BASE:MOTIVATED")
    g.add_argument("--ks", type=_ks, default=[1, 2, 3, 4], help="comma-separated values of k to try (default 1,2,3,4)")
    g.add_argument("--folds", type=int, default=5, help="cross-validation folds")
    g.add_argument("--rule", default="streak", choices=RULES, help="the condition whose k is tuned")
    g.add_argument("--output", default="output", help="parent folder of the tune-k folder")
    g.add_argument("--experiment", default=None, help="folder name (default: tune-k-ARCH-DATASET)")
    g.add_argument("--resume", action=_Refused, hint=_RERUN)
    p.set_defaults(func=cmd_tune_k)
    return p


def cmd_compare(args: argparse.Namespace) -> int:
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    return 0 if compare(settings.from_namespace(args), seeds, ablation=args.ablation) is not None else 130


def cmd_transfer(args: argparse.Namespace) -> int:
    finetune = settings.read_yaml(resolve_config(args.finetune_config)) if args.finetune_config else {}
    finetune.update(args.finetune)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    return 0 if transfer(settings.from_namespace(args), seeds, args.to, args.to_data_dir, finetune) is not None \
        else 130


def cmd_tune_k(args: argparse.Namespace) -> int:
    return 0 if tune_k(settings.from_namespace(args), args.ks, folds=args.folds, rule=args.rule) is not None else 130
