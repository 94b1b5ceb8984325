"""FLOPs accounting and the paper's efficiency measures (Acheli & Gaaloul, Sec. 4, Eqs. 1-3).

- Forward FLOPs per image of each model at the training input size, counted by fvcore's
  `FlopCountAnalysis` on the model in eval mode: one fused multiply-add is one FLOP (the convention of
  the paper's tables and of timm's model cards). Ops fvcore has no formula for count 0; they are listed
  (`FlopCount.skipped`) so a reader can judge what is missing. fvcore also ignores by design
  element-wise ops such as ReLU, pads and reshapes. A count is kept in the user cache (`fastmotive.cache`)
  under the model's structure, its modules' forward code, the input and the library versions: tracing
  efficientnet_b0 and b2 took 0.3-0.4 s of every run on a CPU.
- F_{X-Y} (Eq. 1): the average forward FLOPs per training image over a whole run: the base's FLOPs on
  the images of base steps, the motivated model's on motivated steps, divided by all images trained.
  F_{X-C} and F_{Y-C} are the plain models' FLOPs.
- ACC/FLOPs (Eq. 2): accuracy gained over X-C per FLOP added over X-C; ACC/F_Ratio (Eq. 3): the
  motivated run's ACC/FLOPs over the next-level model's. A division by zero, or a ratio whose sign means
  nothing, gives a `Quotient` with value None and the reason, never inf.

Units: the formulas take accuracies in % and FLOPs in any unit; the paper and `fastmotive compare`
use GFLOPs, so ACC/FLOPs is in accuracy points per GFLOP.
"""
from __future__ import annotations

import importlib.metadata
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from fastmotive import cache

__all__ = ["FLOPS_CONVENTION", "FlopCount", "Quotient", "acc_f_ratio", "acc_per_flops", "average_train_flops",
           "model_flops", "pair_flops", "run_flops"]

FLOPS_CONVENTION = "forward FLOPs per image, fvcore, 1 fused multiply-add = 1 FLOP, model in eval mode"


@dataclass(frozen=True)
class FlopCount:
    """Forward FLOPs of one model on one image."""
    total: int                                                   # FLOPs per image (1 FMA = 1 FLOP)
    by_operator: dict[str, int] = field(default_factory=dict)    # fvcore's operator classes: conv, linear, ...
    skipped: dict[str, int] = field(default_factory=dict)        # traced ops without a formula: op -> calls
    input_shape: tuple[int, ...] = ()                            # (1, C, H, W) the count was made at

    def to_dict(self) -> dict:
        return {"total": self.total, "by_operator": self.by_operator, "skipped": self.skipped,
                "input_shape": list(self.input_shape)}

    @classmethod
    def from_dict(cls, d: dict) -> FlopCount:
        return cls(d["total"], d["by_operator"], d["skipped"], tuple(d["input_shape"]))


@dataclass(frozen=True)
class Quotient:
    """A ratio that may be undefined: `value` is None and `reason` says why."""
    value: float | None
    reason: str | None = None

    @property
    def defined(self) -> bool:
        return self.value is not None

    def format(self, spec: str = ".3g") -> str:
        return format(self.value, spec) if self.value is not None else f"undefined ({self.reason})"

    def to_dict(self) -> dict:
        return {"value": self.value, "reason": self.reason}


# ---------------------------------------------------------------------------------------------------
# Counting
# ---------------------------------------------------------------------------------------------------

def model_flops(model: nn.Module, img_size: int | tuple[int, int], in_chans: int = 3) -> FlopCount:
    """Forward FLOPs of `model` on one `in_chans` x `img_size` image, counted by fvcore in eval mode.

    The model's weights, buffers and training flag are left as they were (eval mode updates no BN statistics,
    and the count consumes no random numbers).

    Args:
        model: any module fvcore can trace.
        img_size: side of the square input, or (height, width).
        in_chans: input channels.

    Returns:
        A FlopCount: total, per operator class, and the ops fvcore traced but could not count.
    """
    h, w = (img_size, img_size) if isinstance(img_size, int) else img_size
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    key = _cache_key(model, (1, in_chans, h, w), dtype)
    cached = cache.lookup("flops", key)
    if cached is not None:
        return FlopCount.from_dict(cached)
    count = _count(model, torch.zeros(1, in_chans, h, w, device=device, dtype=dtype))
    cache.remember("flops", key, count.to_dict())
    return count


