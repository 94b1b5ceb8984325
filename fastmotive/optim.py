"""Optimizers that update one flat segment of the arena in a few whole-segment tensor ops.

Algorithm 1 of Acheli & Gaaloul ("Motivation is Something You Need") steps the active model's own
optimizer after each batch. Here each model's parameters, gradients and optimizer state rows are
packed in one flat segment, so an update is a handful of in-place ops on 1-D tensors, never a loop
over the model's tensors. The arithmetic is the single-tensor path of each reference, op for op,
so a segment follows the reference bit for bit (tests/test_optim.py):

- ``sgd``: ``torch.optim.SGD`` (momentum, dampening 0, nesterov, L2 weight decay added to the grad).
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

import fnmatch
from collections.abc import Collection
from dataclasses import dataclass
from typing import Protocol

import torch

from .segment import Segment, TensorSlot

__all__ = [
    "OPTIMIZERS",
    "ArenaOptimizer",
    "OptimInfo",
    "Segment",
    "TensorSlot",
    "create_optimizer",
]


# ---------------------------------------------------------------------------------------------------
# Segments
# ---------------------------------------------------------------------------------------------------


def _check_segment(segment: Segment, info: OptimInfo) -> None:
    """Raise ValueError naming the first part of `segment` that an optimizer cannot update in place."""
    param, grad, state = segment.param, segment.grad, segment.state
    where = f"segment for optimizer {info.name!r}"
    if param.dim() != 1 or not param.is_contiguous() or not param.is_floating_point():
        raise ValueError(
            f"{where}: param must be a 1-D contiguous floating-point tensor, got shape {tuple(param.shape)}, "
            f"dtype {param.dtype}, contiguous={param.is_contiguous()}")
    length = param.numel()
    for label, t in (("grad", grad), ("state", state)):
        if t.dtype != param.dtype or t.device != param.device:
            raise ValueError(
                f"{where}: {label} is {t.dtype} on {t.device}, param is {param.dtype} on {param.device}; "
                f"they must match")
    if grad.shape != param.shape or not grad.is_contiguous():
        raise ValueError(
            f"{where}: grad must be 1-D contiguous with the param's length {length}, "
            f"got shape {tuple(grad.shape)}, contiguous={grad.is_contiguous()}")
    n_rows = len(info.state_rows)
    if state.dim() != 2 or state.shape[1] != length or state.shape[0] < n_rows:
        raise ValueError(
            f"{where}: state must be [n_rows >= {n_rows}, {length}] for rows {info.state_rows}, "
            f"got shape {tuple(state.shape)}")
    if any(not state[i].is_contiguous() for i in range(n_rows)):
        raise ValueError(f"{where}: each state row must be contiguous (stride {tuple(state.stride())})")
    end = 0
    for slot in segment.slots:
        if slot.offset < end or slot.offset + slot.numel > length:
            raise ValueError(
                f"{where}: slot {slot.name!r} at offset {slot.offset} with {slot.numel} elements must start "
                f"at or after {end} (slots ascending, not overlapping) and end by the segment length {length}")
        end = slot.offset + slot.numel


def _pieces(segment: Segment) -> list[int]:
    """Lengths [gap, slot, gap, slot, ..., slot, tail] covering the segment; gaps may be 0.

    Splitting a segment-long tensor with these lengths and taking ``[1::2]`` gives one view per slot,
    in one C++ call.
    """
    lengths, end = [], 0
    for slot in segment.slots:
        lengths += [slot.offset - end, slot.numel]
        end = slot.offset + slot.numel
    return lengths + [segment.param.numel() - end]


def _decayed(slot: TensorSlot, decay_1d: bool, no_weight_decay: Collection[str]) -> bool:
    # timm param_groups_weight_decay: excluded when ndim <= 1 or the name ends in ".bias", or listed
    # in the model's no_weight_decay() (fnmatch patterns).
    if any(fnmatch.fnmatch(slot.name, pattern) for pattern in no_weight_decay):
        return False
    return decay_1d or not (len(slot.shape) <= 1 or slot.name.endswith(".bias"))


def _decay_vector(segment: Segment, weight_decay: float, decay_1d: bool,
                  no_weight_decay: Collection[str]) -> float | torch.Tensor:
    """The weight decay of each element: a float where it is the same for every slot, else a vector
    holding `weight_decay` on decayed slots and 0 elsewhere (gaps included), built once.

    A gap is padding and always 0, so decaying it changes nothing: a uniform decay stays a scalar and
    the update keeps the reference's own op (``grad.add(param, alpha=wd)``).
    """
    if weight_decay == 0:
        return 0.0
    decayed = [_decayed(slot, decay_1d, no_weight_decay) for slot in segment.slots]
    if all(decayed):
        return weight_decay
    if not any(decayed):
        return 0.0
    pieces = _pieces(segment)
    values = [0.0] * len(pieces)
    values[1::2] = [weight_decay if d else 0.0 for d in decayed]
    param = segment.param
    return torch.repeat_interleave(
        torch.tensor(values, dtype=param.dtype, device=param.device),
        torch.tensor(pieces, device=param.device), output_size=param.numel())


def _decayed_runs(segment: Segment, decay_1d: bool, no_weight_decay: Collection[str]) -> list[torch.Tensor]:
    """Views of `segment.param` covering its decayed slots, consecutive decayed slots (and the zero gaps
    between them) merged into one view."""
    runs: list[list[int]] = []
    previous_decayed = False
    for slot in segment.slots:
        if slot.numel == 0:   # covers no element: neither starts nor breaks a run
            continue
        decayed = _decayed(slot, decay_1d, no_weight_decay)
        if decayed and previous_decayed:
            runs[-1][1] = slot.offset + slot.numel
        elif decayed:
            runs.append([slot.offset, slot.offset + slot.numel])
        previous_decayed = decayed
    return [segment.param[start:stop] for start, stop in runs]


def _with_l2(grad: torch.Tensor, param: torch.Tensor, wd: float | torch.Tensor,
             out: torch.Tensor | None = None) -> torch.Tensor:
    """grad + wd * param written to `out` (a new tensor if None), as torch adds L2 decay; addcmul gives the same
    bits per element. With no decay, `grad` itself."""
    if isinstance(wd, torch.Tensor):
        return torch.addcmul(grad, param, wd, out=out)
    return torch.add(grad, param, alpha=wd, out=out) if wd != 0 else grad


def _scratch(current: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """A segment-sized work tensor, allocated once per optimizer: a fresh one per step cost page faults on a CPU
    (about 15 % of an SGD step on efficientnet_b0)."""
    if current is None or current.shape != like.shape or current.device != like.device:
        return torch.empty_like(like)
    return current


# ---------------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OptimInfo:
    """What the trainer and the switch need to know about one optimizer."""

    name: str
    state_rows: tuple[str, ...]  # state rows it uses, in row order; the switch copies exactly these
    defaults: dict  # default hyper-parameters of create_optimizer for this optimizer


OPTIMIZERS: dict[str, OptimInfo] = {
    "sgd": OptimInfo("sgd", ("momentum_buffer",), {"momentum": 0.9, "nesterov": False}),
    "adamw": OptimInfo("adamw", ("exp_avg", "exp_avg_sq"), {"betas": (0.9, 0.999), "eps": 1e-8}),
    "rmsprop": OptimInfo("rmsprop", ("square_avg", "momentum_buffer"),
                         {"alpha": 0.99, "eps": 1e-8, "momentum": 0.9}),
    # timm's RMSpropTF class default eps is 1e-10 (inside the sqrt)
    "rmsproptf": OptimInfo("rmsproptf", ("square_avg", "momentum_buffer"),
                           {"alpha": 0.99, "eps": 1e-10, "momentum": 0.9}),
    "lamb": OptimInfo("lamb", ("exp_avg", "exp_avg_sq"),
                      {"betas": (0.9, 0.999), "eps": 1e-6, "max_grad_norm": 1.0, "trust_clip": False,
                       "always_adapt": False}),
}

# keyword arguments beyond the common ones that an optimizer accepts through create_optimizer(**extra)
_EXTRA = {"lamb": ("max_grad_norm", "trust_clip", "always_adapt")}


class ArenaOptimizer(Protocol):
    """An optimizer bound to one segment; its tensor state lives in the segment's state rows."""

    info: OptimInfo
    segment: Segment

    def step(self, lr: float, step: int) -> None:
        """Update the segment in place; `step` is the 1-based global step count."""
        ...

    def zero_grad(self) -> None:
        """Zero the segment's grad in place (never to None)."""
        ...

    def state_dict(self) -> dict:
        """Non-tensor state (the tensor state is in the segment's rows)."""
        ...

    def load_state_dict(self, state: dict) -> None: ...


