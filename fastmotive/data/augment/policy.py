"""``--aa`` specs: what an auto-augmentation policy is, parsed once, for the device batch and the PIL workers.

Accepted forms (timm's own strings, parsed by timm's own parser so they mean exactly what they mean in timm):
- ``rand-m9-n2-mstd0.5`` and friends: timm RandAugment. Sections: ``m<M>`` magnitude (default 10), ``n<N>`` ops
  per image (2), ``p<P>`` probability of each op (0.5), ``mstd<S>`` magnitude noise std (> 100: uniform in
  [0, M]), ``mmax<X>`` magnitude clamp (10), ``inc<0|1>`` the "increasing" op variants, ``tweights`` timm's
  weighted op choice;
- ``original``, ``originalr``, ``v0``, ``v0r`` (optionally ``-mstd<S>``): timm AutoAugment ImageNet policies;
- ``cifar10``: torchvision's ``AutoAugmentPolicy.CIFAR10`` (timm has no CIFAR policy), with torchvision's
  magnitude bins.

`parse_policy` raises `ConfigError` naming the spec and listing these forms. timm's AugMix and 3-Augment sets
(``augmix-...``, ``rand-t3a``, ``3a``) are refused: their blur ops have no batched version here.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from fastmotive.data.augment.levels import TIMM_LEVELS, TORCHVISION_LEVELS
from fastmotive.errors import ConfigError

AA_FORMS = ("rand-m<M>-n<N>[-mstd<S>][-mmax<X>][-inc<0|1>][-p<P>][-tweights] (timm RandAugment, e.g. "
            "rand-m9-n2-mstd0.5), original, originalr, v0 or v0r [-mstd<S>] (timm AutoAugment), or cifar10 "
            "(torchvision's CIFAR-10 AutoAugment policy)")
AUTO_POLICIES = ("original", "originalr", "v0", "v0r")
_NUMBER = r"\d+(\.\d*)?|\.\d+"
_RAND_SECTION = re.compile(rf"(m|n|mmax)\d+|(p|mstd)({_NUMBER})|inc[01]|tweights")
_AUTO_SECTION = re.compile(rf"mstd({_NUMBER})")


@dataclass(frozen=True)
class PolicyOp:
    """One op of a policy: timm's (or torchvision's) op name, the probability of applying it, and its magnitude
    (timm: level 0-10; torchvision: bin index 0-9, 0 for ops without magnitude)."""
    name: str
    prob: float
    magnitude: float


@dataclass(frozen=True)
class AugmentPolicy:
    """A parsed ``--aa`` spec.

    RandAugment (``kind`` "rand"): each image draws ``layers`` ops from ``choices`` (uniformly with replacement,
    or with ``weights`` without replacement, as timm), each applied with its probability. AutoAugment (``kind``
    "auto", ``subpolicies``): each image draws one sub-policy uniformly and applies its ops in order, each with its
    probability. ``family`` names the magnitude scale: ``timm`` (`aug_levels.TIMM_LEVELS`) or ``torchvision``.
    Magnitudes get Gaussian noise of std ``magnitude_std`` (inf: uniform in [0, M]) and are clamped to
    [0, ``magnitude_max``], timm's `AugmentOp`.
    """
    spec: str
    kind: str
    family: str
    choices: tuple[PolicyOp, ...] = ()
    weights: tuple[float, ...] | None = None
    layers: int = 0
    subpolicies: tuple[tuple[PolicyOp, ...], ...] = ()
    magnitude_std: float = 0.0
    magnitude_max: float = 10.0

    @property
    def op_names(self) -> tuple[str, ...]:
        """Every op name the policy can apply, each once, in first-use order."""
        ops = self.choices + tuple(op for sub in self.subpolicies for op in sub)
        return tuple(dict.fromkeys(op.name for op in ops))

    def pil_transform(self, img_size: int, mean):
        """The per-image PIL transform that timm's ``create_transform(auto_augment=spec)`` builds (torchvision's
        ``AutoAugment`` for ``cifar10``): bilinear resampling, the dataset mean as fill, translate_const
        ``int(0.45 img_size)``. Its randomness comes from Python's `random` and numpy's and torch's global
        generators: run it inside `rng.global_rngs_seeded`."""
        fill = fill_color(mean)
        if self.family == "torchvision":
            from torchvision.transforms import AutoAugment, AutoAugmentPolicy, InterpolationMode
            return AutoAugment(AutoAugmentPolicy.CIFAR10, InterpolationMode.BILINEAR, fill=list(fill))
        from PIL import Image
        from timm.data.auto_augment import auto_augment_transform, rand_augment_transform
        hparams = {"translate_const": int(img_size * 0.45), "img_mean": fill, "interpolation": Image.BILINEAR}
        make = rand_augment_transform if self.kind == "rand" else auto_augment_transform
        transform = make(self.spec, hparams)
        ops = transform.ops if self.kind == "rand" else [op for sub in transform.policy for op in sub]
        for op in ops:  # Pillow >= 10 refuses 0 bits, which timm's levels give (v0's Posterize 2, inc1's m10)
            if op.name.startswith("Posterize"):
                op.aug_fn = _posterize
        return transform


def _posterize(img, bits_to_keep, **_):
    """timm's posterize on PIL, with 0 bits giving black as older Pillow (and the batched kernel) do."""
    from PIL import ImageOps
    if bits_to_keep >= 8:
        return img
    return img.point(lambda v: 0) if bits_to_keep <= 0 else ImageOps.posterize(img, bits_to_keep)


