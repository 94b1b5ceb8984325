"""The ``fastmotive train`` recipe: a TrainConfig in, a trained run directory out (torchtune's setup/train shape)."""
from __future__ import annotations

import dataclasses
import re
import shlex
from pathlib import Path

import torch

from fastmotive.config import settings
from fastmotive.config.combinations import check_combinations, check_data_effective, check_effective
from fastmotive.data import FirstBatches, TrainAugment
from fastmotive.distributed import Distributed, convert_sync_bn
from fastmotive.errors import ConfigError
from fastmotive.core.switch import resolve_backend
from fastmotive.families import Arch, parse_arch
from fastmotive.flops import pair_flops
from fastmotive.run import checkpoint
from fastmotive.run.directory import RunDir
from fastmotive.run.initial_weights import load_initial_weights
from fastmotive.run.lock import RunLock
from fastmotive.run.parts import build_pair, model_kwargs_for, open_data
from fastmotive.training.evaluation import CalibrationBatches, calibration_images
from fastmotive.training.loggers import check_available
from fastmotive.training.batches import check_accumulation
from fastmotive.training.trainer import History, Trainer


def run_dir_for(config, arch: Arch | None = None) -> Path:
    """The run directory: the resumed one, or ``output/experiment`` (default name: arch-dataset-seed; `arch` is
    the parsed ``config.arch`` when the caller has it)."""
    if config.resume:
        return Path(config.resume)
    if config.experiment:
        name = config.experiment
    else:
        _, base, motivated = arch or parse_arch(config.arch)
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


