"""The weights map: which slice of each motivated tensor holds each base tensor (paper, Sec. 3).

A map is data: one `MapEntry` per base tensor naming the motivated tensor and, per dimension, the
leading slice it occupies. A dimension may be split into equal chunks (timm's fused ``qkv``: the base's
q, k and v rows each land at the start of the motivated q, k and v blocks). Motivated tensors that no
entry targets are *differential*: they keep their values across switches.
"""
from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import asdict, dataclass, field

from fastmotive.errors import WeightsMapError

Shape = tuple[int, ...]


@dataclass(frozen=True)
class MapEntry:
    base: str                 # tensor name in the base model (state_dict key)
    motivated: str            # tensor name in the motivated model
    kind: str                 # "param" or "buffer"
    chunks: tuple[int, ...]   # per dimension: number of equal chunks (1 = one leading slice)
    rule: str = "leading"     # the family rule that produced it (for describe() and errors)


def fits(entry: MapEntry, base_shape: Shape, motivated_shape: Shape) -> str | None:
    """Why `base_shape` does not nest in `motivated_shape` under `entry`, or None when it does."""
    if len(base_shape) != len(motivated_shape):
        return f"rank differs: base {tuple(base_shape)} vs motivated {tuple(motivated_shape)}"
    if len(entry.chunks) != len(base_shape):
        return f"chunks {entry.chunks} do not match rank {len(base_shape)}"
    for d, (c, b, m) in enumerate(zip(entry.chunks, base_shape, motivated_shape)):
        if b % c or m % c:
            return f"dim {d}: sizes {b} and {m} are not divisible into {c} chunks"
        if b > m:
            return f"dim {d}: base size {b} > motivated size {m} (base {tuple(base_shape)} vs motivated {tuple(motivated_shape)})"
    return None


@dataclass
class WeightsMap:
    """Where every base tensor lives inside the motivated model."""

    entries: list[MapEntry]
    differential: list[str] = field(default_factory=list)   # motivated tensors no entry targets
    family: str = "inferred"

    def to_json(self) -> str:
        return json.dumps({"family": self.family, "entries": [asdict(e) for e in self.entries],
                           "differential": self.differential}, indent=1)

    @classmethod
    def from_json(cls, text: str) -> WeightsMap:
        data = json.loads(text)
        entries = [MapEntry(e["base"], e["motivated"], e["kind"], tuple(e["chunks"]), e.get("rule", "leading"))
                   for e in data["entries"]]
        return cls(entries, list(data.get("differential", [])), data.get("family", "inferred"))

    def validate(self, base_shapes: dict[str, Shape], motivated_shapes: dict[str, Shape]) -> None:
        """Raise one WeightsMapError listing every tensor that is missing, reused or does not fit."""
        problems = []
        for name in sorted(set(base_shapes) - {e.base for e in self.entries}):
            problems.append(f"base tensor {name!r} {tuple(base_shapes[name])} has no place in the motivated model")
        targets = Counter(e.motivated for e in self.entries)
        problems += [f"motivated tensor {n!r} is the target of {c} base tensors" for n, c in targets.items() if c > 1]
        for e in self.entries:
            if e.base not in base_shapes:
                problems.append(f"{e.base!r}: no such tensor in the base model")
            elif e.motivated not in motivated_shapes:
                problems.append(f"{e.base!r} {tuple(base_shapes[e.base])} -> {e.motivated!r}: no such tensor in "
                                "the motivated model (it has no place there)")
            elif (why := fits(e, base_shapes[e.base], motivated_shapes[e.motivated])) is not None:
                problems.append(f"{e.base!r} -> {e.motivated!r} (rule {e.rule}): {why}")
        if problems:
            raise WeightsMapError(f"the {self.family} weights map does not fit ({len(problems)} problems):\n  "
                                  + "\n  ".join(problems))

    def differential_blocks(self) -> list[str]:
        """The motivated modules all of whose tensors are differential, outermost only (names, in map order).

        Derived from the names alone: every motivated tensor is an entry's target or differential, so a prefix
        (``blocks.1.2``, ``layer1.3``) is differential when no entry targets a tensor under it. A differential
        tensor directly on a module that also holds mapped tensors is no block and is not listed.
        """
        targeted = [e.motivated.split(".") for e in self.entries]
        blocks: list[str] = []
        for name in self.differential:
            parts = name.split(".")
            for depth in range(1, len(parts)):
                prefix = parts[:depth]
                if not any(t[:depth] == prefix for t in targeted):
                    block = ".".join(prefix)
                    if block not in blocks:
                        blocks.append(block)
                    break
        return blocks

    def describe(self, base_shapes: dict[str, Shape], motivated_shapes: dict[str, Shape]) -> dict:
        """Counts: tensors and elements mapped, differential tensors and elements, entries per rule."""
        mapped = sum(math.prod(base_shapes[e.base]) for e in self.entries)
        motivated_total = sum(math.prod(s) for s in motivated_shapes.values())
        return {
            "family": self.family,
            "tensors_mapped": len(self.entries),
            "elements_mapped": mapped,
            "base_elements": sum(math.prod(s) for s in base_shapes.values()),
            "motivated_elements": motivated_total,
            "differential_tensors": len(self.differential),
            "differential_elements": motivated_total - mapped,
            "entries_per_rule": dict(Counter(e.rule for e in self.entries)),
        }


def infer_map(base_shapes: dict[str, Shape], motivated_shapes: dict[str, Shape], kinds: dict[str, str], *,
              rename=lambda name: name, chunking=lambda name, ndim: (1,) * ndim, family: str = "inferred",
              rule: str = "leading") -> WeightsMap:
    """Map each base tensor to ``rename(name)`` in the motivated model, leading slices on every dim.

    Args:
        base_shapes, motivated_shapes: tensor name -> shape (parameters and buffers).
        kinds: tensor name -> "param" or "buffer" (base names).
        rename: base name -> motivated name (depth rules); returns (name, rule) or name.
        chunking: (base name, ndim) -> chunks per dim (width rules such as ViT's qkv).
    Raises:
        WeightsMapError: naming every tensor that has no place or does not fit.
    """
    entries = []
    for name, shape in base_shapes.items():
        target = rename(name)
        target, why = target if isinstance(target, tuple) else (target, rule)
        entries.append(MapEntry(name, target, kinds[name], tuple(chunking(name, len(shape))), why))
    wmap = WeightsMap(entries, family=family)
    wmap.validate(base_shapes, motivated_shapes)
    targeted = {e.motivated for e in entries}
    wmap.differential = [n for n in motivated_shapes if n not in targeted]
    return wmap


def split_chunks(chunks, base_shape, motivated_shape) -> tuple[list[int], list[int]]:
    """Shapes with each chunked dim of size n split into (chunks, n/chunks): every dim is then a leading slice."""
    b_dims, m_dims = [], []
    for c, b, m in zip(chunks, base_shape, motivated_shape):
        b_dims += [c, b // c] if c > 1 else [b]
        m_dims += [c, m // c] if c > 1 else [m]
    return b_dims, m_dims