def _count(model: nn.Module, x: torch.Tensor) -> FlopCount:
    was_training = model.training
    model.eval()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")   # tracer and torch.jit deprecation warnings; skips are returned
            from fvcore.nn import FlopCountAnalysis
            analysis = FlopCountAnalysis(model, x)
            analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            total = int(analysis.total())
            by_op = {k: int(v) for k, v in analysis.by_operator().items()}
            skipped = dict(sorted(analysis.unsupported_ops().items()))
    finally:
        model.train(was_training)
    return FlopCount(total, by_op, skipped, tuple(x.shape))


def _cache_key(model: nn.Module, shape: tuple[int, ...], dtype: torch.dtype) -> str:
    """What a count depends on: the module tree (repr: every layer's settings), every tensor's shape, each
    module class's forward code (an edited forward counts again), the input, and the versions of torch, timm
    and fvcore."""
    classes = sorted({type(m) for m in model.modules()}, key=lambda c: f"{c.__module__}.{c.__qualname__}")
    code = [(c.__module__, c.__qualname__, getattr(c.forward, "__code__", None) and c.forward.__code__.co_code)
            for c in classes]
    tensors = [(n, tuple(t.shape)) for n, t in (*model.named_parameters(), *model.named_buffers())]
    return cache.fingerprint("flops", repr(model), tensors, code, shape, dtype, _versions())


def _versions() -> list[str | None]:
    versions = []
    for package in ("torch", "timm", "fvcore"):
        try:
            versions.append(importlib.metadata.version(package))
        except importlib.metadata.PackageNotFoundError:
            versions.append(None)
    return versions


def fvcore_missing() -> str | None:
    """Why FLOPs cannot be counted here (fvcore does not import; the GPU image lacks it), or None."""
    try:
        import fvcore.nn  # noqa: F401
    except ImportError as exc:
        return f"fvcore does not import ({exc}); pip install fvcore to count FLOPs"
    return None


def pair_flops(pair, img_size: int | tuple[int, int], in_chans: int = 3) -> dict[str, FlopCount] | None:
    """`model_flops` of each member of a MotivatedPair: {"base": ..., "motivated": ...} ("base" alone for a
    single model); None where fvcore is missing (`fvcore_missing`), so a run trains without it."""
    if fvcore_missing() is not None:
        return None
    return {m: model_flops(pair.model(m), img_size, in_chans) for m in pair.members}


# ---------------------------------------------------------------------------------------------------
# F_{X-Y} from a run's step log (Eq. 1)
# ---------------------------------------------------------------------------------------------------

def average_train_flops(steps: Iterable[dict], base_flops: float, motivated_flops: float) -> float:
    """F_{X-Y}: average forward FLOPs per training image over a run.

    Args:
        steps: the step log (`History.steps` or rows of steps.csv); each row needs ``active`` ("base" or
            "motivated") and ``images`` (the batch size, so unequal batches weigh by their images).
        base_flops, motivated_flops: forward FLOPs per image of each model (F_{X-C}, F_{Y-C}).

    Returns:
        sum(images * F(active)) / sum(images). With integer FLOPs a run of base steps only gives exactly
        F_{X-C}.

    Raises:
        ValueError: an empty log, a row without images, or an unknown active model.
    """
    images = {"base": 0, "motivated": 0}
    for row in steps:
        active, n = row.get("active"), int(row.get("images") or 0)
        if active not in images:
            raise ValueError(f"step log row {row!r}: active must be 'base' or 'motivated'")
        if n <= 0:
            raise ValueError(f"step log row {row!r}: 'images' must be the batch size (> 0)")
        images[active] += n
    total = images["base"] + images["motivated"]
    if total == 0:
        raise ValueError("empty step log: F_{X-Y} needs at least one trained step")
    return (images["base"] * base_flops + images["motivated"] * motivated_flops) / total