def _check_state(info: OptimInfo, state: dict) -> None:
    if state.get("name") != info.name:
        raise ValueError(
            f"optimizer state is for {state.get('name')!r}, this optimizer is {info.name!r}; resume with "
            f"the optimizer the run was started with")


def _check_step(step: int) -> None:
    if step < 1:
        raise ValueError(f"step is the 1-based global step count, got {step}")


# ---------------------------------------------------------------------------------------------------
# Optimizers
# ---------------------------------------------------------------------------------------------------


class SGD:
    """torch.optim.SGD, dampening 0. Row: momentum_buffer.

    torch's first step sets the buffer to the grad; here the zero buffer gives 0 * momentum + grad,
    the same value, so the first step needs no special case.
    """

    def __init__(self, segment: Segment, *, weight_decay: float, momentum: float, nesterov: bool,
                 decay_1d: bool, no_weight_decay: Collection[str]):
        if nesterov and momentum <= 0:
            raise ValueError(f"sgd: nesterov=True needs momentum > 0, got momentum={momentum}")
        self.info = OPTIMIZERS["sgd"]
        self.segment = segment
        self.momentum = momentum
        self.nesterov = nesterov
        self._wd = _decay_vector(segment, weight_decay, decay_1d, no_weight_decay)
        self._l2 = None   # grad + L2 decay, written in place each step

    @torch.no_grad()
    def step(self, lr: float, step: int) -> None:
        param, buf = self.segment.param, self.segment.state[0]
        if isinstance(self._wd, torch.Tensor) or self._wd != 0:
            self._l2 = _scratch(self._l2, param)
        grad = _with_l2(self.segment.grad, param, self._wd, self._l2)
        if self.momentum != 0:
            buf.mul_(self.momentum).add_(grad)
            grad = grad.add(buf, alpha=self.momentum) if self.nesterov else buf
        param.add_(grad, alpha=-lr)

    def zero_grad(self) -> None:
        self.segment.grad.zero_()

    def state_dict(self) -> dict:
        return {"name": self.info.name}

    def load_state_dict(self, state: dict) -> None:
        _check_state(self.info, state)


