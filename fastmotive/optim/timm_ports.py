"""Arena ports of timm's RMSpropTF (RMSprop's hyper-parameters, TensorFlow's arithmetic) and Lamb, op for op as
the references."""

from __future__ import annotations

from collections.abc import Collection

import torch

from fastmotive.core.segment import Segment
from fastmotive.optim._segment_ops import _decayed, _pieces
from fastmotive.optim.info import OptimInfo, SegmentOptimizer, _check_step
from fastmotive.optim.torch_ports import RMSprop


class RMSpropTF(RMSprop):
    """timm.optim.RMSpropTF (lr_in_momentum, not centered, not decoupled): eps inside the sqrt.
    Rows: square_avg, momentum_buffer.

    timm starts square_avg at ones. The row is set to ones here, at construction, not lazily on the
    first step: the switch may already have copied the other model's square_avg into this segment
    by the time this optimizer first steps, and a lazy fill would overwrite it. So create the
    optimizer before restoring the state rows from a checkpoint.
    """

    def __init__(self, segment: Segment, info: OptimInfo, **hyper):   # RMSprop's hyper-parameters
        super().__init__(segment, info, **hyper)
        segment.state[0].fill_(1.0)

    @torch.no_grad()
    def step(self, lr: float, step: int) -> None:
        param, square_avg, buf = self.segment.param, self.segment.state[0], self.segment.state[1]
        grad = self._l2_grad()
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


class Lamb(SegmentOptimizer):
    """timm.optim.Lamb (bias_correction, grad_averaging, not decoupled). Rows: exp_avg, exp_avg_sq.

    The per-tensor norms (global clipping norm, trust ratio) are one ``torch._foreach_norm`` over
    views of the slots, the kernel timm's ``p.norm()`` uses; the trust ratios are expanded back to
    the elements with one ``repeat_interleave`` over the [gap, slot, ...] pieces. As in timm the
    trust ratio applies to the decayed tensors only, unless ``always_adapt``.
    """

    def __init__(self, segment: Segment, info: OptimInfo, *, weight_decay: float,
                 betas: tuple[float, float], eps: float,
                 max_grad_norm: float | None, trust_clip: bool, always_adapt: bool, decay_1d: bool,
                 no_weight_decay: Collection[str]):
        super().__init__(segment, info, weight_decay, decay_1d, no_weight_decay)
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.max_grad_norm = max_grad_norm
        self.trust_clip = trust_clip
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