def run_flops(steps: list[dict], flops: dict[str, FlopCount]) -> dict:
    """The FLOPs figures every run records in metrics.json (see `RunDir.write_metrics`)."""
    base = flops["base"].total
    motivated = flops["motivated"].total if "motivated" in flops else None   # None: a single model
    n_motivated = sum(int(s["images"]) for s in steps if s["active"] == "motivated")
    n_all = sum(int(s["images"]) for s in steps)
    return {
        "flops_convention": FLOPS_CONVENTION,
        "base_flops": base, "motivated_flops": motivated,
        "train_flops_per_image": average_train_flops(steps, base, motivated or base) if steps else None,  # F_{X-Y}
        "motivated_image_fraction": n_motivated / n_all if n_all else None,
        "flops_skipped_ops": {m: count.skipped for m, count in flops.items()},
    }


# ---------------------------------------------------------------------------------------------------
# The efficiency measures (Eqs. 2-3)
# ---------------------------------------------------------------------------------------------------

def acc_per_flops(acc: float, acc_ref: float, flops: float, flops_ref: float, what: str = "run") -> Quotient:
    """ACC/FLOPs = (acc - acc_ref) / (flops - flops_ref): accuracy gained per FLOP added over the reference.

    With acc_ref, flops_ref = X-C this is ACC/FLOPs_{X-Y-B} (acc, flops = X-Y-B's accuracy, F_{X-Y}) or
    ACC/FLOPs_{Y-C} (Y-C's accuracy and FLOPs). Undefined (value None) when the FLOPs are equal: the run
    added no FLOPs (e.g. no motivated step), so there is nothing to divide by.
    """
    if acc is None or acc_ref is None:
        return Quotient(None, f"{what}: no accuracy (no epoch finished)")
    if flops == flops_ref:
        return Quotient(None, f"{what}: FLOPs equal the reference's ({flops:g}); no motivated step, so no FLOPs "
                              "were added")
    return Quotient((acc - acc_ref) / (flops - flops_ref))


def acc_f_ratio(acc_xyb: float, acc_xc: float, acc_yc: float, f_xy: float, f_xc: float, f_yc: float,
                what: str = "X-Y-B") -> dict:
    """ACC/FLOPs_{X-Y-B}, ACC/FLOPs_{Y-C} and their quotient ACC/F_Ratio (the paper's Eqs. 2-3).

    Args:
        acc_xyb: the base's accuracy after motivated training (%); acc_xc, acc_yc: the base's and the
            next-level model's after classical training (%).
        f_xy: F_{X-Y}, the motivated run's average forward FLOPs per image; f_xc, f_yc: the plain models'.
        what: the motivated run's name in the reasons (the ablations reuse the formula).

    Returns:
        {"acc_flops_xyb": Quotient, "acc_flops_yc": Quotient, "ratio": Quotient}. The ratio is undefined
        when either slope is, and when ACC/FLOPs_{Y-C} <= 0: the next-level model gained nothing over the
        base, so "how many times more efficient" has no meaning (and dividing by it flips or blows up signs).
    """
    xyb = acc_per_flops(acc_xyb, acc_xc, f_xy, f_xc, f"{what} vs X-C")
    yc = acc_per_flops(acc_yc, acc_xc, f_yc, f_xc, "Y-C vs X-C")
    if not xyb.defined:
        ratio = Quotient(None, xyb.reason)
    elif not yc.defined:
        ratio = Quotient(None, yc.reason)
    elif yc.value <= 0:
        ratio = Quotient(None, f"ACC/FLOPs_Y-C = {yc.value:.3g} <= 0: the next-level model did not beat the base "
                               "trained classically, so the ratio has no meaning")
    else:
        ratio = Quotient(xyb.value / yc.value)
    return {"acc_flops_xyb": xyb, "acc_flops_yc": yc, "ratio": ratio}