class AdamW:
    """torch.optim.AdamW (amsgrad=False). Rows: exp_avg, exp_avg_sq."""

    def __init__(self, segment: Segment, *, weight_decay: float, betas: tuple[float, float], eps: float,
                 decay_1d: bool, no_weight_decay: Collection[str]):
        self.info = OPTIMIZERS["adamw"]
        self.segment = segment
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.weight_decay = weight_decay
        wd = _decay_vector(segment, weight_decay, decay_1d, no_weight_decay)
        self._decay_all = isinstance(wd, float) and wd != 0
        # Decoupled decay multiplies by a factor that changes with lr. Where only some slots decay, it
        # multiplies views of the decayed runs (consecutive decayed slots merged: their gaps are 0 and stay
        # 0), one foreach call, the reference's own param.mul_(factor) per element; a per-step
        # torch.where(mask, factor, 1.0) vector cost a segment-sized allocation and two more passes.
        self._decay_runs = _decayed_runs(segment, decay_1d, no_weight_decay) if isinstance(wd, torch.Tensor) else []
        self._denom = None   # the denominator, written in place each step

    @torch.no_grad()
    def step(self, lr: float, step: int) -> None:
        _check_step(step)
        param, grad = self.segment.param, self.segment.grad
        exp_avg, exp_avg_sq = self.segment.state[0], self.segment.state[1]
        if self._decay_all:
            param.mul_(1 - lr * self.weight_decay)
        elif self._decay_runs:
            torch._foreach_mul_(self._decay_runs, 1 - lr * self.weight_decay)
        exp_avg.lerp_(grad, 1 - self.beta1)
        exp_avg_sq.mul_(self.beta2).addcmul_(grad, grad, value=1 - self.beta2)
        bias_correction1 = 1 - self.beta1**step
        bias_correction2 = 1 - self.beta2**step
        step_size = lr / bias_correction1
        self._denom = _scratch(self._denom, param)
        # (exp_avg_sq.sqrt() / bias_correction2**0.5).add_(eps), the reference's ops, written into the scratch
        denom = torch.sqrt(exp_avg_sq, out=self._denom).div_(bias_correction2**0.5).add_(self.eps)
        param.addcdiv_(exp_avg, denom, value=-step_size)

    def zero_grad(self) -> None:
        self.segment.grad.zero_()

    def state_dict(self) -> dict:
        return {"name": self.info.name}

    def load_state_dict(self, state: dict) -> None:
        _check_state(self.info, state)


