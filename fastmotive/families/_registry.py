"""Family registry: each scalable family registers how to build its members and how to map them."""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from ..errors import ArchSpecError
from ..weights_map import Shape, WeightsMap, infer_map

SPEC_SYNTAX = ("BASE:MOTIVATED, e.g. efficientnet_b0:b2, resnet20:resnet32, resnet18:34, "
               "vit_tiny_patch16_224:vit_small_patch16_224 (a short second half keeps the first half's family prefix)")


@dataclass(frozen=True)
class Family:
    name: str
    pattern: re.Pattern           # full model name; group "member" is what a short spec replaces
    members: tuple[str, ...]      # the registered model names, smallest first
    build: Callable[..., nn.Module]
    weights_map: Callable[[nn.Module, nn.Module], WeightsMap]


_FAMILIES: dict[str, Family] = {}


def register_family(name: str, *, pattern: str, members: list[str], build: Callable[..., nn.Module]):
    """Decorator for a family's ``weights_map(base, motivated)`` rule. A duplicate name raises."""
    def wrap(weights_map):
        if name in _FAMILIES:
            raise ValueError(f"family {name!r} is registered twice")
        _FAMILIES[name] = Family(name, re.compile(pattern), tuple(members), build, weights_map)
        return weights_map
    return wrap


def list_families() -> list[str]:
    return list(_FAMILIES)


def get_family(name: str) -> Family:
    try:
        return _FAMILIES[name]
    except KeyError:
        raise ArchSpecError(f"unknown family {name!r}; known: {', '.join(_FAMILIES)}") from None


def _known() -> str:
    return "; ".join(f"{f.name}: {', '.join(f.members)}" for f in _FAMILIES.values())


def family_of(model_name: str) -> Family:
    for family in _FAMILIES.values():
        if family.pattern.fullmatch(model_name):
            return family
    raise ArchSpecError(f"unknown model {model_name!r}. Known families and members: {_known()}. "
                        f"Spec syntax: {SPEC_SYNTAX}")


def parse_arch(spec: str) -> tuple[Family, str, str]:
    """``"efficientnet_b0:b2"`` -> (family, "efficientnet_b0", "efficientnet_b2")."""
    parts = spec.split(":")
    if len(parts) != 2 or not all(parts):
        raise ArchSpecError(f"malformed arch spec {spec!r}: expected {SPEC_SYNTAX}. Known: {_known()}")
    base_name, second = parts
    family = family_of(base_name)
    if family.pattern.fullmatch(second):
        motivated_name = second
    else:
        m = family.pattern.fullmatch(base_name)
        motivated_name = base_name[:m.start("member")] + second + base_name[m.end("member"):]
        if not family.pattern.fullmatch(motivated_name):
            raise ArchSpecError(f"arch spec {spec!r}: {second!r} is not a member of family {family.name} "
                                f"(members: {', '.join(family.members)}). Spec syntax: {SPEC_SYNTAX}")
    return family, base_name, motivated_name


def tensor_shapes(module: nn.Module) -> tuple[dict[str, Shape], dict[str, str]]:
    """Name -> shape and name -> "param"/"buffer" for every parameter and buffer."""
    shapes, kinds = {}, {}
    for kind, named in (("param", module.named_parameters()), ("buffer", module.named_buffers())):
        for name, t in named:
            shapes[name], kinds[name] = tuple(t.shape), kind
    return shapes, kinds


def map_by_rule(base: nn.Module, motivated: nn.Module, family: str, **rules) -> WeightsMap:
    """Infer a map between two modules with a family's rename/chunking rules."""
    base_shapes, kinds = tensor_shapes(base)
    motivated_shapes, _ = tensor_shapes(motivated)
    return infer_map(base_shapes, motivated_shapes, kinds, family=family, **rules)
