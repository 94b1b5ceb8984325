"""The family registry: each scalable family registers how to build, load and map its members (`Family`)."""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from torch import nn

from fastmotive.core.weights_map import Shape, WeightsMap, infer_map
from fastmotive.errors import ArchSpecError, ConfigError

SPEC_SYNTAX = ("BASE:MOTIVATED, e.g. efficientnet_b0:b2, resnet20:resnet32, resnet18:34, "
               "vit_tiny_patch16_224:vit_small_patch16_224 (a short second half keeps the first half's family prefix); "
               "or one model name, e.g. resnet50, to train it alone")


@dataclass(frozen=True)
class Family:
    """One scalable family: its members, how to create and load them, and its weights-map rule.

    Everything that differs between families lives here, so no code outside ``families/`` tests a family name.
    """
    name: str
    pattern: re.Pattern           # full model name; group "member" is what a short spec replaces
    members: tuple[str, ...]      # the registered model names, smallest first
    create: Callable[..., nn.Module]     # create(name, num_classes=N, **model kwargs): a randomly initialised member
    weights_map: Callable[[nn.Module, nn.Module], WeightsMap]
    load: Callable[..., nn.Module] | None = None   # load(name, path, **create kwargs); None: create + state dict
    sized_input: bool = False     # the input size is part of the model (ViT's position embedding): takes img_size
    # member -> (dropout, stochastic depth) published for it (--drop auto); None: the family takes no rates
    rates: Callable[[str], tuple[float, float]] | None = lambda name: (0.0, 0.0)
    # Function-preserving growth (`fastmotive.core.growth`, growth_init="identity"); None: the generic rule.
    # block_skip(block): True/False whether a block adds its input back (a residual), None when unknown;
    #   generic: the block's ``has_skip``, else ``downsample is None``, else unknown.
    block_skip: Callable[[nn.Module], bool | None] | None = None
    # identity_tensors(block): the block's tensor names (relative) whose zeroing makes it the identity;
    #   generic: weight and bias of its last normalisation module.
    identity_tensors: Callable[[nn.Module], list[str]] | None = None
    # embedding_producers(model): {tensor name: feature dim} of the tensors that write the residual stream
    #   (embedding) when a LayerNorm normalises it; their differential features are zeroed (an approximation).
    embedding_producers: Callable[[nn.Module], dict[str, int]] | None = None
    # --channels-last auto turns channels-last activations on for this family on the CPU, where it was measured
    # faster (docs/benchmarks.md, "Channels-last on the CPU")
    channels_last: bool = False

    def build(self, name: str, *, num_classes: int, img_size: int | None = None, **kwargs) -> nn.Module:
        """One member, randomly initialised. `img_size` reaches only families whose models fix their input size
        (callers always pass it); other kwargs go to the member's constructor (e.g. ``drop_rate``)."""
        return self.create(name, **self._model_kwargs(dict(kwargs, num_classes=num_classes, img_size=img_size)))

    def load_exported(self, name: str, path, kwargs: dict) -> nn.Module:
        """A plain module with the weights of an exported safetensors file (`kwargs`: those it was built with)."""
        kwargs = self._model_kwargs(kwargs)
        if self.load is not None:
            return self.load(name, path, **kwargs)
        from safetensors.torch import load_file
        model = self.create(name, **kwargs)
        model.load_state_dict(load_file(path))
        return model

    def regularization(self, name: str, drop, drop_path) -> dict:
        """Constructor kwargs for member `name` from ``--drop``/``--drop-path`` values, each None (the model's
        default), "auto" (the member's published rate) or a rate; timm's ``drop_rate``/``drop_path_rate``."""
        kwargs = {}
        for flag, key, index, value in (("--drop", "drop_rate", 0, drop), ("--drop-path", "drop_path_rate", 1,
                                                                             drop_path)):
            if value is None:
                continue
            if self.rates is None:
                raise ConfigError(f"{flag}: {name} ({self.name} family) has no dropout or stochastic depth "
                                  "to set; drop the flag")
            kwargs[key] = self.rates(name)[index] if value == "auto" else value
        return kwargs

    def classifier(self, model: nn.Module) -> nn.Module:
        """The member's classifier head (every family's models implement timm's ``get_classifier``)."""
        return model.get_classifier()

    def _model_kwargs(self, kwargs: dict) -> dict:
        kwargs = dict(kwargs)
        img_size = kwargs.pop("img_size", None)
        if self.sized_input and img_size is not None:
            kwargs["img_size"] = img_size
        return kwargs


class Arch(NamedTuple):
    """A parsed arch spec: the family and both full member names (unpacks as a 3-tuple)."""
    family: Family
    base: str
    motivated: str | None     # None: a single model


_FAMILIES: dict[str, Family] = {}


def register_family(name: str, *, pattern: str, members: list[str], build: Callable[..., nn.Module],
                    load: Callable[..., nn.Module] | None = None, sized_input: bool = False,
                    rates: Callable[[str], tuple[float, float]] | None = lambda name: (0.0, 0.0),
                    block_skip: Callable[[nn.Module], bool | None] | None = None,
                    identity_tensors: Callable[[nn.Module], list[str]] | None = None,
                    embedding_producers: Callable[[nn.Module], dict[str, int]] | None = None,
                    channels_last: bool = False):
    """Decorator for a family's ``weights_map(base, motivated)`` rule. A duplicate name raises.

    Args:
        build: ``build(name, num_classes=N, **kwargs)`` creates a randomly initialised member.
        load: ``load(name, path, num_classes=N, **kwargs)`` loads an exported file; None: build, then
            ``load_state_dict`` of the file.
        sized_input: the models take ``img_size`` (it fixes a tensor shape, as ViT's position embedding).
        rates: member name -> its published (dropout, stochastic depth), for ``--drop auto``; None: the
            members take neither.
        block_skip, identity_tensors, embedding_producers: growth hooks (see `Family`); None: generic rules.
        channels_last: what ``--channels-last auto`` chooses for the family on the CPU.
    """
    def wrap(weights_map):
        if name in _FAMILIES:
            raise ValueError(f"family {name!r} is registered twice")
        _FAMILIES[name] = Family(name, re.compile(pattern), tuple(members), build, weights_map, load, sized_input,
                                 rates, block_skip, identity_tensors, embedding_producers, channels_last)
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


def parse_arch(spec: str) -> Arch:
    """``"efficientnet_b0:b2"`` -> Arch(family, "efficientnet_b0", "efficientnet_b2"); a single model name
    (``"resnet50"``, a classic run) -> Arch(family, "resnet50", None)."""
    if ":" not in spec and spec:
        return Arch(family_of(spec), spec, None)
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
    if motivated_name == base_name:
        raise ArchSpecError(f"arch spec {spec!r} names {base_name} twice: the motivated model must be a larger "
                            f"member of {family.name} (members: {', '.join(family.members)})")
    return Arch(family, base_name, motivated_name)


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