class RMSprop:
    """torch.optim.RMSprop (centered=False): eps outside the sqrt. Rows: square_avg, momentum_buffer."""

    def __init__(self, segment: Segment, *, weight_decay: float, momentum: float, alpha: float, eps: float,
                 decay_1d: bool, no_weight_decay: Collection[str]):
        self.info = OPTIMIZERS["rmsprop"]
        self.segment = segment
        self.momentum = momentum
        self.alpha = alpha
        self.eps = eps
        self._wd = _decay_vector(segment, weight_decay, decay_1d, no_weight_decay)
        self._l2 = None   # grad + L2 decay, written in place each step

    @torch.no_grad()
    def step(self, lr: float, step: int) -> None:
        param, square_avg, buf = self.segment.param, self.segment.state[0], self.segment.state[1]
        if isinstance(self._wd, torch.Tensor) or self._wd != 0:
            self._l2 = _scratch(self._l2, param)
        grad = _with_l2(self.segment.grad, param, self._wd, self._l2)
        square_avg.mul_(self.alpha).addcmul_(grad, grad, value=1 - self.alpha)
        avg = square_avg.sqrt().add_(self.eps)
        if self.momentum > 0:
            buf.mul_(self.momentum).addcdiv_(grad, avg)
            param.add_(buf, alpha=-lr)
        else:
            param.addcdiv_(grad, avg, value=-lr)

    def zero_grad(self) -> None:
        self.segment.grad.zero_()

    def state_dict(self) -> dict:
        return {"name": self.info.name}

    def load_state_dict(self, state: dict) -> None:
        _check_state(self.info, state)


