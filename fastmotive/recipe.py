"""The ``fastmotive train`` recipe: a TrainConfig in, a trained run directory out (torchtune's setup/train shape)."""
from __future__ import annotations

import dataclasses
import re
import shlex
from pathlib import Path

import torch

from . import checkpoint, settings
from .data import FirstBatches, TrainAugment
from .distributed import Distributed, convert_sync_bn
from .evaluation import CalibrationBatches, calibration_images
from .families import parse_arch
from .flops import pair_flops
from .initial_weights import load_initial_weights
from .loggers import check_available
from .errors import ConfigError
from .rundir import RunDir, RunLock
from .run_setup import build_pair, model_kwargs_for, open_data
from .trainer import History, Trainer


def run_dir_for(config) -> Path:
    """The run directory: the resumed one, or ``output/experiment`` (default name: arch-dataset-seed)."""
    if config.resume:
        return Path(config.resume)
    if config.experiment:
        name = config.experiment
    else:
        _, base, motivated = parse_arch(config.arch)
        models = base if motivated is None else f"{base}-{motivated.replace(base.split('_')[0] + '_', '')}"
        name = f"{models}-{config.dataset or 'digits'}-s{config.seed}"
    return Path(config.output) / re.sub(r"[^\w.-]", "_", name)


def _check_classes(config, info) -> None:
    if info.num_classes < 2:
        raise ConfigError(f"dataset {info.name} has {info.num_classes} class: classification needs at least 2")
    if config.num_classes is not None and config.num_classes < info.num_classes:
        raise ConfigError(f"--num-classes {config.num_classes} is fewer than the {info.num_classes} classes of "
                          f"{info.name}: drop the flag (the default is the dataset's) or give at least "
                          f"{info.num_classes}")


