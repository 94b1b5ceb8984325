"""Motivation-aware training: the paper's Algorithm 1 on a MotivatedPair (Acheli & Gaaloul, Sec. 3).

For each batch: forward and backward on the *active* model only; step that model's optimizer at the
shared schedule's lr for the global step; hand the loss to the condition; switch if it says so (the
switch takes effect from the next batch). Every epoch ends on the base: an open motivated episode is
closed. Both models are evaluated on the validation batches after each epoch.

The step itself is a seam (`fastmotive.training.step`), the run's position and running totals with the checkpoint
built from them are `fastmotive.training.state`, Ctrl-C is `fastmotive.training.interrupt`, the bar and log lines are
`fastmotive.training.progress`.
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from fastmotive.conditions import Condition, Signal, parse_condition
from fastmotive.config import settings
from fastmotive.core.growth import init_growth
from fastmotive.core.pair import MotivatedPair, wants_channels_last
from fastmotive.data.loaders.protocol import as_epoch_loader
from fastmotive.distributed import Distributed, synced_view
from fastmotive.errors import TrainingDivergedError
from fastmotive.optim import OPTIMIZERS, create_optimizer
from fastmotive.run import checkpoint
from fastmotive.run.directory import RunDir
from fastmotive.training.batches import check_accumulation, optimizer_steps, timed
from fastmotive.training.epoch_evaluation import EpochEvaluation
from fastmotive.training.evaluation import CalibrationBatches, calibration_images, evaluate
from fastmotive.training.interrupt import StopOnSignal
from fastmotive.training.loggers import RunLoggers
from fastmotive.training.progress import NoProgress, open_progress
from fastmotive.training.schedules import make_schedule
from fastmotive.training.state import TrainState, checkpoint_state, restore
from fastmotive.training.step import StepFn, StepResult, TrainStep, count_images, make_loss

__all__ = ["History", "StepFn", "StepResult", "Trainer"]

@dataclass
class History:
    """What a run recorded: one dict per batch and one summary row per epoch (also steps.csv, summary.csv)."""

    steps: list[dict] = field(default_factory=list)    # step epoch batch active loss lr images switched
    epochs: list[dict] = field(default_factory=list)   # one summary row per epoch


class Trainer:
    """Trains a pair with Algorithm 1.

    Args:
        pair: the MotivatedPair (its arena holds both models and both optimizers' state; it owns the switch
            backend).
        config: the settings (`fastmotive.config.settings.TrainConfig`; None: the defaults). The trainer reads the
            optimizer (opt, lr, momentum, weight_decay, decay_1d), the schedule (sched, warmup_epochs,
            decay_epochs, decay_rate, min_lr), epochs, seed, smoothing, condition, checkpoint_every,
            max_steps, amp, compile, channels_last, no_progress and log_interval.
        condition: when the motivated model trains: a Condition, which overrides ``config.condition``, or a
            spec such as "streak:2", which sets it.
        output: run directory for logs, metrics and checkpoints (None = no files).
        flops: {"base": FlopCount, "motivated": FlopCount} for metrics.json (fastmotive/flops.py).
        step_fn: trains one batch (`fastmotive.training.step.StepFn`); None: `default_step()`.
        compile_backend: the torch.compile backend when ``config.compile`` is set (tests pass a counting one).
        optimizer_kwargs: extra arguments for create_optimizer (betas, eps, nesterov, ...).
        dist: the process group of a multi-process run (`fastmotive.distributed.Distributed`; None: this
            process alone). Every rank builds the same Trainer and calls fit() with its shards of the batches;
            rank 0 writes the logs and checkpoints (see docs/distributed.md).
        **settings: TrainConfig fields overriding `config`, plus the aliases optimizer (opt), schedule
            (sched) and progress (not no_progress).
    Raises:
        TypeError: an unknown keyword.  ConfigError: a setting's value is not valid.
    """

    def __init__(self, pair: MotivatedPair, config=None, *, condition: Condition | str | None = None,
                 output=None, flops: dict | None = None, step_fn: StepFn | None = None,
                 compile_backend="inductor", optimizer_kwargs: dict | None = None, dist=None, **settings_):
        if isinstance(condition, str):   # a spec such as "streak:2" is a setting
            settings_, condition = {**settings_, "condition": condition}, None
        self.config = c = settings.with_keywords(config, settings_, caller="Trainer()")
        self.pair, self.flops = pair, flops
        if len(pair.members) == 1:   # a single model: nothing to switch to, no differential tensors
            c = self.config = settings.for_single_model(c, settings_, "Trainer() of a single model")
        self.condition = condition if condition is not None else parse_condition(c.condition, seed=c.seed)
        self.dist = dist if dist is not None else Distributed.single()
        # every rank checkpoints (a collective; rank 0 writes), only rank 0 writes the logs
        self.checkpoint_path = RunDir(output).checkpoint_path if output is not None else None
        self.run = RunDir(output) if output is not None and self.dist.is_main else None
        pair.set_state_rows(len(OPTIMIZERS[c.opt].state_rows))   # before taking segments: may re-bind
        pair.set_channels_last(wants_channels_last(c.channels_last, pair))   # before compiling: re-binds
        self.growth = init_growth(pair, c.growth_init) if len(pair.members) > 1 else None   # a resume overwrites
        # timm models list tensors never to decay (ViT: pos_embed, cls_token); both members share the names
        no_decay = tuple(getattr(pair.base, "no_weight_decay", lambda: ())())
        optimizer_kwargs = {**_optimizer_flags(c), **(optimizer_kwargs or {})}
        self.optimizers = {m: create_optimizer(c.opt, pair.segment(m), lr=c.lr, momentum=c.momentum,
                                               weight_decay=c.weight_decay, decay_1d=c.decay_1d,
                                               no_weight_decay=no_decay, **optimizer_kwargs)
                           for m in pair.members}
        self.forward = {m: pair.model(m) for m in pair.members}
        if c.compile:
            # Each model compiles once: parameters never move, so switches trigger no guard failure.
            mode = None if c.compile == "default" else c.compile
            self.forward = {m: torch.compile(pair.model(m), mode=mode, backend=compile_backend)
                            for m in pair.members}
        self.step_fn = step_fn if step_fn is not None else self.default_step()
        self.history = History()
        self.loggers = RunLoggers([])      # TensorBoard / W&B, opened by fit() on rank 0
        self.state = TrainState()          # global step, position (epoch, next batch), running totals
        self._stop = StopOnSignal()
        self._checkpointed_at: int | None = None   # step of the checkpoint on disk, when one is known
        self._session: tuple[float, float] | None = None   # fit()'s start and the run's wall time before it

    def default_step(self) -> TrainStep:
        """Forward, backward and optimizer step on the named model, with this trainer's optimizers."""
        c = self.config
        return TrainStep({m: self.pair.model(m) for m in self.pair.members}, self.forward, self.optimizers,
                         loss=make_loss(smoothing=c.smoothing, bce=c.bce_loss), amp=c.amp,
                         clip_grad=c.clip_grad, clip_mode=c.clip_mode,
                         grad_norm="grad_norm" in self.condition.needs, dist=self.dist)

    @property
    def step(self) -> int:
        """Global step: batches trained so far, by both models."""
        return self.state.step

    @property
    def stop_requested(self) -> bool:
        """Whether Ctrl-C or SIGTERM stopped the last fit()."""
        return self._stop.requested

    @property
    def stop_status(self) -> int:
        """128 + the signal that stopped the last fit() (130 for Ctrl-C, 143 for SIGTERM), or 0."""
        return self._stop.exit_status

    # -- the loop (Algorithm 1) -----------------------------------------------------------------------
    def fit(self, train_batches, val_batches=None, resume: str | Path | None = None, *,
            epochs: int | None = None, calibration_batches=None) -> History:
        """Train over `train_batches` (a re-iterable of (images, labels)) until `epochs` epochs in all
        (default: the config's); a later fit() with more epochs continues the run. See the module doc.

        Before each evaluation the BatchNorm statistics of the models `stale_members` names are calibrated from
        ``config.bn_calibrate`` images of `calibration_batches` (default: `CalibrationBatches(train_batches)`),
        then restored, so training is the same with calibration on or off (`EpochEvaluation`)."""
        c, epochs = self.config, self.config.epochs if epochs is None else epochs
        train_batches = as_epoch_loader(train_batches)
        torch.manual_seed(c.seed)
        if resume is not None:
            self.load_checkpoint(resume)
        self.pair.arena.check_bound()
        accum = c.grad_accum_steps
        check_accumulation(len(train_batches), accum)
        n = len(train_batches) // accum   # optimizer steps per epoch; a last partial group is dropped
        schedule, holdout = self._schedule(epochs, n), self._holdout_batch(train_batches, val_batches)
        self._evaluation = EpochEvaluation(
            self.pair, c, val_batches, calibration_batches or CalibrationBatches(train_batches),
            calibration_images(c.bn_calibrate, n * accum * c.batch_size), self.forward, self.dist, self.run)
        self._session = (time.perf_counter(), self.state.wall_s)   # a resumed run's wall time adds up
        self._stop = StopOnSignal()
        self.loggers = RunLoggers.open(self.run.path, settings.record(c), tensorboard=c.log_tensorboard,
                                       wandb=c.log_wandb, resume_step=self.step) if self.run else RunLoggers([])
        progress = open_progress(bar=not c.no_progress, log_interval=c.log_interval, total=epochs * n,
                                 done=self.step) if self.dist.is_main else NoProgress()
        with self._stop, contextlib.closing(progress), contextlib.closing(self.loggers):
            for epoch in range(self.state.epoch, epochs):
                start, stopped = self.state.batch, False
                if start == 0 and self.condition.start_epoch(epoch, n):
                    self.pair.switch_to("motivated")
                for batch, (data_s, (images, labels)) in enumerate(
                        timed(optimizer_steps(train_batches, epoch, start, accum, n)), start):
                    began = time.perf_counter()
                    lr, active, last = schedule(self.step), self.pair.active, batch == n - 1
                    result = self.step_fn(active, images, labels, lr, self.step)   # fwd, bwd, optimizer step
                    self._check_finite(result.loss, epoch, batch)
                    val_loss = self._holdout_loss(holdout) if holdout is not None else None
                    signal = Signal(result.loss, epoch, batch, n, result.grad_norm, val_loss)
                    # The epoch ends on the base (`_end_epoch` closes an open episode), so an episode that
                    # would open on its last batch is skipped: it would close at once.
                    target = "motivated" if self.condition.update(signal) and not last else "base"
                    if target != active and not last:
                        self.pair.switch_to(target)   # takes effect from the next batch
                    self._record(dict(step=self.step, epoch=epoch, batch=batch, active=active,
                                      loss=result.loss, lr=lr, images=count_images(labels) * self.dist.world_size,
                                      switched=target != active), progress, time.perf_counter() - began, data_s)
                    if c.check_sync and self.step % c.check_sync == 0:
                        self.dist.check_sync(synced_view(self.pair, buffers=c.sync_bn), self.step)
                    stopped = self._should_stop() and not last   # a stop on the last batch ends the epoch
                    if stopped:
                        break
                    if c.checkpoint_every and self.step % c.checkpoint_every == 0:
                        self.save_checkpoint()
                if stopped:
                    break
                self._end_epoch(epochs, progress)
                if self._should_stop():
                    break
        if self.checkpoint_path is not None and self._checkpointed_at != self.step:   # the epoch's end wrote it
            self.save_checkpoint()
        if self.run is not None:
            self.run.close()
            self.run.write_metrics(self.history, wall_s=self._wall_s(), images=self.state.images, flops=self.flops,
                                   times=self.state)
        return self.history

    def _wall_s(self) -> float:
        """Wall time of the whole run: the sessions before this one (as their last checkpoints had it) and this."""
        start, before = self._session
        return before + time.perf_counter() - start

    def _schedule(self, epochs: int, steps_per_epoch: int):
        c = self.config
        return make_schedule(c.sched, lr=c.lr, total_steps=epochs * steps_per_epoch,
                             steps_per_epoch=steps_per_epoch, warmup_epochs=c.warmup_epochs, min_lr=c.min_lr,
                             decay_epochs=c.decay_epochs, decay_rate=c.decay_rate, warmup_lr=c.warmup_lr,
                             warmup_prefix=c.warmup_prefix)

    def _should_stop(self) -> bool:
        max_steps = self.config.max_steps
        # a signal to any rank stops every rank after the same step (agreed first: a collective on every call)
        return self._stop.agreed(self.dist, self.step) or (max_steps is not None and self.step >= max_steps)

    def _record(self, step: dict, progress, train_s: float, data_s: float) -> None:
        """One batch's record to the history, the totals, steps.csv and the bar or log line; all O(1)."""
        self.history.steps.append(step)
        self.state.record(step, train_s, data_s)
        if self.run is not None:
            self.run.log_step(step)
        self.loggers.step(step)
        progress.update(step, self.state)

    def _check_finite(self, loss: float, epoch: int, batch: int) -> None:
        if math.isfinite(loss):
            return
        saved = (f"the checkpoint {self.run.checkpoint_path} from step {self._checkpointed_at} is kept"
                 if self._checkpointed_at is not None else "no checkpoint was written in this run")
        raise TrainingDivergedError(f"loss is {loss} at step {self.step} (epoch {epoch}, batch {batch}) on "
                                    f"the {self.pair.active} model; {saved}. Lower the learning rate (--lr), "
                                    "or raise --warmup-epochs")

    def _end_epoch(self, epochs: int, progress) -> None:
        """Close an open motivated episode, evaluate the models when due, report and write the summary row,
        checkpoint."""
        self.pair.switch_to("base")   # no-op when the base is active
        self.pair.arena.check_bound(full=False)   # the switches check only now and then (core/pair.py)
        epoch = self.state.epoch
        row = self.state.end_epoch(self._wall_s())
        self._distribute_bn()
        row.update(self._evaluation(epoch, epochs, self.state.steps_since_motivated()))
        self.state.eval_s += row.get("eval_s") or 0.0
        self.history.epochs.append(row)
        if self.run is not None:
            self.run.log_epoch(row)
        self.loggers.epoch(row)
        progress.epoch(row)
        if self.checkpoint_path is not None:
            self.save_checkpoint()

    def _distribute_bn(self) -> None:
        """--dist-bn: the ranks' BatchNorm running statistics made identical (averaged, or rank 0's) before an
        evaluation or a checkpoint, as timm's distribute_bn; SyncBatchNorm keeps them identical already."""
        if self.dist.enabled and not self.config.sync_bn:
            self.dist.reduce_bn([self.pair.model(m) for m in self.pair.members], self.config.dist_bn)

    def _holdout_batch(self, train_batches, val_batches):
        """'A held-out training batch' for conditions watching a validation loss: the first val batch."""
        if "val_loss" not in self.condition.needs:
            return None
        return next(iter(val_batches if val_batches is not None else train_batches))

    @torch.no_grad()
    def _holdout_loss(self, holdout) -> float:
        name = self.pair.active
        self.pair.model(name).eval()   # the next step puts it back in train mode
        images, labels = holdout
        # each rank holds its own validation shard: the mean over ranks keeps the decisions identical
        return self.dist.mean(F.cross_entropy(self.forward[name](images), labels).item())

    def evaluate(self, name: str, batches) -> tuple[float, float, float]:
        """Mean loss, top-1 and top-5 accuracy (%) of one model on `batches` (eval mode, raw statistics)."""
        return evaluate(self.pair.model(name), batches, self.forward[name])

    # -- checkpoints ----------------------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        """Write `last.pt` atomically (rank 0; every rank of a multi-process run must call it); refuses to
        replace a checkpoint with non-finite weights."""
        if self.checkpoint_path is None:
            return
        self._distribute_bn()
        if self._session is not None:   # inside fit(): the checkpoint carries the run's wall time so far
            self.state.wall_s = self._wall_s()
        checkpoint.save_on_main(self.dist, self._checkpoint_state, self.checkpoint_path)
        self._checkpointed_at = self.step

    def _checkpoint_state(self) -> dict:
        state = checkpoint_state(self.pair, self.state, self.condition, self.optimizers, self.config.opt)
        if not _all_finite(state["arena"]):
            if self._checkpointed_at is not None:
                kept = f"kept the checkpoint from step {self._checkpointed_at}"
            else:
                kept = "kept the existing one" if self.checkpoint_path.exists() else \
                    "no checkpoint of this run was written"
            raise TrainingDivergedError(f"weights or optimizer state are not finite at step {self.step}; "
                                        f"nothing was saved to {self.checkpoint_path} ({kept})")
        return state

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore the pair, optimizer and condition state, position, totals and RNG from a checkpoint (a
        file, or a run directory's last.pt), and rebuild the history from that run directory's logs."""
        path = Path(path)
        run = RunDir(path if path.is_dir() else path.parent)
        if path.is_dir():
            path = run.checkpoint_path
        saved = checkpoint.for_rank(checkpoint.load(path), self.dist.rank, self.dist.world_size)
        state = restore(saved, path, self.pair, self.condition, self.optimizers, self.config.opt)
        self.state = state
        if self.dist.is_main:   # the logs are rank 0's
            self.history = History(*run.read_logs(steps=state.step, epochs=state.epoch))
        if self.run is not None:
            self.run.rewrite_logs(self.history)   # drop log lines written after the checkpoint
        if self.checkpoint_path is not None and path.resolve() == self.checkpoint_path.resolve():
            self._checkpointed_at = state.step


def _all_finite(tensor: torch.Tensor, chunk: int = 1 << 20) -> bool:
    """Whether every element is finite, checked a chunk at a time (no mask the size of the arena)."""
    flat = tensor.reshape(-1)
    return all(bool(torch.isfinite(flat[i:i + chunk]).all()) for i in range(0, flat.numel(), chunk))


def _optimizer_flags(config) -> dict:
    """create_optimizer arguments from --opt-eps and --opt-betas (absent: the optimizer's defaults)."""
    flags = {}
    if config.opt_eps is not None:
        flags["eps"] = config.opt_eps
    if config.opt_betas is not None:
        flags["betas"] = tuple(config.opt_betas)
    return flags
