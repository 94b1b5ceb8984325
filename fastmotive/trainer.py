"""Motivation-aware training: the paper's Algorithm 1 on a MotivatedPair (Acheli & Gaaloul, Sec. 3).

For each batch: forward and backward on the *active* model only; step that model's optimizer at the
shared schedule's lr for the global step; hand the loss to the condition; switch if it says so (the
switch takes effect from the next batch). Every epoch ends on the base: an open motivated episode is
closed. Both models are evaluated on the validation batches after each epoch.
"""
from __future__ import annotations

import math
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from . import checkpoint
from .conditions import Condition, LossStreak, Signal
from .errors import TrainingDivergedError
from .optim import OPTIMIZERS, create_optimizer
from .pair import MODELS, MotivatedPair
from .rundir import RunDir
from .schedules import make_schedule


@dataclass
class History:
    steps: list[dict] = field(default_factory=list)    # step, epoch, batch, active, loss, lr, switched
    epochs: list[dict] = field(default_factory=list)   # one summary row per epoch


class Trainer:
    """Trains a pair with Algorithm 1.

    Args:
        pair: the MotivatedPair (its arena holds both models and both optimizers' state).
        optimizer: "sgd", "adamw", "rmsprop", "rmsproptf" or "lamb"; one per model, same kind.
        lr, momentum, weight_decay: optimizer hyper-parameters (weight decay skips 1-D tensors, as timm).
        condition: when the motivated model trains; default LossStreak(k=2), the paper's.
        schedule: "cosine", "step" or "constant", with `warmup_epochs` of linear warmup, on the global step;
            `decay_epochs`/`decay_rate` for "step", `min_lr` for "cosine".
        epochs: passes over the training batches. seed: seeds torch's RNG (dropout, init) at fit().
        smoothing: label smoothing of the cross-entropy (0 = the paper's plain loss).
        backend: switch backend (None = the device default). output: run directory (None = no files).
        checkpoint_every: also checkpoint every N steps (0 = at epoch ends only).
        max_steps: stop after this many batches in all (smoke runs). amp: bf16 autocast.
        compile: None, or a torch.compile mode ("default", "reduce-overhead", "max-autotune");
            compile_backend: the torch.compile backend (tests pass a counting one).
        progress: show a rich progress bar.
        optimizer_kwargs: extra arguments for create_optimizer (betas, eps, nesterov, ...).
    """

    def __init__(self, pair: MotivatedPair, optimizer: str = "sgd", lr: float = 0.1, momentum: float = 0.9,
                 weight_decay: float = 5e-4, condition: Condition | None = None, schedule: str = "cosine",
                 warmup_epochs: float = 0, epochs: int = 10, seed: int = 0, smoothing: float = 0.0,
                 decay_epochs: float = 30, decay_rate: float = 0.1, min_lr: float = 0.0,
                 backend: str | None = None, output: str | Path | None = None, checkpoint_every: int = 0,
                 max_steps: int | None = None, amp: bool = False, compile: str | None = None,
                 progress: bool = False, channels_last: bool = False, compile_backend="inductor",
                 **optimizer_kwargs):
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {optimizer!r}; choose one of: {', '.join(OPTIMIZERS)}")
        self.pair, self.condition = pair, condition if condition is not None else LossStreak(k=2)
        self.epochs, self.seed, self.smoothing, self.backend = epochs, seed, smoothing, backend
        self.schedule_args = {"name": schedule, "lr": lr, "warmup_epochs": warmup_epochs, "min_lr": min_lr,
                              "decay_epochs": decay_epochs, "decay_rate": decay_rate}
        self.max_steps, self.amp, self.progress, self.channels_last = max_steps, amp, progress, channels_last
        self.checkpoint_every = checkpoint_every
        self.run = RunDir(output) if output is not None else None
        pair.set_state_rows(len(OPTIMIZERS[optimizer].state_rows))   # before taking segments: may re-bind
        self.optimizer_name = optimizer
        # timm models list tensors never to decay (ViT: pos_embed, cls_token); both members share the names
        no_decay = tuple(getattr(pair.base, "no_weight_decay", lambda: ())())
        self.optimizers = {m: create_optimizer(optimizer, pair.segment(m), lr=lr, momentum=momentum,
                                               weight_decay=weight_decay, no_weight_decay=no_decay,
                                               **optimizer_kwargs) for m in MODELS}
        self.forward = {m: pair.model(m) for m in MODELS}
        if compile:
            # Each model compiles once: parameters never move, so switches trigger no guard failure.
            mode = None if compile == "default" else compile
            self.forward = {m: torch.compile(pair.model(m), mode=mode, backend=compile_backend) for m in MODELS}
        self.history = History()
        self._in_train_mode: set[str] = set()   # models put in train mode by this fit, with no eval since
        self.step = 0                      # global step: batches trained so far, both models
        self.position = (0, 0)             # (epoch, next batch) to resume from
        self.stop_requested = False

    # -- one batch ------------------------------------------------------------------------------------
    def _train_batch(self, images, labels, lr: float) -> tuple[float, float | None]:
        """Forward, backward and optimizer step on the active model. Returns (loss, grad norm or None)."""
        name = self.pair.active
        model, opt = self.pair.model(name), self.optimizers[name]
        if name not in self._in_train_mode:
            # train() walks every module (about 1 ms for efficientnet_b2 on a CPU, a large share of a
            # CUDA-graph step): once per fit and after each eval, not on every batch
            model.train()
            self._in_train_mode.add(name)
        opt.zero_grad()
        with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=self.amp):
            loss = F.cross_entropy(self.forward[name](images), labels, label_smoothing=self.smoothing)
        loss.backward()
        grad_norm = opt.segment.grad.norm().item() if "grad_norm" in self.condition.needs else None
        opt.step(lr, self.step + 1)
        return loss.item(), grad_norm   # .item(): a sync point, once per batch (the condition needs the value)

    @torch.no_grad()
    def _holdout_loss(self) -> float:
        name = self.pair.active
        self.pair.model(name).eval()
        self._in_train_mode.discard(name)
        images, labels = self._holdout
        return F.cross_entropy(self.forward[name](images), labels).item()

    # -- the loop (Algorithm 1) -----------------------------------------------------------------------
    def fit(self, train_batches, val_batches=None, resume: str | Path | None = None) -> History:
        """Train for `epochs` over `train_batches` (a re-iterable of (images, labels)); see the module doc."""
        torch.manual_seed(self.seed)
        self._in_train_mode.clear()
        if resume is not None:
            self.load_checkpoint(resume)
            if self.run is not None:
                self.run.rewrite_logs(self.history)   # drop log lines written after the checkpoint
        self.pair.arena.check_bound()
        steps_per_epoch = len(train_batches)
        schedule = make_schedule(total_steps=self.epochs * steps_per_epoch, steps_per_epoch=steps_per_epoch,
                                 **self.schedule_args)
        if "val_loss" in self.condition.needs:   # "a held-out training batch": the first validation batch
            self._holdout = next(iter(val_batches if val_batches is not None else train_batches))
        bar = _ProgressBar(self.epochs * steps_per_epoch, self.step) if self.progress else None
        start_epoch, start_batch = self.position
        t0, images_seen = time.perf_counter(), 0
        with _StopOnSigint(self):
            for epoch in range(start_epoch, self.epochs):
                if start_batch == 0 and self.condition.start_epoch(epoch, steps_per_epoch):
                    self.pair.switch_to("motivated", self.backend)
                for batch, (images, labels) in enumerate(_batches(train_batches, epoch, start_batch), start_batch):
                    if self.channels_last:
                        images = images.contiguous(memory_format=torch.channels_last)
                    lr = schedule(self.step)
                    loss, grad_norm = self._train_batch(images, labels, lr)
                    if not math.isfinite(loss):
                        raise TrainingDivergedError(
                            f"loss is {loss} at step {self.step} (epoch {epoch}, batch {batch}) on the "
                            f"{self.pair.active} model; the last good checkpoint is kept. Lower --lr or use --amp off")
                    active = self.pair.active
                    val_loss = self._holdout_loss() if "val_loss" in self.condition.needs else None
                    wants = self.condition.update(Signal(loss, epoch, batch, steps_per_epoch, grad_norm, val_loss))
                    last_in_epoch = batch == steps_per_epoch - 1
                    # The epoch's last batch is followed by the base (the epoch-end switch closes an open
                    # episode in _end_epoch); an episode it would open is skipped, as it would close at once.
                    target = "motivated" if wants and not last_in_epoch else "base"
                    switched = target != active
                    if switched and not last_in_epoch:
                        self.pair.switch_to(target, self.backend)
                    self.step += 1
                    images_seen += len(labels)
                    self.position = (epoch, batch + 1)
                    self._record_step({"step": self.step - 1, "epoch": epoch, "batch": batch, "active": active,
                                       "loss": loss, "lr": lr, "images": len(labels), "switched": switched}, bar)
                    if self._should_stop() and not last_in_epoch:
                        break
                    if self.checkpoint_every and self.step % self.checkpoint_every == 0:
                        self.save_checkpoint()
                else:
                    self._end_epoch(epoch, val_batches, time.perf_counter() - t0, images_seen)
                    start_batch = 0
                    if not self._should_stop():
                        continue
                break   # stopped early (max_steps or Ctrl-C)
        if bar:
            bar.close()
        if self.run is not None:
            self.save_checkpoint()
            self.run.write_metrics(self, time.perf_counter() - t0, images_seen)
        return self.history

    def _should_stop(self) -> bool:
        return self.stop_requested or (self.max_steps is not None and self.step >= self.max_steps)

    def _record_step(self, record: dict, bar) -> None:
        self.history.steps.append(record)
        if self.run is not None:
            self.run.log_step(record)
        if bar:
            bar.update(record, self.history.steps)

    def _end_epoch(self, epoch: int, val_batches, wall_s: float, images_seen: int) -> None:
        """Close an open motivated episode, evaluate both models, write the summary row and checkpoint."""
        self.pair.switch_to("base", self.backend)   # no-op when the base is active
        self.position = (epoch + 1, 0)
        steps = [s for s in self.history.steps if s["epoch"] == epoch]
        row = {"epoch": epoch, "train_loss": sum(s["loss"] for s in steps) / max(len(steps), 1),
                   "lr": steps[-1]["lr"] if steps else float("nan"),
                   "motivated_fraction": sum(s["active"] == "motivated" for s in steps) / max(len(steps), 1),
                   "switches": sum(s["switched"] for s in steps), "wall_s": wall_s}
        if val_batches is not None:
            for name in MODELS:
                loss, top1, top5 = self.evaluate(name, val_batches)
                row.update({f"{name}_eval_loss": loss, f"{name}_top1": top1, f"{name}_top5": top5})
        self.history.epochs.append(row)
        if self.run is not None:
            self.run.log_epoch(row)
            self.save_checkpoint()

    @torch.no_grad()
    def evaluate(self, name: str, batches) -> tuple[float, float, float]:
        """Mean loss, top-1 and top-5 accuracy (%) of one model on `batches` (eval mode)."""
        model = self.pair.model(name)
        was_training = model.training
        model.eval()
        self._in_train_mode.discard(name)
        total, loss_sum, top1, top5 = 0, 0.0, 0, 0
        for images, labels in _batches(batches, 0, 0, train=False):
            logits = self.forward[name](images).float()
            loss_sum += F.cross_entropy(logits, labels, reduction="sum").item()
            top = logits.topk(min(5, logits.shape[1]), dim=1).indices
            top1 += (top[:, 0] == labels).sum().item()
            top5 += (top == labels[:, None]).any(1).sum().item()
            total += len(labels)
        model.train(was_training)
        return loss_sum / max(total, 1), 100.0 * top1 / max(total, 1), 100.0 * top5 / max(total, 1)

    # -- checkpoints ----------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "arena": self.pair.arena.data.detach().cpu().clone(),
            "active": self.pair.active, "step": self.step, "position": list(self.position),
            "condition": self.condition.state_dict(),
            "optimizers": {m: opt.state_dict() for m, opt in self.optimizers.items()},
            "optimizer": self.optimizer_name,
            "weights_map": self.pair.weights_map.to_json(),
            "rng": checkpoint.rng_state(), "history": {"steps": self.history.steps, "epochs": self.history.epochs},
        }

    def save_checkpoint(self) -> None:
        """Write `last.pt` atomically; refuses to overwrite a good checkpoint with non-finite weights."""
        if self.run is None:
            return
        values = self.pair.arena.data[:-1]   # values and optimizer state; grads are not saved state
        if not torch.isfinite(values).all():
            raise TrainingDivergedError(f"weights or optimizer state are not finite at step {self.step}; "
                                        f"kept the previous checkpoint {self.run.checkpoint_path}")
        checkpoint.save_atomic(self.state_dict(), self.run.checkpoint_path)

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore arena, optimizer and condition state, position, RNG and history from a checkpoint."""
        path = Path(path)
        if path.is_dir():
            path = RunDir(path).checkpoint_path
        state = checkpoint.load(path)
        checkpoint.check_pair(state, self.pair, path)
        if state["optimizer"] != self.optimizer_name or state["arena"].shape[0] != self.pair.arena.data.shape[0]:
            raise checkpoint.CheckpointError(f"checkpoint {path} was trained with optimizer {state['optimizer']!r}, "
                                             f"not {self.optimizer_name!r}")
        with torch.no_grad():
            self.pair.arena.data.copy_(state["arena"])
        self.pair.active = state["active"]
        self.step, self.position = state["step"], tuple(state["position"])
        self.condition.load_state_dict(state["condition"])
        for m, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][m])
        checkpoint.set_rng_state(state["rng"])
        self.history = History(**state["history"])


def _batches(loader, epoch: int, start_batch: int, train: bool = True):
    """Batches of one epoch from `start_batch`; fastmotive loaders resume exactly, others are skipped into."""
    if hasattr(loader, "epoch_batches"):
        if start_batch >= len(loader):
            return iter(())
        return loader.epoch_batches(epoch, start_batch=start_batch) if train else loader.epoch_batches(0)
    it = iter(loader)
    for _ in range(start_batch):
        next(it, None)
    return it


class _StopOnSigint:
    """First Ctrl-C asks the loop to stop after the current batch (then it checkpoints); a second one kills."""

    def __init__(self, trainer: Trainer):
        self.trainer = trainer

    def __enter__(self):
        try:
            self.previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:   # not the main thread: leave signals alone
            self.previous = None
        return self

    def _handle(self, signum, frame):
        self.trainer.stop_requested = True
        signal.signal(signal.SIGINT, self.previous or signal.default_int_handler)

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


class _ProgressBar:
    """A rich bar showing loss, the active model, the motivated fraction and images/sec."""

    def __init__(self, total: int, done: int):
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
        self.progress = Progress(TextColumn("[bold]train"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                                 TimeRemainingColumn(), TextColumn("{task.fields[info]}"))
        self.task = self.progress.add_task("train", total=total, completed=done, info="")
        self.progress.start()
        self.t0, self.images = time.perf_counter(), 0

    def update(self, record: dict, steps: list[dict]) -> None:
        motivated = sum(s["active"] == "motivated" for s in steps) / len(steps)
        self.images += record["images"]
        rate = self.images / max(time.perf_counter() - self.t0, 1e-9)
        info = f"loss {record['loss']:.3f}  {record['active']:9}  motivated {motivated:5.1%}  {rate:.0f} img/s"
        self.progress.update(self.task, advance=1, info=info)

    def close(self) -> None:
        self.progress.stop()