class TrainRecipe:
    """Builds the data, the pair and the Trainer from a TrainConfig, then trains.

    Args:
        config: the settings (fastmotive/config/settings.py).
        explicit: settings given on the command line; on a resume, those that contradict the run's args.yaml
            are refused (the rest come from args.yaml).
        loaders: optional function(config, device, rank, world_size) -> (train batches, val batches,
            DatasetInfo) opening the data in place of the dataset's loaders (tune-k's folds).
        record_extra: more keys for args.yaml (tune-k's fold).
    """

    def __init__(self, config, explicit: frozenset[str] = frozenset(), *, loaders=None,
                 record_extra: dict | None = None):
        self.config, self.explicit = config, frozenset(explicit)
        self.loaders, self.record_extra = loaders, dict(record_extra or {})
        self.interrupted = self.finished = self.from_start = False
        self.exit_status = 0   # 128 + the signal that stopped training (130 Ctrl-C, 143 SIGTERM)
        self._lock: RunLock | None = None

    def setup(self) -> None:
        """Check every setting, open the data and build the pair and Trainer; only then lock the run directory
        and write into it. A new run never takes over a directory that holds one. Under torchrun (or --nproc)
        every process runs this; rank 0 alone locks, writes and prints. Each step returns its product."""
        self.dist = Distributed.from_env(device=self.config.device)
        self.config, self.arch = self._setup_config()
        self.run_dir = self._setup_run_dir()
        if self.finished:
            return
        device = self.dist.device_for(self.config.device)
        backend = resolve_backend(self.config.switch_backend, device)   # before the data: it fails fast
        self.train_batches, self.val_batches, self.info = self._setup_data(device)
        self.model_kwargs = model_kwargs_for(self.config, self.info)
        self.pair = self._setup_pair(device, backend)
        self.calibration_batches, self.train_batches, self.val_batches = self._setup_batches()
        self.config = settings.replace(self.config, bn_calibrate=calibration_images(   # args.yaml records the count
            self.config.bn_calibrate, self.info.train_size))
        self.trainer = Trainer(self.pair, self.config, output=self.run_dir, dist=self.dist,
                               flops=pair_flops(self.pair, self.info.img_size))   # metrics.json: FLOPs, F_{X-Y}
        self._write_run_dir()
        self._announce(device)

    def _setup_config(self):
        """The settings (a resume's from its args.yaml, every combination checked) and the parsed arch."""
        config = self.config
        if config.resume:
            saved = RunDir(config.resume).read_args()
            config = settings.resume_config(config, saved, self.explicit, config.resume)
            config = _same_global_batch(config, saved, self.dist.world_size)
        check_combinations(config)
        check_available(wandb=config.log_wandb)   # before any file is written
        arch = parse_arch(config.arch)
        if arch.motivated is None:
            config = settings.for_single_model(config, self.explicit, f"--arch {config.arch}")
        check_effective(config, self.explicit, single_model=arch.motivated is None, world_size=self.dist.world_size)
        return config, arch

    def _setup_run_dir(self) -> Path:
        """The run directory, refused when in use or holding another run; a finished resumed run is marked."""
        run_dir = run_dir_for(self.config, self.arch)
        RunLock(run_dir).check_free()
        self._refuse_a_held_run(run_dir)
        # a run killed before its first checkpoint resumes from its start, with the settings it recorded
        self.from_start = bool(self.config.resume) and not RunDir(run_dir).checkpoint_path.exists()
        self.finished = bool(self.config.resume) and not self.from_start and \
            _finished_epochs(run_dir) >= self.config.epochs
        return run_dir

    def _refuse_a_held_run(self, run_dir: Path) -> None:
        if not self.config.resume and RunDir(run_dir).holds_run():
            run = shlex.quote(str(run_dir))
            raise ConfigError(f"{run_dir} already holds a run; continue it with `fastmotive train --resume "
                              f"{run}`, or start a new one with another --experiment (or --output)")

    def _setup_data(self, device):
        """(train batches, val batches, DatasetInfo): the dataset's, or the `loaders` function's (tune-k)."""
        opened = (self.loaders or open_data)(self.config, device, self.dist.rank, self.dist.world_size)
        _check_classes(self.config, opened[2])
        check_data_effective(self.explicit, dataset_is_folder=self.config.dataset == "folder", loader=opened[2].loader)
        return opened

    def _setup_pair(self, device, backend: str):
        """The pair with the seed's initial weights (or --initial-checkpoint's), the same on every rank."""
        config = self.config
        torch.manual_seed(config.seed)   # both models' initial weights depend on the seed only
        pair = build_pair(config, self.model_kwargs, device, arch=self.arch, backend=backend)
        if config.sync_bn:
            convert_sync_bn(pair, self.dist)
        if config.head_init == "zero":
            _zero_heads(pair)
        if config.initial_checkpoint and not config.resume:
            dropped = load_initial_weights(pair, config.initial_checkpoint)
            self._say(f"  initial weights: {config.initial_checkpoint}" +
                      (f" (classifier left out, another class count: {', '.join(dropped)})" if dropped else ""))
        self.dist.broadcast_(pair.arena.data, "the initial weights")   # as DDP does: rank 0's everywhere
        return pair

    def _setup_batches(self):
        """(calibration, train, val) batches: calibration reads the whole split, un-mixed (Mixup's blends are
        no images to calibrate on); training is augmented; both cut to the --epoch/--val-batches budget."""
        config, train, val = self.config, self.train_batches, self.val_batches
        calibration = CalibrationBatches(train)
        augment = TrainAugment.from_config(config, num_classes=self.model_kwargs["num_classes"])
        if augment is not None:
            train = augment.wrap(train)
        if config.epoch_batches:
            train = FirstBatches(train, config.epoch_batches)
        if config.val_batches:
            val = FirstBatches(val, config.val_batches)
        if self.loaders is not None or config.epoch_batches or config.val_batches:
            self._say(f"  budget: {len(train)} training batches per epoch, {len(val)} validation batches")
        check_accumulation(len(train), config.grad_accum_steps)   # before any file is written
        return calibration, train, val

    def _write_run_dir(self) -> None:
        """Rank 0 locks the run directory, checks again that no run took it meanwhile, and writes args.yaml."""
        self.dist.barrier("the end of set-up")   # every rank has checked the run directory before rank 0 writes
        if not self.dist.is_main:
            return
        self._lock = RunLock(self.run_dir).acquire()
        try:
            self._refuse_a_held_run(self.run_dir)   # another process may have started one during our set-up
        except ConfigError:
            self._lock.release()
            raise
        run = RunDir(self.run_dir)
        if not self.config.resume:
            run.write_args({**settings.record(self.config), "model_kwargs": self.model_kwargs,
                            **self._job_record(), **self.record_extra})
        elif run.read_args().get("epochs") != self.config.epochs:   # --resume DIR --epochs N extends the run
            run.write_args({**run.read_args(), "epochs": self.config.epochs})
            self._say(f"  extended to {self.config.epochs} epochs: the learning-rate schedule now spans them")

    def _announce(self, device) -> None:
        config, info = self.config, self.info
        self._say(f"run {self.run_dir}: {config.arch} on {info.name} ({info.train_size} train / "
                  f"{info.val_size} val, {info.num_classes} classes, {info.img_size}px, loader "
                  f"{info.loader}), {device}, condition {config.condition}, {config.epochs} epochs x "
                  f"{len(self.train_batches)} batches")
        growth = self.trainer.growth
        if growth is not None and growth.mode != "paper":
            g = growth.summary()
            self._say(f"  growth init {g['growth_init']}: {g['tensors_zeroed']} differential tensors zeroed in "
                      f"part, {g['identity_blocks']} differential blocks start as the identity"
                      + ("" if g["exact"] else " (approximate: " + "; ".join(g["approximations"])[:200] + ")"))
        if self.dist.enabled:
            job = self._job_record()
            self._say(f"  {job['world_size']} processes: global batch {job['global_batch_size']} images "
                      f"(-b {config.batch_size} per process), lr {config.lr:g}")

    def _job_record(self) -> dict:
        """What args.yaml records of the job's shape: processes and the global batch (-b is per process)."""
        return {"world_size": self.dist.world_size, "global_batch_size": self.config.batch_size * self.dist.world_size}

    def _say(self, text: str) -> None:
        if self.dist.is_main:
            print(text)

    def train(self) -> History | None:
        """Train (after `setup`); None when the resumed run had already finished (nothing is changed)."""
        run = shlex.quote(str(self.run_dir))
        if self.finished:
            print(f"{self.run_dir} has finished its {self.config.epochs} epochs; nothing to do (its files are "
                  f"unchanged). Export it with: fastmotive export {run}")
            return None
        if self.from_start and self.dist.is_main:
            print(f"{self.run_dir} has no checkpoint yet: training it from its start, with its recorded settings")
            RunDir(self.run_dir).rewrite_logs(History())   # the logs of the attempt that died before a checkpoint
        try:
            history = self.trainer.fit(self.train_batches, self.val_batches,
                                       resume=self.run_dir if self.config.resume and not self.from_start else None,
                                       calibration_batches=self.calibration_batches)
        finally:
            if self._lock is not None:
                self._lock.release()
            self.dist.close()
        self.interrupted, self.exit_status = self.trainer.stop_requested, self.trainer.stop_status
        if not self.dist.is_main:
            return history
        single = len(self.pair.members) == 1   # each epoch's line was printed as it ended (training.progress)
        if self.interrupted:
            name = "Ctrl-C" if self.exit_status == 130 else f"signal {self.exit_status - 128}"
            print(f"stopped by {name} at step {self.trainer.step}; checkpoint written. Continue with: "
                  f"fastmotive train --resume {run}")
        elif self.trainer.state.epoch < self.config.epochs:
            print(f"stopped at step {self.trainer.step} by --max-steps {self.config.max_steps} (epoch "
                  f"{self.trainer.state.epoch + 1} of {self.config.epochs}); checkpoint written. Continue with: "
                  f"fastmotive train --resume {run}")
        else:
            print(f"done; run directory {run} (metrics.json, summary.csv, plot.png); "
                  f"export {'the model' if single else 'both models'} with: fastmotive export {run}")
        return history


def _zero_heads(pair) -> None:
    """Zero both classifier heads in place (in the arena), so training starts at loss ln(classes)."""
    with torch.no_grad():
        for which in pair.members:
            for p in pair.classifier(which).parameters():
                p.zero_()


def _finished_epochs(run_dir: Path) -> int:
    """Epochs the checkpoint of the run being resumed has completed."""
    return int(checkpoint.load(RunDir(run_dir).checkpoint_path)["position"][0])