def fill_color(mean) -> tuple[int, int, int]:
    """timm's fill for geometric ops: the dataset mean on the 0-255 scale."""
    return tuple(min(255, round(255 * m)) for m in mean)


def parse_policy(spec: str) -> AugmentPolicy:
    """The policy of an ``--aa`` spec; `ConfigError` (naming the spec and the valid forms) when it is not one."""
    if not isinstance(spec, str) or not spec:
        raise ConfigError(f"--aa {spec!r} is not an augmentation policy; expected {AA_FORMS}")
    return _parse(spec)


@lru_cache(maxsize=32)
def _parse(spec: str) -> AugmentPolicy:
    head, *sections = spec.split("-")
    if spec == "cifar10":
        return _cifar10()
    if head == "rand" and all(_RAND_SECTION.fullmatch(s) for s in sections):
        policy = _from_timm(spec, rand=True)
    elif head in AUTO_POLICIES and all(_AUTO_SECTION.fullmatch(s) for s in sections):
        policy = _from_timm(spec, rand=False)
    else:
        raise ConfigError(f"--aa {spec!r} is not an augmentation policy; expected {AA_FORMS}")
    missing = [n for n in policy.op_names if n not in TIMM_LEVELS]
    if missing:
        raise ConfigError(f"--aa {spec!r} uses op(s) {', '.join(missing)} that fastmotive's batched augmentation "
                          f"lacks; expected {AA_FORMS}")
    return policy


def _from_timm(spec: str, rand: bool) -> AugmentPolicy:
    """Run timm's own parser and read back its op table (names, probabilities, magnitudes, noise)."""
    from timm.data.auto_augment import auto_augment_transform, rand_augment_transform
    try:
        transform = rand_augment_transform(spec, {}) if rand else auto_augment_transform(spec, {})
    except (AssertionError, ValueError, KeyError) as e:
        raise ConfigError(f"--aa {spec!r}: timm rejects it ({type(e).__name__}: {e}); expected {AA_FORMS}") from None
    ops = transform.ops if rand else [op for sub in transform.policy for op in sub]
    std = ops[0].magnitude_std if ops else 0.0
    top = (ops[0].magnitude_max if ops else None) or 10.0
    as_ops = lambda seq: tuple(PolicyOp(op.name, float(op.prob), float(op.magnitude)) for op in seq)  # noqa: E731
    if rand:
        weights = None if transform.choice_weights is None else tuple(map(float, transform.choice_weights))
        return AugmentPolicy(spec, "rand", "timm", as_ops(transform.ops), weights, transform.num_layers,
                             magnitude_std=std, magnitude_max=float(top))
    return AugmentPolicy(spec, "auto", "timm", subpolicies=tuple(as_ops(sub) for sub in transform.policy),
                         magnitude_std=std, magnitude_max=float(top))


def _cifar10() -> AugmentPolicy:
    """torchvision's CIFAR-10 policy table; ops without a magnitude get bin 0 (their argument is unused)."""
    from torchvision.transforms import AutoAugment, AutoAugmentPolicy
    table = AutoAugment(AutoAugmentPolicy.CIFAR10).policies
    subs = tuple(tuple(PolicyOp(name, float(p), float(m or 0)) for name, p, m in sub) for sub in table)
    policy = AugmentPolicy("cifar10", "auto", "torchvision", subpolicies=subs)
    assert all(n in TORCHVISION_LEVELS for n in policy.op_names), policy.op_names
    return policy