class RMSpropTF:
    """timm.optim.RMSpropTF (lr_in_momentum, not centered, not decoupled): eps inside the sqrt.
    Rows: square_avg, momentum_buffer.

    timm starts square_avg at ones. The row is set to ones here, at construction, not lazily on the
    first step: the switch may already have copied the other model's square_avg into this segment
    by the time this optimizer first steps, and a lazy fill would overwrite it. So create the
    optimizer before restoring the state rows from a checkpoint.
    """

    def __init__(self, segment: Segment, *, weight_decay: float, momentum: float, alpha: float, eps: float,
                 decay_1d: bool, no_weight_decay: Collection[str]):
        self.info = OPTIMIZERS["rmsproptf"]
        self.segment = segment
        self.momentum = momentum
        self.alpha = alpha
        self.eps = eps
        self._wd = _decay_vector(segment, weight_decay, decay_1d, no_weight_decay)
        self._l2 = None   # grad + L2 decay, written in place each step
        segment.state[0].fill_(1.0)

    @torch.no_grad()
    def step(self, lr: float, step: int) -> None:
        param, square_avg, buf = self.segment.param, self.segment.state[0], self.segment.state[1]
        if isinstance(self._wd, torch.Tensor) or self._wd != 0:
            self._l2 = _scratch(self._l2, param)
        grad = _with_l2(self.segment.grad, param, self._wd, self._l2)
        # TensorFlow's order of ops for the squared average, as timm
        square_avg.add_(grad.pow(2) - square_avg, alpha=1 - self.alpha)
        avg = square_avg.add(self.eps).sqrt_()
        if self.momentum > 0:
            # TensorFlow accumulates the lr scaling in the momentum buffer
            buf.mul_(self.momentum)
            buf.addcdiv_(grad, avg, value=lr)
            param.sub_(buf)
        else:
            param.addcdiv_(grad, avg, value=-lr)

    def zero_grad(self) -> None:
        self.segment.grad.zero_()

    def state_dict(self) -> dict:
        return {"name": self.info.name}

    def load_state_dict(self, state: dict) -> None:
        _check_state(self.info, state)


class Lamb:
    """timm.optim.Lamb (bias_correction, grad_averaging, not decoupled). Rows: exp_avg, exp_avg_sq.

    The per-tensor norms (global clipping norm, trust ratio) are one ``torch._foreach_norm`` over
    views of the slots, the kernel timm's ``p.norm()`` uses; the trust ratios are expanded back to
    the elements with one ``repeat_interleave`` over the [gap, slot, ...] pieces. As in timm the
    trust ratio applies to the decayed tensors only, unless ``always_adapt``.
    """

    def __init__(self, segment: Segment, *, weight_decay: float, betas: tuple[float, float], eps: float,
                 max_grad_norm: float | None, trust_clip: bool, always_adapt: bool, decay_1d: bool,
                 no_weight_decay: Collection[str]):
        self.info = OPTIMIZERS["lamb"]
        self.segment = segment
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.max_grad_norm = max_grad_norm
        self.trust_clip = trust_clip
        self._wd = _decay_vector(segment, weight_decay, decay_1d, no_weight_decay)
        self._pieces = _pieces(segment)
        device = segment.param.device
        self._piece_lengths = torch.tensor(self._pieces, device=device)
        self._param_views = torch.split(segment.param, self._pieces)[1::2]
        self._grad_views = torch.split(segment.grad, self._pieces)[1::2]
        adapt = [always_adapt or (weight_decay != 0 and _decayed(slot, decay_1d, no_weight_decay))
                 for slot in segment.slots]
        self._adapt = torch.tensor(adapt, dtype=torch.bool, device=device) if any(adapt) else None

    @torch.no_grad()
    def step(self, lr: float, step: int) -> None:
        _check_step(step)
        param, grad = self.segment.param, self.segment.grad
        exp_avg, exp_avg_sq = self.segment.state[0], self.segment.state[1]
        if self.max_grad_norm is not None and self._grad_views:
            # global norm over the tensors' norms, as timm Lamb._get_clip_grad_norm
            global_norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(self._grad_views)))
            grad = grad / (global_norm / self.max_grad_norm).clamp_(min=1.0)
        exp_avg.lerp_(grad, 1 - self.beta1)
        exp_avg_sq.mul_(self.beta2).addcmul_(grad, grad, value=1 - self.beta2)
        bias_correction1 = 1 - self.beta1**step
        bias_correction2 = 1 - self.beta2**step
        denom = (exp_avg_sq.sqrt() / bias_correction2**0.5).add_(self.eps)
        update = (exp_avg / bias_correction1).div_(denom)
        if isinstance(self._wd, torch.Tensor):
            update.addcmul_(param, self._wd)
        elif self._wd != 0:
            update.add_(param, alpha=self._wd)
        if self._adapt is not None:
            w_norm = torch.stack(torch._foreach_norm(self._param_views))
            g_norm = torch.stack(torch._foreach_norm(torch.split(update, self._pieces)[1::2]))
            # timm _lamb_trust_ratio: 1 where either norm is zero
            ratio = torch.where((w_norm > 0) & (g_norm > 0), w_norm / g_norm, 1.0)
            if self.trust_clip:
                ratio.clamp_(max=1.0)
            ratio = torch.where(self._adapt, ratio, 1.0)
            per_piece = torch.ones(len(self._pieces), dtype=ratio.dtype, device=ratio.device)
            per_piece[1::2] = ratio
            update.mul_(torch.repeat_interleave(per_piece, self._piece_lengths, output_size=param.numel()))
        param.add_(update, alpha=-lr)

    def zero_grad(self) -> None:
        self.segment.grad.zero_()

    def state_dict(self) -> dict:
        return {"name": self.info.name}

    def load_state_dict(self, state: dict) -> None:
        _check_state(self.info, state)


