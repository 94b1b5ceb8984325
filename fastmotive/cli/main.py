"""The ``fastmotive`` command line: it only parses, then calls the library (train, export, eval, map, recipes,
compare, transfer, tune-k)."""
from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import shlex
import signal
import sys
import threading
from typing import NoReturn

from fastmotive.cli.experiments import add_compare_parser, add_transfer_parser, add_tune_k_parser
from fastmotive.config import settings
from fastmotive.config.recipes import list_recipes, resolve_config
from fastmotive.errors import ConfigError, FastmotiveError

CONFIGURABLE = ("train", "compare", "transfer", "tune-k")   # commands whose flags a -c YAML file or recipe may set


def cmd_train(args) -> int:
    from fastmotive.config.combinations import check_combinations
    from fastmotive.distributed.launch import die_with_launcher, launch, launched
    if launched():
        die_with_launcher()   # a kill -9 of the launcher (or torchrun) must not leave this worker training on
    config = settings.from_namespace(args)   # checked once, here: under --nproc before any worker starts
    from fastmotive.run.recipe import TrainRecipe, run_dir_for
    if args.nproc and args.nproc > 1 and not launched():   # N workers of this same command, under torchrun's agent
        check_combinations(config)
        return launch(args.argv, args.nproc, run_dir=shlex.quote(str(run_dir_for(config))))
    recipe = TrainRecipe(config, args.explicit)
    recipe.setup()
    recipe.train()
    return recipe.exit_status   # 0, or 128 + the signal that stopped it: 130 (Ctrl-C), 143 (SIGTERM)


def cmd_export(args) -> int:
    from fastmotive.run.export import export_run
    for path in export_run(args.run_dir, args.output, args.bn_calibrate, onnx=args.onnx, best=args.best):
        print(path)
    return 0


def cmd_eval(args) -> int:
    from fastmotive.run.saved import evaluate_run
    result = evaluate_run(args.run_dir, args.bn_calibrate, args.device, args.val_batches, args.bn_calibrate_models)
    episode = " (stopped inside a motivated episode: the base is the motivated model's slices)" \
        if result["stopped_in_episode"] else ""
    split = "the whole split" if result["val_images"] == result["val_size"] else \
        f"the first {result['val_images']} of {result['val_size']} (--val-batches 0: all)"
    print(f"{result['run']} at step {result['step']}{episode}, {result['dataset']} validation: {split}; BN "
          f"calibration: {result['bn_calibration_images']} training images ({result['calibration_preprocessing']} "
          "preprocessing)")
    print(f"{'model':10} {'statistics':11} {'top1':>7} {'top5':>7} {'loss':>8}   {'top1 raw':>8} {'top5 raw':>8} "
          f"{'loss raw':>8}")
    for m in result["models"]:
        kind = "calibrated" if result[m + "_bn_calibrated"] else "own"
        print(f"{m:10} {kind:11} {result[m + '_top1']:7.2f} {result[m + '_top5']:7.2f} "
              f"{result[m + '_eval_loss']:8.4f}   {result[m + '_top1_raw']:8.2f} {result[m + '_top5_raw']:8.2f} "
              f"{result[m + '_eval_loss_raw']:8.4f}")
    print(f"wrote {args.run_dir}/eval.json")
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer")
    return value


def _images(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an image count (an integer >= 0)") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is not an image count >= 0")
    return value


def cmd_map(args) -> int:
    from fastmotive.core.pair import MotivatedPair
    from fastmotive.errors import ArchSpecError
    from fastmotive.families import parse_arch
    if parse_arch(args.arch).motivated is None:
        raise ArchSpecError(f"map {args.arch}: one model has no weights map; give BASE:MOTIVATED, e.g. "
                            f"{args.arch}:...")
    pair = MotivatedPair.from_arch(args.arch, num_classes=args.num_classes, img_size=args.img_size)
    if args.json:
        print(pair.weights_map.to_json())
        return 0
    for key, value in pair.describe().items():
        print(f"{key:24} {value}")
    if args.entries:
        for e in pair.weights_map.entries:
            print(f"{e.base:48} -> {e.motivated:48} {e.rule}")
    return 0


