"""`TrainConfig`: every training setting, one typed field each, defined once. Each field's `setting(...)` gives
its default, the ``train`` flag's help and group, its value check and whether args.yaml keeps it; from these
come the flags, the YAML config, args.yaml and the resume clash check (`fastmotive.config.settings`).

Adding a setting is one field here plus the code that reads ``config.<name>``. A TrainConfig built directly is
not checked; `settings.checked`, the flags and YAML check every value.
"""
from __future__ import annotations

from dataclasses import dataclass

from fastmotive.conditions import CONDITION_SYNTAX
from fastmotive.config.checks import (is_augment_policy, is_condition, is_device, is_finite_positive,
                                      is_folder_name, is_member_rates, is_non_negative, is_positive)
from fastmotive.config.setting import setting, settings_of
from fastmotive.core.growth import GROWTH_INITS
from fastmotive.core.pair import CHANNELS_LAST
from fastmotive.core.switch import BACKENDS
from fastmotive.optim.registry import OPTIMIZERS
from fastmotive.training.evaluation import CALIBRATE_CHOICES
from fastmotive.training.schedules import SCHEDULES

DEFAULT_ARCH = "efficientnet_b0:b2"


@dataclass(frozen=True)
class TrainConfig:
    """Every training setting (defaults as the command line's); frozen."""

    # model and data
    arch: str = setting(DEFAULT_ARCH, "BASE:MOTIVATED, e.g. efficientnet_b0:b2, resnet20:resnet32", str,
        "model and data")
    dataset: str | None = setting(None,
        "digits (default, shipped with scikit-learn), cifar10, cifar100, cifar100_coarse, mnist, "
        "fashion_mnist, folder", str, "model and data")
    data_dir: str | None = setting(None, "where the dataset's files are", str, "model and data")
    loader: str = setting("auto", "auto, tensor, dali or torch", str, "model and data",
        choices=("auto", "tensor", "dali", "torch"))
    img_size: int | None = setting(None, "input side (default: the dataset's)", int, "model and data",
        check=is_positive, expect="a positive integer")
    num_classes: int | None = setting(None, "default: the dataset's", int, "model and data",
        check=is_positive, expect="a positive integer")
    no_flip: bool = setting(False, "no random horizontal flip (as --hflip 0)", None, "model and data")
    skip_bad_images: bool = setting(False, "skip image files that fail to decode (counted)", None,
        "model and data", saved=False)
    workers: int = setting(2, "data workers / DALI threads", int, "model and data", short="-j", saved=False,
        check=lambda x: x >= 0, expect="an integer >= 0")
    head_init: str = setting("zero",
        "zero: zero both classifier heads (timm's EfficientNet head starts at loss ~6-10 on "
        "10 classes and learns far slower from scratch); default: the model's own init", str,
        "model and data", choices=("zero", "default"))
    epoch_batches: int | None = setting(None,
        "train only the first N batches of each (shuffled) epoch: a random N x batch-size "
        "sample of the training set per epoch, to fit a CPU budget", int, "model and data", check=is_positive,
        expect="a positive integer")
    val_batches: int | None = setting(None, "evaluate on the first N validation batches only", int,
        "model and data", check=is_positive, expect="a positive integer")
    # augmentation (timm's flag names; training batches only; docs/data.md)
    aa: str | None = setting(None,
        "auto-augmentation: rand-m9-n2-mstd0.5 (timm RandAugment), original or v0 (timm "
        "AutoAugment), cifar10 (torchvision's CIFAR-10 AutoAugment policy)", str, "augmentation",
        check=is_augment_policy,
        expect="rand-m<M>-n<N>[-mstd<S>]..., original, originalr, v0, v0r or cifar10")
    hflip: float | None = setting(None,
        "probability of a horizontal flip (default: 0.5, 0 for digit datasets)", float, "augmentation",
        check=lambda x: x is None or 0 <= x <= 1, expect="in [0, 1]")
    scale: tuple[float, float] = setting((0.08, 1.0), "random-resized crop area range (image folders)", float,
        "augmentation", nargs=2, check=lambda v: 0 < v[0] <= v[1] <= 1,
        expect="two numbers 0 < MIN <= MAX <= 1")
    ratio: tuple[float, float] = setting((3 / 4, 4 / 3),
        "random-resized crop aspect-ratio range (image folders)", float, "augmentation", nargs=2,
        check=lambda v: 0 < v[0] <= v[1], expect="two numbers 0 < MIN <= MAX")
    aug_repeats: int = setting(0,
        "repeated augmentation: each image appears this many times per epoch, each with "
        "its own augmentation (timm's --aug-repeats; 0 off)", int, "augmentation",
        check=lambda x: x == 0 or x >= 2, expect="0 or an integer >= 2")
    reprob: float = setting(0.0, "random erasing probability per image", float, "augmentation",
        check=lambda x: 0 <= x <= 1, expect="in [0, 1]")
    remode: str = setting("pixel", "random erasing fill: const, rand (per channel) or pixel (per pixel)", str,
        "augmentation", choices=("const", "rand", "pixel"))
    recount: int = setting(1, "random erasing: boxes per erased image", int, "augmentation",
        check=is_positive, expect="a positive integer")
    mixup: float = setting(0.0, "Mixup alpha (0 off)", float, "augmentation", check=is_non_negative,
        expect="a number >= 0")
    cutmix: float = setting(0.0, "CutMix alpha (0 off)", float, "augmentation", check=is_non_negative,
        expect="a number >= 0")
    cutmix_minmax: tuple[float, float] | None = setting(None,
        "CutMix box size range as fractions of the image (overrides --cutmix's alpha)", float, "augmentation",
        nargs=2, check=lambda v: v is None or 0 < v[0] <= v[1] <= 1, expect="two numbers 0 < MIN <= MAX <= 1")
    mixup_prob: float = setting(1.0, "probability of mixing a batch", float, "augmentation",
        check=lambda x: 0 <= x <= 1, expect="in [0, 1]")
    mixup_switch_prob: float = setting(0.5, "probability of CutMix rather than Mixup when both are on", float,
        "augmentation", check=lambda x: 0 <= x <= 1, expect="in [0, 1]")
    mixup_mode: str = setting("batch", "one draw per batch, per pair or per element", str, "augmentation",
        choices=("batch", "pair", "elem"))
    mixup_off_epoch: int = setting(0, "no Mixup/CutMix from this epoch on (0: never off)", int,
        "augmentation", check=lambda x: x >= 0, expect="an integer >= 0")
    bce_loss: bool = setting(False,
        "binary cross-entropy on the (soft) targets instead of cross-entropy (timm's RSB " "recipes)", None,
        "augmentation")
    # regularization
    drop: str | None = setting(None,
        "dropout before the classifier: one rate for both, BASE:MOTIVATED, or auto (each "
        "member's own published rate; efficientnet_b0 0.2, b2 0.3); default: the model's constructor default",
        str, "regularization", check=is_member_rates, expect="RATE, BASE:MOTIVATED or auto (rates in [0, 1))")
    drop_path: str | None = setting(None,
        "stochastic depth rate: one for both, BASE:MOTIVATED, or auto (each member's own)", str,
        "regularization", check=is_member_rates, expect="RATE, BASE:MOTIVATED or auto (rates in [0, 1))")
    initial_checkpoint: str | None = setting(None,
        "start from trained weights: an exported .safetensors file, or "
        "RUN_DIR:base / RUN_DIR:motivated; the classifier is dropped when --num-classes differs", str,
        "regularization")
    # optimization
    batch_size: int = setting(32, "images per batch", int, short="-b", check=is_positive,
        expect="a positive integer")
    opt: str = setting("adamw", ", ".join(OPTIMIZERS) + " (timm's names and defaults: sgd and nesterov are SGD "
        "with Nesterov momentum, momentum is classical SGD momentum, the RMSprops use alpha 0.9)", str,
        choices=tuple(OPTIMIZERS))
    lr: float = setting(1e-3, "peak learning rate", float, check=is_finite_positive,
        expect="a finite number > 0")
    momentum: float = setting(0.9, "SGD / RMSprop momentum", float, check=lambda x: 0 <= x < 1,
        expect="in [0, 1)")
    weight_decay: float = setting(0.05, "weight decay (skips 1-D tensors unless --decay-1d)", float,
        check=is_non_negative, expect="a finite number >= 0")
    decay_1d: bool = setting(False, "also weight-decay 1-D tensors (biases, norms)")
    opt_eps: float | None = setting(None, "optimizer epsilon (default: the optimizer's)", float,
        check=is_positive, expect="a number > 0")
    opt_betas: tuple[float, float] | None = setting(None, "AdamW / LAMB betas", float, nargs=2,
        check=lambda v: v is None or all(0 <= b < 1 for b in v), expect="two numbers in [0, 1)")
    clip_grad: float | None = setting(None,
        "clip gradients: max norm (--clip-mode norm), max value (value) or AGC factor " "(agc)", float,
        check=is_positive, expect="a number > 0")
    clip_mode: str = setting("norm", "gradient clipping mode", str, choices=("norm", "value", "agc"))
    grad_accum_steps: int = setting(1,
        "batches accumulated per optimizer step (the condition sees one loss per "
        "optimizer step; switches happen between optimizer steps)", int, check=is_positive,
        expect="a positive integer")
    sched: str = setting("cosine", ", ".join(SCHEDULES), str, choices=SCHEDULES)
    warmup_epochs: float = setting(1.0, "epochs of linear warmup", float, check=is_non_negative,
        expect="a number >= 0")
    warmup_lr: float = setting(0.0, "lr at the start of the warmup", float, check=is_non_negative,
        expect="a number >= 0")
    warmup_prefix: bool = setting(False,
        "the decay starts counting after the warmup (timm's --warmup-prefix)")
    decay_epochs: float = setting(30.0, "step schedule: epochs between decays", float,
        check=is_finite_positive, expect="a number > 0")
    decay_rate: float = setting(0.1, "step schedule: lr factor per decay", float, check=is_finite_positive,
        expect="a number > 0")
    min_lr: float = setting(0.0, "cosine schedule: final lr", float, check=is_non_negative,
        expect="a number >= 0")
    epochs: int = setting(12, "passes over the training set", int, check=is_positive,
        expect="a positive integer")
    smoothing: float = setting(0.0, "label smoothing (0 = the paper's plain CE)", float,
        check=lambda x: 0 <= x < 1, expect="in [0, 1)")
    condition: str = setting("streak:2", CONDITION_SYNTAX.split(" (")[0], str, check=is_condition,
        expect=CONDITION_SYNTAX)
    bn_calibrate: int | None = setting(None,
        "before each evaluation and at export, re-estimate the BatchNorm statistics of the models "
        "--bn-calibrate-models names from this many training images (--bn-calibrate-from: which; default: a "
        "tenth of the training split, at most 2000; 0: off, the paper's raw statistics; docs/architecture.md)",
        int,
        check=lambda x: x is None or x >= 0, expect="an integer >= 0", evaluation_only=True)
    bn_calibrate_models: str = setting("stale",
        "whose BatchNorm statistics are calibrated: stale (with --growth-init paper, the motivated model of a "
        "pair, and the base when it trained fewer batches since the motivated model last did than its momentum "
        "needs to forget them; with identity growth, and for a single model, none) or all", str, choices=CALIBRATE_CHOICES, evaluation_only=True)
    bn_calibrate_from: str = setting("auto",
        "the images calibration reads: train (a fixed sample of training batches, augmented as training "
        "saw them), val (a fixed sample of training images preprocessed as validation is) or auto (val for image "
        "folders, whose random-resized crop zooms, train for arrays; docs/reproduction.md measures both)", str,
        choices=("auto", "train", "val"), evaluation_only=True)
    eval_interval: int = setting(1, "evaluate the models every N epochs, and after the last", int,
        check=is_positive, expect="a positive integer", evaluation_only=True)
    bn_buffers: str = setting("copy",
        "copy: a switch moves BatchNorm running statistics with the weights (the "
        "paper); keep: each model keeps its own, only weights and optimizer state move", str,
        choices=("copy", "keep"))
    growth_init: str = setting("identity", "identity: the motivated model's differential tensors start so that it "
        "computes the base's function at the first switch up (function-preserving growth; docs/weights-maps.md); "
        "paper: they keep their random initialisation (the paper's recipes)", str, choices=GROWTH_INITS)
    seed: int = setting(0, "seeds the data order, the initial weights and random conditions", int,
        check=lambda x: 0 <= x < 2**32, expect="an integer in [0, 2^32)")
    # run
    output: str = setting("output/train", "parent folder of run directories", str, "run", saved=False)
    experiment: str | None = setting(None, "run directory name (default: arch-dataset-seed)", str, "run",
        saved=False, check=is_folder_name,
        expect="a folder name inside --output (no / or .., at most 200 bytes)")
    resume: str | None = setting(None, "continue the run in this directory", str, "run", saved=False)
    checkpoint_every: int = setting(0, "also checkpoint every N steps", int, "run", saved=False, kept=True,
        check=lambda x: x >= 0, expect="an integer >= 0")
    max_steps: int | None = setting(None, "stop after N optimizer steps in all (batches, or groups of "
        "--grad-accum-steps batches; smoke runs)", int, "run", saved=False,
        check=is_positive, expect="a positive integer")
    log_interval: int = setting(50, "print a line every N steps when the progress bar is off", int, "run",
        saved=False, check=is_positive, expect="a positive integer")
    device: str | None = setting(None, "cpu, cuda, cuda:1 (default: cuda if available)", str, "run",
        saved=False, check=is_device, expect="cpu, or cuda / cuda:N on a machine with that GPU")
    amp: bool = setting(False, "bf16 autocast", None, "run")
    channels_last: str = setting("auto", "channels-last activations (on, off; the flag alone: on). auto: on for "
        "the families measured faster with it on the CPU (efficientnet, the CIFAR ResNets), off elsewhere and on "
        "GPUs", str, "run", choices=CHANNELS_LAST, nargs="?", const="on")
    compile: str | None = setting(None,
        "torch.compile both models (mode: default, reduce-overhead, max-autotune)", str, "run",
        choices=("default", "reduce-overhead", "max-autotune"), nargs="?", const="default")
    switch_backend: str | None = setting(None, f"{', '.join(BACKENDS)} (default: the device's)", str, "run",
        saved=False, choices=BACKENDS)
    log_tensorboard: bool = setting(False, "also write TensorBoard event files into the run directory", None,
        "run", saved=False, kept=True)
    log_wandb: bool = setting(False,
        "also log to Weights & Biases (offline unless WANDB_MODE says otherwise; needs "
        "pip install 'fastmotive[wandb]')", None, "run", saved=False, kept=True)
    # distributed (docs/distributed.md)
    nproc: int | None = setting(None,
        "start this many processes on this machine (torchrun's --nproc_per_node)", int, "distributed",
        saved=False, check=is_positive, expect="a positive integer")
    sync_bn: bool = setting(False, "SyncBatchNorm across processes", None, "distributed")
    dist_bn: str = setting("reduce",
        "BatchNorm statistics across processes before evaluation and checkpoints: "
        "reduce (average), broadcast (rank 0's) or none", str, "distributed",
        choices=("reduce", "broadcast", "none"))
    check_sync: int = setting(0, "every N steps, check that every process holds the same weights (0: off)",
        int, "distributed", saved=False, kept=True, check=lambda x: x >= 0, expect="an integer >= 0")
    no_progress: bool = setting(False, "no progress bar (a log line every --log-interval steps instead)",
        None, "run", saved=False)


SETTINGS = settings_of(TrainConfig)
BY_NAME = {s.name: s for s in SETTINGS}
