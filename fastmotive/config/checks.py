"""The checks of `fastmotive.config.settings` rows: which values a setting accepts (each returns a bool; the table says
what is expected), and the parser of the per-member rate settings."""
from __future__ import annotations

import math

from fastmotive.errors import ConfigError


def is_positive(x) -> bool:
    return x is None or x > 0


def is_non_negative(x) -> bool:
    return x is None or (math.isfinite(x) and x >= 0)


def is_finite_positive(x) -> bool:
    return math.isfinite(x) and x > 0


def is_device(name) -> bool:
    import torch
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        return False
    return device.type == "cpu" or (device.type == "cuda" and torch.cuda.is_available()
                                   and (device.index is None or device.index < torch.cuda.device_count()))


def is_folder_name(name) -> bool:
    # one folder inside --output: no separators, not . or .., and short enough for any file system
    return name not in (".", "..") and "/" not in name and "\\" not in name and 0 < len(name.encode()) <= 200


def is_condition(spec) -> bool:
    from fastmotive.conditions import parse_condition
    try:
        parse_condition(spec)
    except ConfigError:
        return False
    return True


def is_augment_policy(spec) -> bool:
    from fastmotive.data.augment.policy import parse_policy
    try:
        parse_policy(spec)
    except ConfigError:
        return False
    return True


def is_member_rates(spec) -> bool:
    try:
        parse_member_rates(spec)
    except ConfigError:
        return False
    return True


def parse_member_rates(spec):
    """``--drop``/``--drop-path``: None, "auto", or (base rate, motivated rate) from "R" or "B:M"."""
    if spec is None or spec == "auto":
        return spec
    parts = str(spec).split(":")
    try:
        rates = tuple(float(p) for p in parts)
    except ValueError:
        raise ConfigError(f"{spec!r} is not a rate, BASE:MOTIVATED or auto") from None
    if len(rates) not in (1, 2) or not all(0 <= r < 1 for r in rates):
        raise ConfigError(f"{spec!r}: expected one rate or BASE:MOTIVATED, each in [0, 1)")
    return rates * 2 if len(rates) == 1 else rates