# ---------------------------------------------------------------------------------------------------
# Factory
# ---------------------------------------------------------------------------------------------------


def create_optimizer(name: str, segment: Segment, *, lr: float, weight_decay: float = 0.0,
                     momentum: float = 0.9, nesterov: bool = False, betas: tuple[float, float] = (0.9, 0.999),
                     eps: float | None = None, alpha: float = 0.99, decay_1d: bool = False,
                     no_weight_decay: Collection[str] = (), **extra) -> ArenaOptimizer:
    """Create the optimizer `name` on `segment`.

    Arguments an optimizer has no use for are ignored (momentum for adamw, betas for sgd), as timm's
    factory drops them.

    Args:
        name: one of OPTIMIZERS: "sgd", "adamw", "rmsprop", "rmsproptf", "lamb".
        segment: the model's segment; its state rows must hold OPTIMIZERS[name].state_rows in that order.
        lr: the initial learning rate; validated here, each step takes the schedule's lr.
        weight_decay: L2 penalty (sgd, rmsprop, rmsproptf, lamb) or decoupled decay (adamw).
        momentum: sgd, rmsprop, rmsproptf.
        nesterov: sgd.
        betas: adamw, lamb.
        eps: adamw, rmsprop, rmsproptf, lamb; None takes OPTIMIZERS[name].defaults["eps"].
        alpha: smoothing constant of rmsprop and rmsproptf.
        decay_1d: also decay 1-D tensors and biases (timm excludes them by default).
        no_weight_decay: fnmatch patterns of slot names never decayed (timm's model.no_weight_decay()).
        **extra: lamb only: max_grad_norm (None disables clipping), trust_clip, always_adapt.

    Returns:
        The optimizer, bound to `segment`.

    Raises:
        ValueError: unknown name, unknown extra argument, bad hyper-parameter or a segment it cannot update.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of: {', '.join(OPTIMIZERS)}")
    info = OPTIMIZERS[name]
    unknown = sorted(set(extra) - set(_EXTRA.get(name, ())))
    if unknown:
        raise ValueError(
            f"optimizer {name!r} takes no argument(s) {', '.join(unknown)}; its extra arguments are: "
            f"{', '.join(_EXTRA.get(name, ())) or 'none'}")
    eps = info.defaults.get("eps") if eps is None else eps
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
    decay = {"weight_decay": weight_decay, "decay_1d": decay_1d, "no_weight_decay": tuple(no_weight_decay)}
    if name == "sgd":
        return SGD(segment, momentum=momentum, nesterov=nesterov, **decay)
    if name == "adamw":
        return AdamW(segment, betas=betas, eps=eps, **decay)
    if name == "rmsprop":
        return RMSprop(segment, momentum=momentum, alpha=alpha, eps=eps, **decay)
    if name == "rmsproptf":
        return RMSpropTF(segment, momentum=momentum, alpha=alpha, eps=eps, **decay)
    lamb_extra = {key: extra.get(key, info.defaults[key]) for key in _EXTRA["lamb"]}
    return Lamb(segment, betas=betas, eps=eps, **lamb_extra, **decay)
