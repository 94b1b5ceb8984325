"""Arena ports of torch.optim's SGD, AdamW and RMSprop, op for op as their single-tensor paths."""

from __future__ import annotations

from collections.abc import Collection

import torch

from fastmotive.core.segment import Segment
from fastmotive.optim._segment_ops import _decayed_spans, _scratch
from fastmotive.optim.info import OptimInfo, SegmentOptimizer, _check_step


class SGD(SegmentOptimizer):
    """torch.optim.SGD, dampening 0. Row: momentum_buffer.

    torch's first step sets the buffer to the grad; here the zero buffer gives 0 * momentum + grad,
    the same value, so the first step needs no special case.
    """

    def __init__(self, segment: Segment, info: OptimInfo, *, weight_decay: float,
                 momentum: float, nesterov: bool,
                 decay_1d: bool, no_weight_decay: Collection[str]):
        if nesterov and momentum <= 0:
            raise ValueError(f"{info.name}: Nesterov momentum needs momentum > 0, got momentum={momentum}")
        super().__init__(segment, info, weight_decay, decay_1d, no_weight_decay)
        self.momentum = momentum
        self.nesterov = nesterov

    @torch.no_grad()
    def step(self, lr: float, step: int) -> None:
        param, buf = self.segment.param, self.segment.state[0]
        grad = self._l2_grad()
        if self.momentum != 0:
            buf.mul_(self.momentum).add_(grad)
            grad = grad.add(buf, alpha=self.momentum) if self.nesterov else buf
        param.add_(grad, alpha=-lr)


DENOM_CHUNK = 1 << 18   # AdamW's denominator is computed 256 Ki elements (1 MB in fp32) at a time


class AdamW(SegmentOptimizer):
    """torch.optim.AdamW (amsgrad=False). Rows: exp_avg, exp_avg_sq.

    ``fused=True`` (the default where torch has the kernel for the segment's device and dtype) runs torch's fused
    AdamW kernel, the one behind ``torch.optim.AdamW(fused=True)``, over the segment: one pass reading and
    writing each element once, where the reference's op sequence makes eight. Its rounding is the fused
    reference's, which differs from the single-tensor path in the last bit. ``fused=False`` runs the
    single-tensor path op for op, bit for bit.
    """

    def __init__(self, segment: Segment, info: OptimInfo, *, weight_decay: float,
                 betas: tuple[float, float], eps: float,
                 decay_1d: bool, no_weight_decay: Collection[str], fused: bool = True):
        super().__init__(segment, info, weight_decay, decay_1d, no_weight_decay)
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.weight_decay = weight_decay
        wd = self._wd
        self._decay_all = isinstance(wd, float) and wd != 0
        spans = _decayed_spans(segment, decay_1d, no_weight_decay) if isinstance(wd, torch.Tensor) else []
        self._wd = None      # decay goes through the spans: no per-element vector kept (a segment's memory)
        self.fused = fused and fused_adamw_supported(segment.param)
        if self.fused:
            self._fused_groups = _fused_groups(segment, spans, weight_decay if self._decay_all or spans else 0.0)
            self._step = torch.zeros((), dtype=torch.float32, device=segment.param.device)
        else:
            # Decoupled decay multiplies by a factor that changes with lr. Where only some slots decay, it
            # multiplies views of the decayed runs (consecutive decayed slots merged: their gaps are 0 and stay
            # 0), one foreach call, the reference's own param.mul_(factor) per element; a per-step
            # torch.where(mask, factor, 1.0) vector cost a segment-sized allocation and two more passes.
            self._decay_runs = [segment.param[start:stop] for start, stop in spans]
            self._denom = None   # the denominator, written in place each step

    @torch.no_grad()
    def step(self, lr: float, step: int) -> None:
        _check_step(step)
        if self.fused:
            self._step.fill_(step)
            for weight_decay, tensors in self._fused_groups:
                torch._fused_adamw_(*tensors, [], [self._step] * len(tensors[0]), lr=lr, beta1=self.beta1,
                                    beta2=self.beta2, weight_decay=weight_decay, eps=self.eps, amsgrad=False,
                                    maximize=False)
            return
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
        self._denom = _scratch(self._denom, param[:DENOM_CHUNK])
        # (exp_avg_sq.sqrt() / bias_correction2**0.5).add_(eps), the reference's ops, a chunk at a time: a
        # segment-sized denominator was the largest allocation an AdamW run kept (15.5 MB for efficientnet_b0)
        for start in range(0, param.numel(), DENOM_CHUNK):
            rows = slice(start, start + DENOM_CHUNK)
            chunk = param[rows]
            denom = self._denom[: len(chunk)]
            torch.sqrt(exp_avg_sq[rows], out=denom).div_(bias_correction2**0.5).add_(self.eps)
            chunk.addcdiv_(exp_avg[rows], denom, value=-step_size)


def fused_adamw_supported(param: torch.Tensor) -> bool:
    """Whether torch has a fused AdamW kernel for `param`'s device and dtype (torch.optim's own rule)."""
    try:
        from torch.optim.optimizer import _get_fused_kernels_supported_devices
    except ImportError:   # a torch without the helper predates the fused CPU kernel
        return False
    return (hasattr(torch, "_fused_adamw_") and param.is_floating_point()
            and param.device.type in _get_fused_kernels_supported_devices())


def _fused_groups(segment: Segment, decayed: list[tuple[int, int]],
                  weight_decay: float) -> list[tuple[float, tuple[list[torch.Tensor], ...]]]:
    """The fused kernel's calls: (weight decay, (params, grads, exp_avgs, exp_avg_sqs)) with views of the
    segment's rows. Uniform decay (or none): the whole segment in one call. Partial decay: the decayed runs with
    `weight_decay`, the spans between them (gaps included: zero stays zero) with 0."""
    rows = (segment.param, segment.grad, segment.state[0], segment.state[1])
    length = segment.param.numel()
    if not decayed:
        return [(weight_decay, tuple([row] for row in rows))]
    bounds = [0, *(b for span in decayed for b in span), length]
    undecayed = [(start, stop) for start, stop in zip(bounds[::2], bounds[1::2]) if stop > start]
    return [(wd, tuple([row[start:stop] for start, stop in spans] for row in rows))
            for wd, spans in ((weight_decay, decayed), (0.0, undecayed)) if spans]


class RMSprop(SegmentOptimizer):
    """torch.optim.RMSprop (centered=False): eps outside the sqrt. Rows: square_avg, momentum_buffer."""

    def __init__(self, segment: Segment, info: OptimInfo, *, weight_decay: float,
                 momentum: float, alpha: float, eps: float,
                 decay_1d: bool, no_weight_decay: Collection[str]):
        super().__init__(segment, info, weight_decay, decay_1d, no_weight_decay)
        self.momentum = momentum
        self.alpha = alpha
        self.eps = eps

    @torch.no_grad()
    def step(self, lr: float, step: int) -> None:
        param, square_avg, buf = self.segment.param, self.segment.state[0], self.segment.state[1]
        grad = self._l2_grad()
        square_avg.mul_(self.alpha).addcmul_(grad, grad, value=1 - self.alpha)
        avg = square_avg.sqrt().add_(self.eps)
        if self.momentum > 0:
            buf.mul_(self.momentum).addcdiv_(grad, avg)
            param.add_(buf, alpha=-lr)
        else:
            param.addcdiv_(grad, avg, value=-lr)
