"""The ``fastmotive`` command: ``train`` (Algorithm 1 end to end), ``export`` (deploy twice), ``map``, and
``compare`` / ``tune-k`` (the paper's experiments, fastmotive/compare.py)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from .errors import FastmotiveError

DEFAULT_ARCH = "efficientnet_b0:b2"


def _train_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("train", help="train a base and a motivated model in one run")
    p.add_argument("-c", "--config", help="YAML file whose keys set the defaults of these flags")
    g = p.add_argument_group("model and data")
    g.add_argument("--arch", default=DEFAULT_ARCH, help="BASE:MOTIVATED, e.g. efficientnet_b0:b2, resnet20:resnet32")
    g.add_argument("--dataset", default=None, help="digits (default, shipped with scikit-learn), cifar10, cifar100, "
                   "mnist, fashion_mnist, folder")
    g.add_argument("--data-dir", default=None, help="where the dataset's files are")
    g.add_argument("--loader", default="auto", help="auto, tensor, dali or torch")
    g.add_argument("--img-size", type=int, default=None, help="input side (default: the dataset's)")
    g.add_argument("--num-classes", type=int, default=None, help="default: the dataset's")
    g.add_argument("--no-flip", action="store_true", help="no random horizontal flip")
    g.add_argument("--skip-bad-images", action="store_true", help="skip image files that fail to decode (counted)")
    g.add_argument("-j", "--workers", type=int, default=2, help="data workers / DALI threads")
    g.add_argument("--head-init", default="zero", choices=["zero", "default"],
                   help="zero: zero both classifier heads (timm's EfficientNet head starts at loss ~6-10 on 10 "
                        "classes and learns far slower from scratch); default: the model's own init")
    g = p.add_argument_group("optimization")
    g.add_argument("-b", "--batch-size", type=int, default=32)
    g.add_argument("--opt", default="adamw", help="sgd, adamw, rmsprop, rmsproptf, lamb")
    g.add_argument("--lr", type=float, default=1e-3)
    g.add_argument("--momentum", type=float, default=0.9)
    g.add_argument("--weight-decay", type=float, default=0.05)
    g.add_argument("--sched", default="cosine", help="cosine, step, constant")
    g.add_argument("--warmup-epochs", type=float, default=1)
    g.add_argument("--decay-epochs", type=float, default=30, help="step schedule: epochs between decays")
    g.add_argument("--decay-rate", type=float, default=0.1, help="step schedule: lr factor per decay")
    g.add_argument("--min-lr", type=float, default=0.0, help="cosine schedule: final lr")
    g.add_argument("--decay-1d", action="store_true", help="also weight-decay 1-D tensors (biases, norms)")
    g.add_argument("--epochs", type=int, default=12)
    g.add_argument("--smoothing", type=float, default=0.0, help="label smoothing (0 = the paper's plain CE)")
    g.add_argument("--condition", default="streak:2",
                   help="streak:K | ema:K | valloss:K | gradnorm:K | random:P | matched:N | never | always")
    g.add_argument("--seed", type=int, default=0)
    g = p.add_argument_group("run")
    g.add_argument("--output", default="output/train", help="parent folder of run directories")
    g.add_argument("--experiment", default=None, help="run directory name (default: arch-dataset-seed)")
    g.add_argument("--resume", default=None, help="continue the run in this directory")
    g.add_argument("--checkpoint-every", type=int, default=0, help="also checkpoint every N steps")
    g.add_argument("--max-steps", type=int, default=None, help="stop after N batches in all (smoke runs)")
    g.add_argument("--log-interval", type=int, default=50, help="print a line every N steps without a progress bar")
    g.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    g.add_argument("--amp", action="store_true", help="bf16 autocast")
    g.add_argument("--channels-last", action="store_true", help="feed inputs in channels-last memory format")
    g.add_argument("--compile", nargs="?", const="default", default=None,
                   help="torch.compile both models (mode: default, reduce-overhead, max-autotune)")
    g.add_argument("--switch-backend", default=None, help="triton, torch or naive (default: the device's)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _parse_with_config(parser: argparse.ArgumentParser, train_parser, argv) -> argparse.Namespace:
    """Flags override the YAML config, which overrides the built-in defaults (timm's convention)."""
    args, _ = parser.parse_known_args(argv)
    if getattr(args, "config", None):
        path = Path(args.config)
        if not path.is_file():
            parser.error(f"config file {path} not found")
        config = yaml.safe_load(path.read_text()) or {}
        known = {a.dest for a in train_parser._actions}
        unknown = sorted(k for k in config if k.replace("-", "_") not in known)
        if unknown:
            parser.error(f"config {path}: unknown keys {', '.join(unknown)}")
        train_parser.set_defaults(**{k.replace("-", "_"): v for k, v in config.items()})
    args = parser.parse_args(argv)
    args.explicit = {a.dest for a in train_parser._actions if any(o in argv for o in a.option_strings)}
    return args


def cmd_train(args) -> int:
    from .recipe import TrainRecipe
    recipe = TrainRecipe(args)
    recipe.setup()
    recipe.train()
    return 0


def cmd_export(args) -> int:
    from .export import export_run
    for path in export_run(args.run_dir, args.output):
        print(path)
    return 0


def cmd_map(args) -> int:
    from .pair import MotivatedPair
    pair = MotivatedPair.from_arch(args.arch, num_classes=args.num_classes,
                                   **({"img_size": args.img_size} if args.img_size else {}))
    if args.json:
        print(pair.weights_map.to_json())
        return 0
    info = pair.describe()
    for key, value in info.items():
        print(f"{key:24} {value}")
    if args.entries:
        for e in pair.weights_map.entries:
            print(f"{e.base:48} -> {e.motivated:48} {e.rule}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="fastmotive", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    train_parser = _train_parser(sub)
    train_parser.set_defaults(func=cmd_train)
    p = sub.add_parser("export", help="write base.safetensors and motivated.safetensors from a run")
    p.add_argument("run_dir")
    p.add_argument("--output", default=None, help="default: RUN_DIR/export")
    p.set_defaults(func=cmd_export)
    p = sub.add_parser("map", help="print the weights map of an arch spec")
    p.add_argument("arch")
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--img-size", type=int, default=None)
    p.add_argument("--json", action="store_true", help="print the map as JSON")
    p.add_argument("--entries", action="store_true", help="list every entry")
    p.set_defaults(func=cmd_map)
    from .compare import add_compare_parser, add_tune_k_parser, cmd_compare, cmd_tune_k
    add_compare_parser(sub).set_defaults(func=cmd_compare)
    add_tune_k_parser(sub).set_defaults(func=cmd_tune_k)
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["train"]:
        args = _parse_with_config(parser, train_parser, argv)
    elif argv[:1] in (["compare"], ["tune-k"]):   # their other flags are train flags for every run
        args, train_argv = parser.parse_known_args(argv)
        args.train_argv = train_argv
    else:
        args = parser.parse_args(argv)
    try:
        return args.func(args)
    except FastmotiveError as exc:
        print(f"fastmotive {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