def cmd_recipes(args) -> int:
    recipes = list_recipes()
    if args.names:
        print("\n".join(r.name for r in recipes))
        return 0
    for r in recipes:
        print(f"{r.name}\n  {r.section}\n  {r.description}\n  {r.path}")
    print("\nrun one with: fastmotive train -c NAME [flags that override it]")
    return 0


def _train_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("train", help="train a base and a motivated model in one run (or one model alone)")
    settings.add_arguments(p)
    p.set_defaults(func=cmd_train)
    return p


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The parser and its subcommand parsers by name."""
    parser = argparse.ArgumentParser(prog="fastmotive", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    commands = {"train": _train_parser(sub)}
    p = commands["export"] = sub.add_parser("export", help="write export/base/ and export/motivated/: timm hub "
                                            "folders (config.json, model.safetensors, README.md model card)")
    p.add_argument("run_dir")
    p.add_argument("--output", default=None, help="default: RUN_DIR/export (never inside another run)")
    p.add_argument("--onnx", action="store_true",
                   help="also write model.onnx per model, checked against PyTorch with onnxruntime (onnx.json)")
    p.add_argument("--bn-calibrate", type=_images, default=None, metavar="IMAGES",
                   help="calibrate BN statistics from this many training images (default: the run's setting; 0: "
                        "the checkpoint's raw statistics)")
    p.add_argument("--best", action="store_true",
                   help="export each model's best evaluation (best_MODEL.safetensors, by the top-1 it was evaluated "
                        "with) instead of the last checkpoint")
    p.set_defaults(func=cmd_export)
    p = commands["eval"] = sub.add_parser("eval", help="evaluate a run's two models, raw and BN-calibrated")
    p.add_argument("run_dir")
    p.add_argument("--bn-calibrate", type=_images, default=None, metavar="IMAGES",
                   help="training images for calibration (default: the run's setting)")
    p.add_argument("--bn-calibrate-models", choices=("stale", "all"), default=None,
                   help="whose statistics are calibrated (default: the run's setting; stale: those a switch made "
                        "stale, docs/architecture.md)")
    p.add_argument("--device", default=None, help="default: the run's device setting, else cuda if available")
    p.add_argument("--val-batches", type=_images, default=None, metavar="N",
                   help="the first N validation batches (default: the run's --val-batches; 0: the whole split)")
    p.set_defaults(func=cmd_eval)
    p = commands["map"] = sub.add_parser("map", help="print the weights map of an arch spec")
    p.add_argument("arch")
    p.add_argument("--num-classes", type=_positive, default=1000)
    p.add_argument("--img-size", type=int, default=None)
    p.add_argument("--json", action="store_true", help="print the map as JSON")
    p.add_argument("--entries", action="store_true", help="list every entry")
    p.set_defaults(func=cmd_map)
    p = commands["recipes"] = sub.add_parser("recipes", help="list the paper's training recipes (train -c NAME)")
    p.add_argument("--names", action="store_true", help="names only, one a line")
    p.set_defaults(func=cmd_recipes)
    commands["compare"] = add_compare_parser(sub)
    commands["transfer"] = add_transfer_parser(sub)
    commands["tune-k"] = add_tune_k_parser(sub)
    return parser, commands


# timm's train.py flags: the same meaning under fastmotive's name (rewritten), or what to use instead (refused)
TIMM_ALIASES = {"--model": "--arch"}
TIMM_INSTEAD = {
    "--val-split": "--dataset folder reads DIR/val (or DIR/validation); the array datasets have their own split",
    "--crop-pct": "validation centre-crops at timm's default 0.875 (image folders); not a setting here",
    "--color-jitter": "not supported: use --aa (RandAugment/AutoAugment) for colour augmentation",
    "--sched-on-updates": "not needed: the schedule already moves every optimizer step",
    "--model-ema": "not supported",
    "--pretrained": "--initial-checkpoint FILE (an exported .safetensors) or RUN_DIR:base",
}


def timm_flags(argv: list[str]) -> list[str]:
    """`argv` with timm's names for fastmotive's flags rewritten (``--model X`` is ``--arch X``, ``--input-size 3
    S S`` is ``--img-size S``); a timm flag fastmotive does not have is refused with what to use instead."""
    out, i = [], 0
    while i < len(argv):
        flag, _, value = argv[i].partition("=")
        if flag in TIMM_INSTEAD:
            raise ConfigError(f"{flag} is timm's: {TIMM_INSTEAD[flag]}")
        if flag == "--input-size":
            sizes = [value] if value else argv[i + 1: i + 4]
            if len(sizes) != 3 or len(set(sizes[1:])) != 1:
                raise ConfigError(f"--input-size {' '.join(sizes)}: give C H W with H == W, or --img-size S")
            out += ["--img-size", sizes[2]]
            i += 1 if value else 4
            continue
        out.append(TIMM_ALIASES.get(flag, flag) + (f"={value}" if value else "") if flag in TIMM_ALIASES
                   else argv[i])
        i += 1
    return out


def parse(argv: list[str]) -> argparse.Namespace:
    """Flags override the YAML config (-c FILE, or -c NAME for a shipped recipe), which overrides the built-in
    defaults (timm's convention). timm's spellings are taken (`timm_flags`)."""
    argv = [argv[0], *timm_flags(argv[1:])] if argv and argv[0] in CONFIGURABLE else argv
    parser, commands = build_parser()
    command = argv[0] if argv else None
    if command in CONFIGURABLE:
        first, _ = parser.parse_known_args(argv)
        if first.config:
            commands[command].set_defaults(**settings.read_yaml(resolve_config(first.config)))
    args = parser.parse_args(argv)
    args.argv = argv[1:]   # the command's own arguments, for `train --nproc N` to start its workers with
    args.explicit = settings.explicit_settings(lambda: build_parser()[1][command], argv[1:]) \
        if command == "train" else frozenset()
    return args


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(map(str, argv))
    from fastmotive.distributed.launch import stderr_once_per_job
    try:
        with stderr_once_per_job():   # under torchrun every rank parses: argparse's error once, not per process
            args = parse(argv)
    except SystemExit as exc:   # argparse has printed its error or the help
        return exc.code if isinstance(exc.code, int) else 2
    except FastmotiveError as exc:
        return _error(argv[0] if argv else "", _bounded(exc))
    try:
        return args.func(args)
    except FastmotiveError as exc:
        return _error(args.command, _bounded(exc))
    except KeyboardInterrupt:   # a second Ctrl-C (the first stops training after a step), or one during set-up
        print(f"fastmotive {args.command}: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    except OSError as exc:   # expected ones: missing, read-only, full disk, name too long; the file is named
        return _error(args.command, f"{exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}")


def _error(command: str, text: str) -> int:
    """One error line (once per job under --nproc or torchrun: `say_error`), exit status 2."""
    from fastmotive.distributed.launch import say_error
    say_error(f"fastmotive {command}: error: {text}")
    return 2


MAX_ERROR = 2000   # characters: a message quoting a huge value (a YAML alias bomb) stays one readable line


def _bounded(exc: Exception) -> str:
    text = " ".join(str(exc).split("\n"))
    return text if len(text) <= MAX_ERROR else f"{text[:MAX_ERROR]}... ({len(text) - MAX_ERROR} more characters)"


def run() -> NoReturn:
    """The console script: `main`, then a quick exit."""
    exit_now(main())


def exit_now(code: int) -> NoReturn:
    """Exit once the command is done without unloading the interpreter: the atexit handlers run (logging,
    temporary files, process pools), other Python threads are joined and the standard streams flushed, then
    `os._exit`. The module teardown it skips frees nothing a finished command needs and took 1.2 s (torch and
    timm) to 1.7 s (with DALI) of each command on a CPU."""
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):   # a closed or broken pipe: nothing more to say
            stream.flush()
    os._exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    run()
