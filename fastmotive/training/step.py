"""One training step of Algorithm 1 (Acheli & Gaaloul, Sec. 3): the seam between the loop and the models.

The loop calls ``step_fn(model, images, labels, lr, step)`` once per batch and reads back a `StepResult`. The
default, `TrainStep`, runs forward, backward and the optimizer step on the named model; tests and benchmarks
pass their own function (a scripted loss sequence, a timed wrapper around the default) instead of patching
the trainer.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple, Protocol

import torch
import torch.nn.functional as F


class StepResult(NamedTuple):
    loss: float                        # this step's training loss, a Python float (the condition needs it)
    grad_norm: float | None = None     # L2 norm of the model's whole gradient, when the condition asks for it


class StepFn(Protocol):
    """Trains one optimizer step on one model and reports its loss.

    Args:
        model: "base" or "motivated", the active model (the pair has already switched to it).
        images, labels: the batch as the loader yields it (labels: int64 classes, or float [B, classes] soft
            targets under Mixup/CutMix); with ``--grad-accum-steps N``, lists of the N micro-batches whose
            gradients this one optimizer step accumulates. In a multi-process run a step function must itself
            agree on the loss and average the gradients across ranks, as `TrainStep` does.
        lr: the schedule's learning rate for this step.
        step: the global step, 0-based: optimizer steps taken before this one by either model (Adam's bias
            correction counts it, since the state rows travel between the models).
    """

    def __call__(self, model: str, images, labels, lr: float, step: int) -> StepResult:
        ...


def make_loss(*, smoothing: float = 0.0, bce: bool = False) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The training loss, as timm's train.py picks it: cross-entropy with label smoothing on class labels,
    soft-target cross-entropy on the float targets Mixup/CutMix give (which carry the smoothing already), or
    with `bce` timm's BinaryCrossEntropy (the RSB recipes) on either."""
    from timm.loss import BinaryCrossEntropy, SoftTargetCrossEntropy
    soft = BinaryCrossEntropy(smoothing=0.0) if bce else SoftTargetCrossEntropy()
    hard = BinaryCrossEntropy(smoothing=smoothing) if bce else \
        (lambda logits, labels: F.cross_entropy(logits, labels, label_smoothing=smoothing))

    def loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return soft(logits, targets) if targets.is_floating_point() else hard(logits, targets)
    return loss


def clip_gradient(grad: torch.Tensor, model: torch.nn.Module, value: float, mode: str) -> None:
    """timm's ``dispatch_clip_grad`` on a model whose gradients are one flat arena segment: "norm" scales the
    whole segment to L2 norm <= `value` (``clip_grad_norm_``'s coefficient, one pass), "value" clamps it to
    [-value, value], "agc" is timm's per-tensor adaptive clipping on the model's parameters (views of it)."""
    if mode == "norm":
        grad.mul_(torch.clamp(value / (grad.norm() + 1e-6), max=1.0))
    elif mode == "value":
        grad.clamp_(-value, value)
    else:
        from timm.utils.agc import adaptive_clip_grad
        adaptive_clip_grad(model.parameters(), value)


class TrainStep:
    """The default step: zero_grad, forward and loss (bf16 autocast if `amp`) and backward on each
    micro-batch, then (several processes) the agreement and the gradient all-reduce, clipping, and the optimizer
    step.

    Args:
        models: {"base": module, "motivated": module}, the modules whose `train()` mode this step keeps.
        forward: {"base": fn, "motivated": fn}, the modules or their torch.compile'd wrappers.
        optimizers: {"base": optimizer, "motivated": optimizer} on the models' arena segments.
        loss: loss(logits, targets) (`make_loss`); None: plain cross-entropy.
        amp: bf16 autocast (the setting of that name).
        clip_grad, clip_mode: gradient clipping (None: off).
        grad_norm: also return the gradient's L2 norm (an extra pass over the gradient row and a sync).
        dist: the process group (`fastmotive.distributed.Distributed`; None: this process alone). After the
            last backward the ranks agree on the step and the active model and average their losses
            (`dist.agree`: the loss returned, the one the condition sees), then the gradient segment is
            averaged over ranks in one all-reduce, before clipping and the optimizer step.
    """

    def __init__(self, models: dict, forward: dict, optimizers: dict, *, loss=None, amp: bool = False,
                 clip_grad: float | None = None, clip_mode: str = "norm",
                 grad_norm: bool = False, dist=None):
        self.models, self.forward, self.optimizers = models, forward, optimizers
        self.loss = loss or make_loss()
        self.amp = amp
        self.clip_grad, self.clip_mode = clip_grad, clip_mode
        self.grad_norm, self.dist = grad_norm, dist

    def __call__(self, model: str, images, labels, lr: float, step: int) -> StepResult:
        module, optimizer = self.models[model], self.optimizers[model]
        if not module.training:
            # train() walks every module (about 1 ms for efficientnet_b2 on a CPU, a large share of a
            # CUDA-graph step): only after an evaluation left the model in eval mode, never on every batch
            module.train()
        micro = list(zip(images, labels)) if isinstance(images, (list, tuple)) else [(images, labels)]
        optimizer.zero_grad()
        total = 0.0
        for x, y in micro:
            with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.amp):
                loss = self.loss(self.forward[model](x), y)
            (loss / len(micro)).backward()   # the mean over micro-batches, as one batch of all of them
            total = total + loss.detach()
        grad = optimizer.segment.grad
        if self.dist is not None and self.dist.enabled:
            # agreement first: ranks training different models would all-reduce segments of different sizes
            total = self.dist.agree(total / len(micro), model, step) * len(micro)
            self.dist.average_gradients(grad, step)
        # before clipping and the step; after the all-reduce, so every process sees one norm
        grad_norm = grad.norm().item() if self.grad_norm else None
        if self.clip_grad is not None:
            clip_gradient(grad, module, self.clip_grad, self.clip_mode)
        optimizer.step(lr, step + 1)
        return StepResult(float(total) / len(micro), grad_norm)   # float(): a sync point, once per step


def count_images(labels) -> int:
    """Images in a step's labels (a tensor, or with gradient accumulation a list of them)."""
    return sum(map(len, labels)) if isinstance(labels, (list, tuple)) else len(labels)
