"""Function-preserving growth: initialise a pair's differential parts so that, right after the first switch up,
the motivated model computes the base's function (``growth_init="identity"``; Net2Net, timm's ``zero_init_last``).

Three rules, applied in place to the motivated model's tensors (views into the arena):

- width: in every mapped ``nn.Conv*``/``nn.Linear`` weight, the entries that read a differential input
  channel (beyond the base's slice, per chunk for ``qkv``) into a mapped output are zeroed. Differential
  channels then never reach mapped outputs; they still compute (and learn) from mapped ones.
- depth: every differential block (`WeightsMap.differential_blocks`, a ``Sequential`` of them counts block by
  block) must add its input back (family hook ``block_skip``); its last normalisation's scale and shift, or
  the family's ``identity_tensors``, are zeroed so it is the identity. A block without a skip raises.
- embeddings under a LayerNorm (ViT): a LayerNorm over widened features mixes the new features into the
  statistics of the old ones, so no rule independent of the base's values keeps the function. Default
  approximation: the family's ``embedding_producers`` (patch embedding, cls/position embedding, attention and
  MLP output rows) get their differential features zeroed, so those features are exactly 0 in the residual
  stream; each LayerNorm then sees D_b real features and D_m - D_b zeros (mean scaled by D_b/D_m, variance
  changed). A warning names the LayerNorms. With ``mirror=True`` and D_m a multiple k of D_b, the differential
  features are instead k - 1 copies of the base's (the producers' rows copied from the base's current values):
  every LayerNorm sees the same mean and variance and the function is kept, but only if the base does not
  change between `init_growth` and the switch up (call it right before).

``init_growth(pair, "paper")`` does nothing (the paper's random differential init).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.modules.batchnorm import _NormBase
from torch.nn.modules.conv import _ConvNd

from fastmotive.core.weights_map import split_chunks
from fastmotive.errors import ConfigError

__all__ = ["GROWTH_INITS", "GrowthReport", "differential_blocks", "init_growth"]

GROWTH_INITS = ("paper", "identity")
_NORMS = (_NormBase, nn.LayerNorm, nn.GroupNorm)


@dataclass
class GrowthReport:
    """What `init_growth` did: tensors zeroed (name -> elements), blocks made identity, approximations."""
    mode: str
    zeroed: dict[str, int] = field(default_factory=dict)
    identity_blocks: list[str] = field(default_factory=list)
    approximations: list[str] = field(default_factory=list)
    mirrored: list[str] = field(default_factory=list)   # producers given copies of the base's rows (mirror=True)
    exact: bool = True          # False: an approximation was taken, or a block was left as is

    def summary(self) -> dict:
        """Counts for `pair.describe()`-style output."""
        return {"growth_init": self.mode, "tensors_zeroed": len(self.zeroed),
                "elements_zeroed": sum(self.zeroed.values()), "identity_blocks": len(self.identity_blocks),
                "mirrored": len(self.mirrored), "exact": self.exact, "approximations": list(self.approximations)}

    def _zeroed(self, name: str, n: int) -> None:
        if n:
            self.zeroed[name] = self.zeroed.get(name, 0) + n


def differential_blocks(pair) -> list[str]:
    """The motivated model's differential blocks: the map's outermost all-differential modules, with a
    ``Sequential``/``ModuleList`` of them (a whole extra stage) listed child by child."""
    modules = dict(pair.motivated.named_modules())
    out: list[str] = []

    def add(name: str) -> None:
        module = modules[name]
        if isinstance(module, (nn.Sequential, nn.ModuleList, nn.ModuleDict)):
            for child, sub in module.named_children():
                if any(True for _ in sub.parameters()) or any(True for _ in sub.buffers()):
                    add(f"{name}.{child}")
        else:
            out.append(name)
    for block in pair.weights_map.differential_blocks():
        if block in modules:
            add(block)
    return out


def init_growth(pair, mode: str, *, mirror: bool = False) -> GrowthReport:
    """Initialise `pair`'s differential parts for growth mode `mode` (one of `GROWTH_INITS`), in place.

    Call it while the base is active, before the first switch up (the rules touch only entries the switch
    never writes, so any time before it works). `mirror`: fill widened LayerNorm'd embeddings with copies of
    the base's features (exact, but only for the base's current values; see the module docstring). Returns a
    `GrowthReport`; warns for every approximation.
    Raises:
        ConfigError: an unknown mode, a single-model pair, or a differential block without a residual skip.
    """
    if mode not in GROWTH_INITS:
        raise ConfigError(f"unknown growth init {mode!r}; choices: {', '.join(GROWTH_INITS)}")
    report = GrowthReport(mode)
    if mode == "paper":
        return report
    if pair.motivated is None:
        raise ConfigError("growth init 'identity' needs a pair: this single-model run has no motivated model")
    family = pair.family
    with torch.no_grad():
        mixing = _width(pair, report)
        mirrored = _embeddings(pair, report, getattr(family, "embedding_producers", None), mirror)
        if mixing and not mirrored:
            _warn(report, f"{len(mixing)} LayerNorm/GroupNorm tensors normalise over widened features ("
                          f"{', '.join(mixing[:3])}{', ...' if len(mixing) > 3 else ''}): their statistics mix the "
                          "new features into the old ones, so the base's function cannot be kept exactly")
        _depth(pair, report, getattr(family, "block_skip", None) or residual_skip,
               getattr(family, "identity_tensors", None) or last_norm_tensors)
    return report


# -- width ------------------------------------------------------------------------------------------------
def _width(pair, report: GrowthReport) -> list[str]:
    """Zero [mapped out, differential in] of every widened conv/linear; returns the widened LayerNorms."""
    motivated = pair.motivated
    modules = dict(motivated.named_modules())
    base_shapes = {n: tuple(t.shape) for n, t in pair.base.named_parameters()}
    mixing = []    # LayerNorm/GroupNorm over widened features
    for e in pair.weights_map.entries:
        owner, _, attr = e.motivated.rpartition(".")
        module = modules.get(owner)
        if e.kind != "param" or module is None:
            continue
        if isinstance(module, _NORMS) and not isinstance(module, _NormBase) and attr == "weight":
            if tuple(module.weight.shape) != base_shapes[e.base]:
                mixing.append(f"{e.motivated} {base_shapes[e.base]}->{tuple(module.weight.shape)}")
            continue
        if attr != "weight" or not isinstance(module, (_ConvNd, nn.Linear)):
            continue
        weight, bshape = module.weight, base_shapes[e.base]
        if weight.dim() < 2 or bshape[1] == weight.shape[1]:
            continue   # no differential input (depthwise convs: in-dim 1)
        if isinstance(module, _ConvNd) and (module.groups > 1 or module.transposed):
            _warn(report, f"{'transposed' if module.transposed else 'grouped'} conv {owner!r} is widened on its "
                          "input: its differential inputs were left as they are")
            continue
        if tuple(bshape[2:]) != tuple(weight.shape[2:]):
            _warn(report, f"{e.motivated!r}: kernel {tuple(weight.shape[2:])} differs from the base's "
                          f"{tuple(bshape[2:])}: a leading slice does not keep the base's function")
        _, m_dims = split_chunks(e.chunks, bshape, tuple(weight.shape))
        index: list[slice] = []
        for d, (c, b) in enumerate(zip(e.chunks, bshape)):
            cut = b // c
            sl = slice(0, cut) if d == 0 else slice(cut, None) if d == 1 else slice(None)
            index += [slice(None), sl] if c > 1 else [sl]
        region = weight.view(m_dims)[tuple(index)]
        region.zero_()
        report._zeroed(e.motivated, region.numel())
    return mixing


# -- embeddings under a LayerNorm (approximate) -------------------------------------------------------------
def _embeddings(pair, report: GrowthReport, producers, mirror: bool) -> bool:
    """Zero (or, `mirror`, fill with copies of the base's rows) the producers' differential features; True when
    mirrored (the LayerNorms then see the base's statistics)."""
    if producers is None:
        return False
    params = dict(pair.motivated.named_parameters())
    mapped = {e.motivated: e for e in pair.weights_map.entries}
    base = dict(pair.base.named_parameters())
    todo = []    # (name, tensor, feature dim, base tensor or None)
    for name, dim in producers(pair.motivated).items():
        if name in params:
            t = params[name]
            b = base[mapped[name].base] if name in mapped else None
            if b is None or b.shape[dim % t.dim()] != t.shape[dim % t.dim()]:
                todo.append((name, t, dim % t.dim(), b))
    if not todo:
        return False
    if mirror and all(b is None or t.shape[d] % b.shape[d] == 0 for _, t, d, b in todo):
        for name, t, d, b in todo:
            start = 0 if b is None else b.shape[d]
            t.narrow(d, start, t.shape[d] - start).zero_()
            for i in range(1, 1 if b is None else t.shape[d] // b.shape[d]):
                t.narrow(d, i * b.shape[d], b.shape[d])[tuple(slice(0, s) for s in b.shape)].copy_(b)
            report.mirrored.append(name)
        return True
    if mirror:
        _warn(report, "mirror=True: the widened embedding is not a multiple of the base's; zeroed instead")
    names = []
    for name, t, d, b in todo:
        start = 0 if b is None else b.shape[d]
        t.narrow(d, start, t.shape[d] - start).zero_()
        report._zeroed(name, t.numel() // t.shape[d] * (t.shape[d] - start))
        names.append(name)
    if names:
        note = (f"differential embedding features zeroed where they are produced ({len(names)} tensors: "
                f"{', '.join(names[:4])}{', ...' if len(names) > 4 else ''}): they are exactly 0 in the residual "
                "stream, so each LayerNorm sees the base's features plus zeros (mean x D_b/D_m, variance changed)"
                " and the motivated model only approximates the base")
        report.approximations.append(note)
        _warn(report, note)


# -- depth ------------------------------------------------------------------------------------------------
def residual_skip(block: nn.Module) -> bool | None:
    """Generic: timm's ``has_skip``; else no ``downsample`` (timm ResNet blocks); else None (unknown)."""
    if isinstance(getattr(block, "has_skip", None), bool):
        return block.has_skip
    if hasattr(block, "downsample"):
        return block.downsample is None
    return None


def last_norm_tensors(block: nn.Module) -> list[str]:
    """Generic: weight and bias of the block's last normalisation module (in registration order)."""
    norms = [n for n, m in block.named_modules() if isinstance(m, _NORMS) and getattr(m, "weight", None) is not None]
    if not norms:
        return []
    prefix = f"{norms[-1]}." if norms[-1] else ""
    return [f"{prefix}weight"] + ([f"{prefix}bias"] if getattr(block.get_submodule(norms[-1]), "bias", None)
                                  is not None else [])


def _depth(pair, report: GrowthReport, skip, identity) -> None:
    modules = dict(pair.motivated.named_modules())
    for name in differential_blocks(pair):
        block = modules[name]
        has_skip = skip(block)
        if has_skip is False:
            raise ConfigError(f"differential block {name!r} ({type(block).__name__}) has no residual connection "
                              "(its output is not its input plus a branch), so it cannot start as the identity; "
                              "use growth_init 'paper' or a map whose differential blocks keep their input's shape")
        if has_skip is None:
            _warn(report, f"cannot tell whether differential block {name!r} ({type(block).__name__}) has a "
                          "residual connection; left as it is, so the base's function is not kept (give its "
                          "family a block_skip hook)")
            continue
        params = dict(block.named_parameters())
        targets = identity(block)
        if not targets or any(t not in params for t in targets):
            raise ConfigError(f"differential block {name!r} ({type(block).__name__}): no tensors to zero to make it "
                              f"the identity (found {targets}); give its family an identity_tensors hook")
        for t in targets:
            params[t].zero_()
            report._zeroed(f"{name}.{t}", params[t].numel())
        report.identity_blocks.append(name)


def _warn(report: GrowthReport, message: str) -> None:
    report.exact = False
    if message not in report.approximations:
        report.approximations.append(message)
    warnings.warn(message, stacklevel=4)  # the caller of init_growth
