"""What is done with the settings of `TrainConfig` (fastmotive/config/train_config.py): checked copies, the
args.yaml record, the ``train`` flags, YAML configs and the resume clash check.
"""
from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from fastmotive.config.setting import Setting
from fastmotive.config.train_config import BY_NAME, DEFAULT_ARCH, SETTINGS, TrainConfig
from fastmotive.errors import ConfigError

__all__ = ["ALONE", "BY_NAME", "DEFAULT_ARCH", "SETTINGS", "Setting", "TrainConfig", "add_arguments", "checked",
           "differences", "explicit_settings", "for_single_model", "from_namespace", "from_record", "read_yaml",
           "record", "replace", "resume_config", "training_names", "with_defaults", "with_keywords"]


def replace(config, **changes):
    """A copy of `config` with `changes`, each checked as a flag would be."""
    for name, value in changes.items():
        _check(name, value, origin=f"{name}=")
    return dataclasses.replace(config, **_frozen(changes))


# The README's public keyword names for settings whose flag names differ (timm's --opt, --sched).
KEYWORD_ALIASES = {"optimizer": "opt", "schedule": "sched"}


def with_keywords(config, overrides: dict, caller: str):
    """`config` (default: the settings' defaults, else checked) with keyword overrides, each checked: the
    library's keywords, TrainConfig's field names plus the aliases optimizer (opt), schedule (sched) and
    progress (not no_progress)."""
    changes = {}
    for name, value in overrides.items():
        if name == "progress":
            name, value = "no_progress", not value
        name = KEYWORD_ALIASES.get(name, name)
        if name not in BY_NAME:
            raise TypeError(f"{caller} got an unexpected keyword argument {name!r}; it takes the "
                            f"TrainConfig settings ({', '.join(BY_NAME)}) and optimizer, schedule, progress")
        if name in changes:
            raise TypeError(f"{caller} got two keywords for the setting {name!r} (an alias and its name)")
        changes[name] = value
    return replace(checked(config) if config is not None else TrainConfig(), **_today(changes))


# A model trained alone never switches and has no differential tensors to initialise ("paper" does nothing).
ALONE = {"condition": "never", "growth_init": "paper"}


def for_single_model(config, explicit, what: str):
    """`config` for one model trained alone (`what` names it): it never switches, so its condition is "never"
    and its growth init "paper" (it has no differential tensors); another value among `explicit` is refused."""
    for name, value in ALONE.items():
        if name in explicit and getattr(config, name) != value:
            raise ConfigError(f"{what} trains one model alone: {BY_NAME[name].flag} {getattr(config, name)} has "
                              "no motivated model to act on (drop it, or give BASE:MOTIVATED)")
    return replace(config, **ALONE)


def _today(values: dict) -> dict:
    """A saved or configured mapping in today's spelling: ``channels_last`` was a switch before it took
    auto/on/off (true and false read as on and off, what such a run trained with)."""
    value = values.get("channels_last")
    return {**values, "channels_last": "on" if value else "off"} if isinstance(value, bool) else values


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
    config = _today({str(k).replace("-", "_"): v for k, v in loaded.items()})
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
    saved = _today(saved)
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


# -- resume -----------------------------------------------------------------------------------------------

def resume_config(config, saved: dict, explicit: set[str], run_dir) -> Any:
    """`config` with the saved settings of the run being resumed; a flag that contradicts one is refused. The
    `kept` ones (TensorBoard, W&B, the checkpoint interval, --check-sync) come back too, unless given again."""
    saved = _frozen(_today(saved))
    kept = {s.name: saved[s.name] for s in SETTINGS if s.kept and s.name in saved and s.name not in explicit}
    config = dataclasses.replace(config, **kept)
    taken = [s.name for s in SETTINGS if s.saved and s.name in saved]
    if "epochs" in explicit and "epochs" in saved and config.epochs > saved["epochs"]:
        taken.remove("epochs")   # extending the run: --resume DIR --epochs N (the schedule spans the new length)
    clashes = [f"{BY_NAME[k].flag} {getattr(config, k)!r} (the run has {saved[k]!r})"
               for k in taken if k in explicit and saved[k] != getattr(config, k)]
    if clashes:
        raise ConfigError(f"--resume {run_dir}: these flags differ from the run's args.yaml: "
                          f"{'; '.join(clashes)}. Resume without them, or start a new run")
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
    return {**record(TrainConfig()), **_today(saved)}
