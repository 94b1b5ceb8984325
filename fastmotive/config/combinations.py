"""Settings that are valid alone but not together: values that contradict each other, and flags given that
would change nothing (each is refused, never accepted and ignored). Each check lists every problem in one
ConfigError."""
from __future__ import annotations

from fastmotive.config.train_config import BY_NAME
from fastmotive.errors import ConfigError
from fastmotive.optim.registry import OPTIMIZERS


def check_combinations(config) -> None:
    """Settings that contradict each other."""
    clashes = []
    if config.warmup_epochs > config.epochs:
        clashes.append(f"--warmup-epochs {config.warmup_epochs} is longer than --epochs {config.epochs}: the "
                       "run would end before the learning rate reaches --lr")
    if config.sched == "cosine" and config.min_lr > config.lr:
        clashes.append(f"--min-lr {config.min_lr} is above --lr {config.lr}")
    if OPTIMIZERS[config.opt].defaults.get("nesterov") and config.momentum == 0:
        clashes.append(f"--opt {config.opt} is SGD with Nesterov momentum (timm's name), which needs --momentum "
                       "above 0; for plain SGD give --opt momentum --momentum 0")
    if clashes:
        raise ConfigError("; ".join(clashes))


def check_effective(config, explicit, *, single_model: bool, world_size: int) -> None:
    """Refuse flags given on the command line (`explicit`) that this run would not use."""
    takes = OPTIMIZERS[config.opt].takes
    unused = {   # setting -> why it has no effect here, when given
        "momentum": "momentum" not in takes and f"--opt {config.opt} has no momentum",
        "opt_eps": "eps" not in takes and f"--opt {config.opt} has no epsilon",
        "opt_betas": "betas" not in takes and f"--opt {config.opt} has no betas",
        "warmup_prefix": config.sched != "step" and f"--sched {config.sched} decays over the whole run "
                                                    "(only the step schedule counts from the warmup's end)",
        "clip_mode": config.clip_grad is None and "no --clip-grad is given",
        "hflip": config.no_flip and "--no-flip turns flipping off",
        "data_dir": config.dataset in (None, "digits") and "the default dataset, digits, ships with scikit-learn "
                    "and reads no files: give --dataset folder for an image folder, or cifar10, mnist, ...",
        "bn_buffers": single_model and "a single model has no switch to move statistics across",
        "dist_bn": world_size == 1 and "one process has no other statistics to reduce (--nproc, torchrun)",
        "check_sync": world_size == 1 and "one process has no other weights to compare (--nproc, torchrun)",
    }
    refused = [f"{BY_NAME[name].flag}: {why}" for name, why in unused.items() if why and name in explicit]
    if refused:
        raise ConfigError("these flags would change nothing: " + "; ".join(refused) + " (drop them)")


def check_data_effective(explicit, dataset_is_folder: bool, loader: str = "torch") -> None:
    """--scale and --ratio shape the random-resized crops of image folders only; --skip-bad-images skips their
    undecodable files; --workers sets the torch loader's processes or DALI's threads (`loader`: the one in use)."""
    if loader == "tensor" and "workers" in explicit:
        raise ConfigError("-j/--workers would change nothing: the tensor loader has no workers (it batches arrays "
                          "with tensor ops on the device); drop it, or choose --loader torch or dali")
    if dataset_is_folder:
        return
    given = [BY_NAME[n].flag for n in ("scale", "ratio") if n in explicit]
    if given:
        raise ConfigError(f"{' and '.join(given)} would change nothing: random-resized crops are taken from "
                          "image folders only (--dataset folder); array datasets are padded and cropped (drop them)")
    if "skip_bad_images" in explicit:
        raise ConfigError("--skip-bad-images would change nothing: only image folders (--dataset folder) hold "
                          "files that can fail to decode (drop it)")
