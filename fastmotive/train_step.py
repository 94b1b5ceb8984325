"""One training step of Algorithm 1 (Acheli & Gaaloul, Sec. 3): the seam between the loop and the models.

The loop calls ``step_fn(model, images, labels, lr, step)`` once per batch and reads back a `StepResult`. The
default, `TrainStep`, runs forward, backward and the optimizer step on the named model; tests and benchmarks
pass their own function (a scripted loss sequence, a timed wrapper around the default) instead of patching
the trainer.
"""
from __future__ import annotations

from typing import NamedTuple, Protocol

import torch
import torch.nn.functional as F


class StepResult(NamedTuple):
    loss: float                        # this batch's training loss, a Python float (the condition needs it)
    grad_norm: float | None = None     # L2 norm of the model's whole gradient, when the condition asks for it


class StepFn(Protocol):
    """Trains one batch on one model and reports its loss.

    Args:
        model: "base" or "motivated", the active model (the pair has already switched to it).
        images, labels: the batch, as the loader yields it.
        lr: the schedule's learning rate for this step.
        step: the global step, 0-based: batches trained before this one by either model (Adam's bias
            correction counts it, since the state rows travel between the models).
    """

    def __call__(self, model: str, images: torch.Tensor, labels: torch.Tensor, lr: float,
                 step: int) -> StepResult:
        ...


class TrainStep:
    """The default step: zero_grad, forward (bf16 autocast if `amp`), cross-entropy, backward, optimizer step.

    Args:
        models: {"base": module, "motivated": module}, the modules whose `train()` mode this step keeps.
        forward: {"base": fn, "motivated": fn}, the modules or their torch.compile'd wrappers.
        optimizers: {"base": optimizer, "motivated": optimizer} on the models' arena segments.
        amp, smoothing, channels_last: the settings of the same names.
        grad_norm: also return the gradient's L2 norm (an extra pass over the gradient row and a sync).
    """

    def __init__(self, models: dict, forward: dict, optimizers: dict, *, amp: bool = False,
                 smoothing: float = 0.0, channels_last: bool = False, grad_norm: bool = False):
        self.models, self.forward, self.optimizers = models, forward, optimizers
        self.amp, self.smoothing, self.channels_last = amp, smoothing, channels_last
        self.grad_norm = grad_norm

    def __call__(self, model: str, images: torch.Tensor, labels: torch.Tensor, lr: float,
                 step: int) -> StepResult:
        module, optimizer = self.models[model], self.optimizers[model]
        if not module.training:
            # train() walks every module (about 1 ms for efficientnet_b2 on a CPU, a large share of a
            # CUDA-graph step): only after an evaluation left the model in eval mode, never on every batch
            module.train()
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        optimizer.zero_grad()
        with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=self.amp):
            loss = F.cross_entropy(self.forward[model](images), labels, label_smoothing=self.smoothing)
        loss.backward()
        # before step(), which zeroes the gradient
        grad_norm = optimizer.segment.grad.norm().item() if self.grad_norm else None
        optimizer.step(lr, step + 1)
        return StepResult(loss.item(), grad_norm)   # .item(): a sync point, once per batch