def _same_global_batch(config, saved: dict, world_size: int):
    """A run resumed on another number of processes keeps its global batch (so its epoch plan, position and
    schedule are the same): -b becomes the saved global batch over the new process count."""
    saved_world = saved.get("world_size", 1)
    if saved_world == world_size:
        return config
    global_batch = saved.get("global_batch_size", config.batch_size * saved_world)
    if global_batch % world_size:
        raise ConfigError(f"--resume {config.resume}: the run's global batch of {global_batch} images does not "
                          f"split over {world_size} processes; resume on a process count that divides it")
    return dataclasses.replace(config, batch_size=global_batch // world_size)


def check_single_model(config, explicit) -> object:
    """A single-model run (``--arch resnet50``) never switches: its condition is "never"; another one given on
    the command line is refused."""
    if parse_arch(config.arch).motivated is not None or config.condition == "never":
        return config
    if "condition" in explicit:
        raise ConfigError(f"--arch {config.arch} trains one model alone: --condition {config.condition} has no "
                          "motivated model to switch to (drop it, or give BASE:MOTIVATED)")
    return settings.replace(config, condition="never")


class TrainRecipe:
    """Builds the data, the pair and the Trainer from a TrainConfig, then trains.

    Args:
        config: the settings (fastmotive/settings.py).
        explicit: settings given on the command line; on a resume, those that contradict the run's args.yaml
            are refused (the rest come from args.yaml).
        loaders: optional function(recipe) -> (train batches, val batches) replacing the dataset's loaders
            (tune-k's folds); called once the pair exists.
        record_extra: more keys for args.yaml (tune-k's fold).
    """

    def __init__(self, config, explicit: frozenset[str] = frozenset(), *, loaders=None,
                 record_extra: dict | None = None):
        self.config, self.explicit = config, frozenset(explicit)
        self.loaders, self.record_extra = loaders, dict(record_extra or {})
        self.interrupted = self.finished = False
        self._lock: RunLock | None = None

    def setup(self) -> None:
        """Check every setting, open the data and build the pair and Trainer; only then lock the run directory
        and write into it. A new run never takes over a directory that holds one. Under torchrun (or --nproc)
        every process runs this; rank 0 alone locks, writes and prints."""
        config = self.config
        self.dist = Distributed.from_env(device=config.device)
        if config.resume:
            saved = RunDir(config.resume).read_args()
            config = settings.resume_config(config, saved, self.explicit, config.resume)
            config = self.config = _same_global_batch(config, saved, self.dist.world_size)
        settings.check_combinations(config)
        check_available(wandb=config.log_wandb)   # before any file is written
        config = self.config = check_single_model(config, self.explicit)
        self.run_dir = run_dir_for(config)
        self._check_run_dir()
        if config.resume and self._finished_epochs() >= config.epochs:
            self.finished = True
            return
        device = self.dist.device_for(config.device)
        self.train_batches, self.val_batches, self.info = open_data(config, device, self.dist.rank,
                                                                    self.dist.world_size)
        _check_classes(config, self.info)
        model_kwargs = model_kwargs_for(config, self.info)
        self._build_pair(model_kwargs, device)
        if self.loaders is not None:
            self.train_batches, self.val_batches = self.loaders(self)
        # the whole split, not the budget, and un-mixed batches (Mixup's blends are no images to calibrate on)
        self.calibration_batches = CalibrationBatches(self.train_batches)
        augment = TrainAugment.from_config(config, num_classes=model_kwargs["num_classes"])
        if augment is not None:
            self.train_batches = augment.wrap(self.train_batches)
        self._apply_budget()
        if len(self.train_batches) < config.grad_accum_steps:
            raise ConfigError(f"--grad-accum-steps {config.grad_accum_steps} is more than the "
                              f"{len(self.train_batches)} batches of an epoch: no optimizer step would be taken")
        images = calibration_images(config.bn_calibrate, self.info.train_size)
        config = self.config = settings.replace(config, bn_calibrate=images)   # args.yaml records the count
        self.trainer = Trainer(self.pair, config, output=self.run_dir, dist=self.dist,
                               flops=pair_flops(self.pair, self.info.img_size))   # metrics.json: FLOPs, F_{X-Y}
        self.dist.barrier("the end of set-up")   # every rank has checked the run directory before rank 0 writes
        if self.dist.is_main:
            self._lock = RunLock(self.run_dir).acquire()
            if not config.resume:
                RunDir(self.run_dir).write_args({**settings.record(config), "model_kwargs": model_kwargs,
                                                 **self._job_record(), **self.record_extra})
        self._say(f"run {self.run_dir}: {config.arch} on {self.info.name} ({self.info.train_size} train / "
                  f"{self.info.val_size} val, {self.info.num_classes} classes, {self.info.img_size}px, loader "
                  f"{self.info.loader}), {device}, condition {config.condition}, {config.epochs} epochs x "
                  f"{len(self.train_batches)} batches")
        if self.dist.enabled:
            job = self._job_record()
            self._say(f"  {job['world_size']} processes: global batch {job['global_batch_size']} images "
                      f"(-b {config.batch_size} per process), lr {config.lr:g}")

    def _check_run_dir(self) -> None:
        """Refuse a run directory in use, or one holding another run when this is a new one."""
        RunLock(self.run_dir).check_free()
        if not self.config.resume and RunDir(self.run_dir).holds_run():
            run = shlex.quote(str(self.run_dir))
            raise ConfigError(f"{self.run_dir} already holds a run; continue it with `fastmotive train --resume "
                              f"{run}`, or start a new one with another --experiment (or --output)")

    def _build_pair(self, model_kwargs: dict, device) -> None:
        """The pair with the seed's initial weights (or --initial-checkpoint's), the same on every rank."""
        config = self.config
        torch.manual_seed(config.seed)   # both models' initial weights depend on the seed only
        self.pair = build_pair(config, model_kwargs, device)
        if config.sync_bn:
            convert_sync_bn(self.pair, self.dist)
        if config.head_init == "zero":
            self._zero_heads()
        if config.initial_checkpoint and not config.resume:
            dropped = load_initial_weights(self.pair, config.initial_checkpoint)
            self._say(f"  initial weights: {config.initial_checkpoint}" +
                      (f" (classifier left out, another class count: {', '.join(dropped)})" if dropped else ""))
        self.dist.broadcast_(self.pair.arena.data, "the initial weights")   # as DDP does: rank 0's everywhere

    def _job_record(self) -> dict:
        """What args.yaml records of the job's shape: processes and the global batch (-b is per process)."""
        return {"world_size": self.dist.world_size, "global_batch_size": self.config.batch_size * self.dist.world_size}

    def _say(self, text: str) -> None:
        if self.dist.is_main:
            print(text)

    def _apply_budget(self) -> None:
        config = self.config
        if config.epoch_batches:
            self.train_batches = FirstBatches(self.train_batches, config.epoch_batches)
        if config.val_batches:
            self.val_batches = FirstBatches(self.val_batches, config.val_batches)
        if self.loaders is not None or config.epoch_batches or config.val_batches:
            self._say(f"  budget: {len(self.train_batches)} training batches per epoch, "
                  f"{len(self.val_batches)} validation batches")

    def _zero_heads(self) -> None:
        """Zero both classifier heads in place (in the arena), so training starts at loss ln(classes)."""
        with torch.no_grad():
            for which in self.pair.members:
                for p in self.pair.classifier(which).parameters():
                    p.zero_()

    def _finished_epochs(self) -> int:
        """Epochs the checkpoint of the run being resumed has completed."""
        return int(checkpoint.load(RunDir(self.run_dir).checkpoint_path)["position"][0])

    def train(self) -> History | None:
        """Train (after `setup`); None when the resumed run had already finished (nothing is changed)."""
        run = shlex.quote(str(self.run_dir))
        if self.finished:
            print(f"{self.run_dir} has finished its {self.config.epochs} epochs; nothing to do (its files are "
                  f"unchanged). Export it with: fastmotive export {run}")
            return None
        try:
            history = self.trainer.fit(self.train_batches, self.val_batches,
                                       resume=self.run_dir if self.config.resume else None,
                                       calibration_batches=self.calibration_batches)
        finally:
            if self._lock is not None:
                self._lock.release()
            self.dist.close()
        self.interrupted = self.trainer.stop_requested
        if not self.dist.is_main:
            return history
        if self.interrupted:
            print(f"interrupted at step {self.trainer.step}; checkpoint written. "
                  f"Continue with: fastmotive train --resume {run}")
        single = len(self.pair.members) == 1
        for row in history.epochs[-3:]:
            line = "epoch {epoch:3d}  train loss {train_loss:.4f}  base top1 {base_top1:6.2f}".format(**row)
            if not single:
                line += ("  motivated top1 {motivated_top1:6.2f}  motivated {motivated_fraction:5.1%}  "
                         "switches {switches}").format(**row)
            print(line)
        print(f"done; run directory {run} (metrics.json, summary.csv, plot.png); "
              f"export {'the model' if single else 'both models'} with: fastmotive export {run}")
        return history
