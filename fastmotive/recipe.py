"""The ``fastmotive train`` recipe: setup and train (torchtune's recipe shape, timm's flags)."""
from __future__ import annotations

import re
import time
from pathlib import Path

import torch

from .conditions import parse_condition
from .errors import ConfigError
from .families import parse_arch
from .flops import pair_flops
from .pair import MotivatedPair
from .rundir import RunDir
from .trainer import Trainer

# Settings a resumed run takes from its own args.yaml; the rest (device, progress, max steps) from the flags.
RUN_SETTINGS = ("arch", "dataset", "data_dir", "loader", "img_size", "num_classes", "no_flip", "batch_size", "opt",
                "lr", "momentum", "weight_decay", "sched", "warmup_epochs", "epochs", "smoothing", "condition",
                "seed", "amp", "channels_last", "compile", "head_init", "decay_epochs", "decay_rate", "min_lr",
                "decay_1d")


class TrainRecipe:
    def __init__(self, args):
        self.args = args

    def setup(self) -> None:
        from .data import build_loaders
        args = self.args
        if args.resume:
            self._adopt_run_settings()
        family, base, motivated = parse_arch(args.arch)   # fail fast on a bad spec, before reading data
        if args.resume:
            self.run_dir = Path(args.resume)
        else:
            name = args.experiment or f"{base}-{motivated.replace(base.split('_')[0] + '_', '')}-" \
                                      f"{args.dataset or 'digits'}-s{args.seed}"
            self.run_dir = Path(args.output) / re.sub(r"[^\w.-]", "_", name)
        device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.train_batches, self.val_batches, info = build_loaders(
            args.dataset, args.data_dir, args.loader, args.batch_size, args.img_size, device, args.seed,
            flip=False if args.no_flip else None, num_workers=args.workers,
            skip_bad_images=args.skip_bad_images)
        kwargs = {"num_classes": args.num_classes or info.num_classes}
        if family.name == "vit":
            kwargs["img_size"] = info.img_size
        torch.manual_seed(args.seed)   # both models' initial weights depend on the seed only
        self.pair = MotivatedPair.from_arch(args.arch, **kwargs).to(device)
        if args.head_init == "zero":
            zero_heads(self.pair)
        self.trainer = Trainer(
            self.pair, optimizer=args.opt, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay,
            condition=parse_condition(args.condition, seed=args.seed), schedule=args.sched, warmup_epochs=args.warmup_epochs,
            decay_epochs=args.decay_epochs, decay_rate=args.decay_rate, min_lr=args.min_lr, decay_1d=args.decay_1d,
            epochs=args.epochs, seed=args.seed, smoothing=args.smoothing, backend=args.switch_backend,
            output=self.run_dir, checkpoint_every=args.checkpoint_every, max_steps=args.max_steps, amp=args.amp,
            compile=args.compile, progress=not args.no_progress, channels_last=args.channels_last)
        if not args.resume:
            settings = {k: v for k, v in vars(args).items() if k not in ("func", "explicit")}
            self.trainer.run.write_args(dict(settings, model_kwargs=kwargs))
        self.trainer.run.flops = pair_flops(self.pair, info.img_size)   # metrics.json gets FLOPs and F_{X-Y}
        print(f"run {self.run_dir}: {args.arch} on {info.name} ({info.train_size} train / {info.val_size} val, "
              f"{info.num_classes} classes, {info.img_size}px, loader {info.loader}), {device}, "
              f"condition {args.condition}, {args.epochs} epochs x {len(self.train_batches)} batches")

    def _adopt_run_settings(self) -> None:
        args = self.args
        saved = RunDir(args.resume).read_args()
        clashes = [f"--{k.replace('_', '-')} {getattr(args, k)!r} (the run has {saved.get(k)!r})"
                   for k in RUN_SETTINGS if k in args.explicit and saved.get(k) != getattr(args, k)]
        if clashes:
            raise ConfigError(f"--resume {args.resume}: these flags differ from the run's args.yaml: "
                             f"{'; '.join(clashes)}. Resume without them, or start a new run")
        for k in RUN_SETTINGS:
            if k in saved:
                setattr(args, k, saved[k])

    def train(self) -> None:
        t0 = time.perf_counter()
        history = self.trainer.fit(self.train_batches, self.val_batches,
                                   resume=self.run_dir if self.args.resume else None)
        wall = time.perf_counter() - t0
        if self.trainer.stop_requested:
            print(f"interrupted at step {self.trainer.step}; checkpoint written. "
                  f"Continue with: fastmotive train --resume {self.run_dir}")
        for row in history.epochs[-3:]:
            print("epoch {epoch:3d}  train loss {train_loss:.4f}  base top1 {base_top1:6.2f}  "
                  "motivated top1 {motivated_top1:6.2f}  motivated {motivated_fraction:5.1%}  "
                  "switches {switches}".format(**row))
        print(f"done in {wall:.1f} s; run directory {self.run_dir} (metrics.json, summary.csv, plot.png); "
              f"export both models with: fastmotive export {self.run_dir}")


def zero_heads(pair: MotivatedPair) -> None:
    """Zero both models' classifier heads in place (in the arena), so training starts at loss ln(classes)."""
    with torch.no_grad():
        for model in (pair.base, pair.motivated):
            head = model.get_classifier() if hasattr(model, "get_classifier") else model.fc
            for p in head.parameters():
                p.zero_()
