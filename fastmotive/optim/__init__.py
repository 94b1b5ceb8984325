"""Optimizers that update one flat segment of the arena in a few whole-segment tensor ops.

Algorithm 1 of Acheli & Gaaloul ("Motivation is Something You Need") steps the active model's own
optimizer after each batch. Here each model's parameters, gradients and optimizer state rows are
packed in one flat segment, so an update is a handful of in-place ops on 1-D tensors, never a loop
over the model's tensors. The arithmetic is the single-tensor path of each reference, op for op,
so a segment follows the reference bit for bit (tests/optim/test_optim.py); AdamW runs torch's fused kernel
over the segment instead where torch has one (to a few ulps of ``torch.optim.AdamW(fused=True)``; its
``fused=False`` is the single-tensor path):

- ``sgd`` (alias ``nesterov``), ``momentum``: ``torch.optim.SGD`` (momentum, dampening 0, L2 weight decay added
  to the grad), with Nesterov momentum (``sgd``) or classical momentum (``momentum``), as timm names them.
- ``adamw``: ``torch.optim.AdamW`` (decoupled weight decay).
- ``rmsprop``: ``torch.optim.RMSprop`` (eps outside the sqrt, centered=False).
- ``rmsproptf``: ``timm.optim.RMSpropTF`` (eps inside the sqrt, square_avg starts at ones,
  lr in the momentum buffer).
- ``lamb``: ``timm.optim.Lamb`` (bias correction, global grad-norm clipping, per-tensor trust ratio
  on the tensors that are weight decayed).

The step count is the global one, given to ``step``: the state rows are the whole per-model state,
so the switch can carry it from one model to the other by copying the rows named in
``OptimInfo.state_rows``. Weight decay follows timm's default grouping: no decay on 1-D tensors
and biases unless ``decay_1d=True``. See docs/optimizers-and-conditions.md.
"""

from __future__ import annotations

from collections.abc import Collection

from fastmotive.core.segment import Segment, TensorSlot
from fastmotive.optim._segment_ops import _check_segment
from fastmotive.optim.info import OptimInfo, SegmentOptimizer
from fastmotive.optim.registry import OPTIMIZERS

ArenaOptimizer = SegmentOptimizer   # the name the trainer and the docs used for the optimizers' interface

__all__ = [
    "OPTIMIZERS",
    "ArenaOptimizer",
    "OptimInfo",
    "SegmentOptimizer",
    "Segment",
    "TensorSlot",
    "create_optimizer",
]


def create_optimizer(name: str, segment: Segment, *, lr: float, weight_decay: float,
                     momentum: float = 0.9, nesterov: bool | None = None, betas: tuple[float, float] = (0.9, 0.999),
                     eps: float | None = None, alpha: float | None = None, decay_1d: bool = False,
                     no_weight_decay: Collection[str] = (), **extra) -> ArenaOptimizer:
    """Create the optimizer `name` on `segment`.

    Arguments an optimizer has no use for are ignored (momentum for adamw, betas for sgd), as timm's
    factory drops them.

    Args:
        name: one of OPTIMIZERS: "sgd", "momentum", "nesterov", "adamw", "rmsprop", "rmsproptf", "lamb".
        segment: the model's segment; its state rows must hold OPTIMIZERS[name].state_rows in that order.
        lr: the initial learning rate; validated here, each step takes the schedule's lr.
        weight_decay: L2 penalty (sgd, rmsprop, rmsproptf, lamb) or decoupled decay (adamw); required, no
            default here: its default is the one in fastmotive.config.settings.
        momentum: sgd, rmsprop, rmsproptf.
        nesterov: sgd, momentum, nesterov; None takes the name's (timm's): True for sgd and nesterov, False for
            momentum.
        betas: adamw, lamb.
        eps: adamw, rmsprop, rmsproptf, lamb; None takes OPTIMIZERS[name].defaults["eps"].
        alpha: smoothing constant of rmsprop and rmsproptf; None takes timm's 0.9.
        decay_1d: also decay 1-D tensors and biases (timm excludes them by default).
        no_weight_decay: fnmatch patterns of slot names never decayed (timm's model.no_weight_decay()).
        **extra: lamb: max_grad_norm (None disables clipping), trust_clip, always_adapt; adamw: fused (default
            True: torch's fused kernel where it has one; False: the single-tensor path, bit for bit).

    Returns:
        The optimizer, bound to `segment`.

    Raises:
        ValueError: unknown name, unknown extra argument, bad hyper-parameter or a segment it cannot update.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of: {', '.join(OPTIMIZERS)}")
    info = OPTIMIZERS[name]
    unknown = sorted(set(extra) - set(info.extra))
    if unknown:
        raise ValueError(
            f"optimizer {name!r} takes no argument(s) {', '.join(unknown)}; its extra arguments are: "
            f"{', '.join(info.extra) or 'none'}")
    eps = info.defaults.get("eps") if eps is None else eps
    nesterov = info.defaults.get("nesterov", False) if nesterov is None else nesterov
    alpha = info.defaults.get("alpha", 0.9) if alpha is None else alpha
    problems = [f"{label}={value} must be {rule}" for label, value, ok, rule in (
        ("lr", lr, lr >= 0, ">= 0"),
        ("weight_decay", weight_decay, weight_decay >= 0, ">= 0"),
        ("momentum", momentum, momentum >= 0, ">= 0"),
        ("betas", betas, len(betas) == 2 and all(0 <= b < 1 for b in betas), "two values in [0, 1)"),
        ("eps", eps, eps is None or eps > 0, "> 0"),
        ("alpha", alpha, alpha >= 0, ">= 0"),
    ) if not ok]
    if problems:
        raise ValueError(f"optimizer {name!r}: " + "; ".join(problems))
    _check_segment(segment, info)
    common = {"momentum": momentum, "nesterov": nesterov, "betas": betas, "eps": eps, "alpha": alpha}
    own = {key: extra.get(key, info.defaults[key]) for key in info.extra}
    return info.cls(segment, info, weight_decay=weight_decay, decay_1d=decay_1d,
                    no_weight_decay=tuple(no_weight_decay), **{k: common[k] for k in info.takes}, **own)
