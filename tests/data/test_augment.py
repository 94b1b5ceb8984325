"""Training augmentation of timm's recipes (issue 12, data side): ``--aa`` parsing, per-image batched
RandAugment / AutoAugment against independent single-image references, random erasing, Mixup / CutMix targets,
reproducibility and bitwise resume, distributed sharding, and the loader options (hflip, aug_repeats, img_size)."""
import math
import random

import numpy as np
import pytest
import timm.data.auto_augment as timm_aa
import torch
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from fastmotive.config.settings import TrainConfig, replace
from fastmotive.data import (BatchAugment, DaliLoader, TensorLoader, TorchLoader, TrainAugment, build_loaders,
                             dali_available, loader_options, parse_policy)
from fastmotive.data.augment import image_ops as ops
from fastmotive.data.augment.levels import TIMM_LEVELS, TORCHVISION_LEVELS, op_argument
from fastmotive.data.augment.random_erasing import MAX_AREA, MIN_AREA, draw_boxes
from fastmotive.data.datasets.readers import ArraySplit, DataError
from fastmotive.data.loaders.epoch_plan import Sampling, train_plan
from fastmotive.data.rng import ERASING, numpy_generator
from fastmotive.errors import ConfigError
from fastmotive.testing import random_images, write_cifar10, write_image_folder

MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)
CLASSES = 96
RECIPE_V = {"aa": "rand-m9-n2-mstd0.5", "reprob": 0.25, "mixup": 0.8, "cutmix": 1.0, "smoothing": 0.1}


@pytest.fixture(scope="module")
def split():  # 96 = 6 x 16 images, each its own class (so a mixed target shows both partners)
    rng = np.random.default_rng(0)
    return ArraySplit(random_images(96, 3, 16, rng), np.arange(96, dtype=np.int64))


def tensor_loader(split, batch_size=16, **kw):
    return TensorLoader(split, batch_size=batch_size, train=True, seed=kw.pop("seed", 0), flip=kw.pop("flip", True),
                        mean=MEAN, std=STD, **kw)


def torch_loader(split, batch_size=16, **kw):
    return TorchLoader(split, batch_size=batch_size, train=True, seed=0, flip=True, mean=MEAN, std=STD,
                       num_workers=0, **kw)


def same_batches(a, b) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) and torch.equal(s, t) for (x, s), (y, t) in zip(a, b))


# -------------------------------------------------------------------------------------------- --aa parsing

@pytest.mark.parametrize("spec, kind, layers", [("rand-m9-n2-mstd0.5", "rand", 2), ("rand-m9-mstd0.5-inc1", "rand", 2),
                                                ("rand-m7-n3-tweights", "rand", 3), ("original", "auto", 0),
                                                ("v0r-mstd0.5", "auto", 0), ("cifar10", "auto", 0)])
def test_parse_policy_accepts_timm_and_torchvision_forms(spec, kind, layers):
    p = parse_policy(spec)
    assert (p.kind, p.layers) == (kind, layers)
    if spec.startswith("rand"):  # timm's own parser read back: same ops, probability, magnitude
        ra = timm_aa.rand_augment_transform(spec, {})
        assert [o.name for o in p.choices] == [o.name for o in ra.ops]
        assert {(o.prob, o.magnitude) for o in p.choices} == {(o.prob, o.magnitude) for o in ra.ops}
    if spec.startswith("rand"):
        assert ("Increasing" in "".join(p.op_names)) == ("inc1" in spec or "tweights" in spec)
    assert (p.weights is not None) == ("tweights" in spec)
    if spec == "cifar10":
        assert p.family == "torchvision" and len(p.subpolicies) == 25 and set(p.op_names) <= set(TORCHVISION_LEVELS)
    assert replace(TrainConfig(), aa=spec).aa == spec  # the setting's check uses parse_policy


@pytest.mark.parametrize("spec", ["rand-x9", "rand-m9.5", "foo", "augmix-m3", "3a", "rand-t3a", "original-m3", ""])
def test_parse_policy_rejects_with_the_valid_forms(spec):
    with pytest.raises(ConfigError, match=r"--aa .*expected rand-m<M>-n<N>.*original, originalr, v0 or v0r.*cifar10"):
        parse_policy(spec)
    with pytest.raises(ConfigError, match="aa"):
        replace(TrainConfig(), aa=spec)


# ------------------------------------------------------------------------------------- magnitudes and ops

@pytest.mark.parametrize("name", [n for n, (_, level) in TIMM_LEVELS.items() if level is not None])
def test_levels_match_timm(name, monkeypatch):
    hw = (24, 32)
    m = torch.linspace(0, 10, 41, dtype=torch.float64)
    hparams = {"translate_const": int(24 * 0.45)}
    scale = hw[1] if name == "TranslateXRel" else hw[0] if name == "TranslateYRel" else 1  # timm: fraction
    for sign, draw in ((1.0, 0.0), (-1.0, 0.9)):  # timm negates when random.random() > 0.5
        monkeypatch.setattr(timm_aa.random, "random", lambda d=draw: d)
        want = [timm_aa.LEVEL_TO_ARG[name](float(v), hparams)[0] * scale for v in m]
        _, got = op_argument("timm", name, m, torch.full_like(m, sign), hw)
        np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=1e-9)


@pytest.fixture(scope="module")
def image():  # one smooth uint8 image, not square
    return torch.from_numpy(random_images(1, 3, 32, np.random.default_rng(3))[0][:, :, :28].copy())


def _kernel(image, kernel, arg):
    return ops.COLOR_KERNELS[kernel](image[None].float(), torch.tensor([float(arg)]))[0]


def _to_tensor(pil):
    return torch.from_numpy(np.array(pil)).permute(2, 0, 1).float()


# (kernel, argument, torchvision reference, PIL reference through timm's own op, tolerance in grey levels:
# torchvision and PIL round or truncate to uint8 after each op, the kernels do not)
COLOR_CASES = [
    ("brightness", 1.6, lambda im: TF.adjust_brightness(im, 1.6), lambda p: timm_aa.brightness(p, 1.6), 1),
    ("color", 0.3, None, lambda p: timm_aa.color(p, 0.3), 1.3),
    ("contrast", 1.7, None, lambda p: timm_aa.contrast(p, 1.7), 1),
    ("sharpness", 0.2, lambda im: TF.adjust_sharpness(im, 0.2), lambda p: timm_aa.sharpness(p, 0.2), 1),
    ("posterize", 3, lambda im: TF.posterize(im, 3), lambda p: timm_aa.posterize(p, 3), 0),
    ("posterize", 8, lambda im: im, None, 0),
    ("solarize", 100, lambda im: TF.solarize(im, 100), lambda p: timm_aa.solarize(p, 100), 0),
    ("solarize_add", 50, None, lambda p: timm_aa.solarize_add(p, 50), 0),
    ("invert", 0, TF.invert, timm_aa.invert, 0),
    ("auto_contrast", 0, TF.autocontrast, timm_aa.auto_contrast, 1),
    ("equalize", 0, TF.equalize, timm_aa.equalize, 0),
]


@pytest.mark.parametrize("kernel, arg, tv, pil, tol", COLOR_CASES, ids=[f"{c[0]}-{c[1]}" for c in COLOR_CASES])
def test_color_ops_match_references(image, kernel, arg, tv, pil, tol):
    got = _kernel(image, kernel, arg)
    assert got.shape == image.shape and (got != image).any() == (kernel != "posterize" or arg < 8)
    if tv is not None:
        assert (got - tv(image).float()).abs().max() <= tol + 1e-4
    if pil is not None:
        assert (got - _to_tensor(pil(Image.fromarray(image.permute(1, 2, 0).numpy())))).abs().max() <= tol + 1e-4


FILL = (125, 123, 114)
GEOMETRY_CASES = [  # (kernel, argument, PIL op of timm, torchvision reference)
    ("rotate", 17.0, lambda p, kw: timm_aa.rotate(p, 17.0, **kw),
     lambda im: TF.rotate(im, 17.0, InterpolationMode.BILINEAR, fill=list(FILL))),
    ("shear_x", -0.27, lambda p, kw: timm_aa.shear_x(p, -0.27, **kw),
     lambda im: TF.affine(im, angle=0.0, translate=[0, 0], scale=1.0, shear=[math.degrees(math.atan(-0.27)), 0.0],
                          interpolation=InterpolationMode.BILINEAR, fill=list(FILL), center=[0, 0])),
    ("shear_y", 0.23, lambda p, kw: timm_aa.shear_y(p, 0.23, **kw), None),
    ("translate_x", 5.0, lambda p, kw: timm_aa.translate_x_abs(p, 5.0, **kw),
     lambda im: TF.affine(im, angle=0.0, translate=[-5, 0], scale=1.0, shear=[0.0, 0.0],
                          interpolation=InterpolationMode.BILINEAR, fill=list(FILL))),
    ("translate_y", -3.4, lambda p, kw: timm_aa.translate_y_abs(p, -3.4, **kw), None),
]


@pytest.mark.parametrize("kernel, arg, pil, tv", GEOMETRY_CASES, ids=[c[0] for c in GEOMETRY_CASES])
def test_geometric_ops_match_pil(image, kernel, arg, pil, tv):
    m = ops.affine_matrices(kernel, torch.tensor([arg], dtype=torch.float64), tuple(image.shape[1:]))
    got = ops.warp(image[None].float(), m, torch.tensor(FILL, dtype=torch.float32))[0]
    want = _to_tensor(pil(Image.fromarray(image.permute(1, 2, 0).numpy()), {"fillcolor": FILL,
                                                                            "resample": Image.BILINEAR}))
    assert (got - want).abs().max() <= 1 + 1e-3  # PIL rounds to uint8
    if tv is not None:  # torchvision blends the fill into border pixels differently: compare the bulk
        assert (got - tv(image).float()).abs().mean() < 2.0


def test_torchvision_cifar10_levels():
    m, s = torch.tensor([9.0, 9.0, 0.0]), torch.tensor([1.0, -1.0, 1.0])
    bins = {"TranslateX": [-14.0, 14.0, 0.0], "Brightness": [1.9, 0.1, 1.0], "Posterize": [4, 4, 8],
            "Solarize": [0.0, 0.0, 255.0]}
    for name, want in bins.items():  # 150/331 * 32 = 14.5 px, moved by int(); linspace(0, .9); 8 - round(i / 2.25)
        np.testing.assert_allclose(op_argument("torchvision", name, m, s, (32, 32))[1].numpy(), want, atol=1e-6)


# ---------------------------------------------------------------------------------- per-image batched AA

def test_per_image_draws_differ_and_follow_the_policy():
    aug = BatchAugment("rand-m9-n2-mstd0.5")
    d = aug.draw(20000, torch.Generator().manual_seed(0))
    applied = d.op >= 0
    assert abs(applied.double().mean() - 0.5) < 0.02                       # p = 0.5 per layer
    counts = torch.bincount(d.op[applied], minlength=len(aug.names)).double()
    assert counts.min() / counts.max() > 0.85                                 # uniform choice of 15 ops
    assert abs(d.magnitude.mean() - 9) < 0.02 and abs(d.magnitude.std() - 0.5) < 0.03   # gauss(9, 0.5)
    assert abs((d.sign < 0).double().mean() - 0.5) < 0.02
    auto = BatchAugment("original").draw(5000, torch.Generator().manual_seed(1))
    assert len(set(map(tuple, auto.op[:, :].tolist()))) > 20                   # many sub-policies in one batch


@pytest.mark.parametrize("spec", ["rand-m9-n2-mstd0.5", "original", "cifar10", "rand-m9-mstd101-inc1"])
def test_batched_aa_is_per_image(spec):
    aug = BatchAugment(spec, fill=(125, 123, 114))
    x = torch.from_numpy(random_images(1, 3, 32, np.random.default_rng(5))).expand(32, -1, -1, -1).contiguous()
    draws = aug.draw(32, torch.Generator().manual_seed(2))
    y = aug.apply(x, draws)
    assert y.shape == x.shape and y.dtype == torch.uint8 and not torch.equal(y, x)
    assert len({bytes(img.numpy()) for img in y}) > 8            # identical inputs, different outputs
    unchanged = (draws.op < 0).all(1)
    assert torch.equal(y[unchanged], x[unchanged])
    # Batching couples nothing: each image alone with its own draws gives the same result.
    for i in range(0, 32, 5):
        alone = aug.apply(x[i:i + 1].float(), draws.rows(i, i + 1))
        assert alone.dtype == torch.float32 and (alone.round() - y[i].float()).abs().max() <= 1


class Normalized:
    """A loader seen through `epoch_batches` only (as the torch and DALI loaders are)."""

    def __init__(self, loader):
        self.loader = loader

    def __getattr__(self, name):
        if name == "pixel_batches":
            raise AttributeError(name)
        return getattr(self.loader, name)


def test_device_aa_on_pixels_equals_inverting_the_normalization(split):
    augment = TrainAugment(CLASSES, aa="rand-m9-n2-mstd0.5")
    from_pixels = list(augment.wrap(tensor_loader(split)).epoch_batches(3))
    inverted = list(augment.wrap(Normalized(tensor_loader(split))).epoch_batches(3))
    assert same_batches(from_pixels, inverted)
    plain = list(tensor_loader(split).epoch_batches(3))
    changed = [(a[0] != b[0]).flatten(1).any(1).float().mean() for a, b in zip(plain, from_pixels)]
    assert 0.5 < float(sum(changed) / len(changed)) < 0.95      # 1 - 0.5^2 of the images get an op


# -------------------------------------------------------------------------------------- random erasing

def test_random_erasing_boxes_and_fill(split):
    loader = tensor_loader(split, batch_size=32)
    x = next(iter(loader.epoch_batches(0)))[0]
    got = next(iter(TrainAugment(CLASSES, reprob=1.0, remode="const").wrap(loader).epoch_batches(0)))[0]
    boxes = draw_boxes(numpy_generator(0, 0, 0, ERASING), 32, (16, 16), 1.0)
    mask = torch.zeros_like(x, dtype=torch.bool)
    for r, top, left, h, w in zip(boxes.row, boxes.top, boxes.left, boxes.height, boxes.width):
        mask[r, :, top:top + h, left:left + w] = True
    assert torch.equal(got[mask], torch.zeros_like(got[mask])) and torch.equal(got[~mask], x[~mask])
    area = boxes.height * boxes.width / 256
    assert len(boxes.row) == 32 and (area >= MIN_AREA * 0.4).all() and (area <= MAX_AREA * 1.6).all()
    many = draw_boxes(np.random.default_rng(0), 20000, (32, 32), 0.25, max_count=3)
    erased = np.unique(many.row)
    assert abs(len(erased) / 20000 - 0.25) < 0.01                               # the drawn fraction of images
    pixel = next(iter(TrainAugment(CLASSES, reprob=1.0, remode="pixel").wrap(loader).epoch_batches(0)))[0]
    assert torch.equal(pixel[~mask], x[~mask]) and (pixel[mask] != x[mask]).float().mean() > 0.99
    assert abs(pixel[mask].std() - 1) < 0.1                                     # standard normal noise


# --------------------------------------------------------------------------------------- Mixup / CutMix

class NoiseLoader:
    """A training loader of Gaussian noise images (no two pixels alike), 8 per batch, labels 0..7."""
    train, batch_size, mean, std, device = True, 8, MEAN, STD, torch.device("cpu")

    def __len__(self):
        return 4

    def epoch_batches(self, epoch, start_batch=0):
        for b in range(start_batch, 4):
            g = torch.Generator().manual_seed(epoch * 100 + b)
            yield torch.randn(8, 3, 16, 16, generator=g), torch.arange(8)


def _pairs(targets, labels):
    """lambda per image, read off the soft targets: weight of the image's own class."""
    return targets[torch.arange(len(labels)), labels]


def test_mixup_images_and_targets_are_the_same_convex_combination():
    loader = NoiseLoader()
    wrapped = TrainAugment(CLASSES, mixup=1.0).wrap(loader)
    for (x, y), (mx, t) in zip(loader.epoch_batches(1), wrapped.epoch_batches(1)):
        assert t.shape == (8, CLASSES) and t.dtype == torch.float32 and torch.allclose(t.sum(1), torch.ones(8))
        lam = _pairs(t, y)
        assert torch.allclose(lam, lam[0].expand(8)) and 0 < lam[0] < 1            # one lambda per batch
        assert torch.allclose(t, lam[0] * torch.eye(CLASSES)[y] + (1 - lam[0]) * torch.eye(CLASSES)[y.flip(0)])
        assert torch.allclose(mx, lam[0] * x + (1 - lam[0]) * x.flip(0), atol=1e-5)


def test_cutmix_box_area_matches_lambda():
    loader = NoiseLoader()
    wrapped = TrainAugment(CLASSES, cutmix=1.0, smoothing=0.1).wrap(loader)
    for (x, y), (mx, t) in zip(loader.epoch_batches(2), wrapped.epoch_batches(2)):
        lam = (_pairs(t, y)[0] - 0.1 / CLASSES) / 0.9                 # undo the smoothing: on = 1 - s + s / C
        pasted = (mx != x).any(1)                                # pixels taken from the partner image
        assert torch.equal(mx[:, :, pasted[0]], x.flip(0)[:, :, pasted[0]])
        assert abs(pasted[0].sum().item() / 256 - (1 - lam.item())) < 1e-5   # the corrected lambda
        assert torch.equal(pasted, pasted[0].expand_as(pasted))


def test_mixup_off_epoch_keeps_soft_targets(split):
    loader = tensor_loader(split, batch_size=8)
    wrapped = TrainAugment(CLASSES, mixup=1.0, cutmix=1.0, smoothing=0.1, mixup_off_epoch=2).wrap(loader)
    assert wrapped.soft_targets
    (x, y), (mx, t) = next(iter(loader.epoch_batches(3))), next(iter(wrapped.epoch_batches(3)))
    assert torch.equal(mx, x) and torch.allclose(t, torch.eye(CLASSES)[y] * 0.9 + 0.1 / CLASSES)   # timm's smoothed one-hot
    with pytest.raises(ConfigError, match="--batch-size must be even"):
        TrainAugment(CLASSES, mixup=0.8).wrap(tensor_loader(split, batch_size=7))
    with pytest.raises(ConfigError, match="--remode 'noise'"):
        TrainAugment(CLASSES, reprob=0.5, remode="noise").wrap(loader)


def test_from_config_and_loader_options():
    assert TrainAugment.from_config(TrainConfig(), 10) is None               # nothing on: the loader as is
    config = TrainConfig(**RECIPE_V, seed=3)
    augment = TrainAugment.from_config(config, 100)
    assert augment.soft_targets and augment.num_classes == 100 and augment.seed == 3 and augment.aa == RECIPE_V["aa"]
    assert not TrainAugment.from_config(TrainConfig(reprob=0.25), 10).soft_targets
    assert loader_options(TrainConfig(hflip=0.3))["flip"] == 0.3
    assert loader_options(TrainConfig(hflip=0.3, no_flip=True))["flip"] == 0.0
    assert loader_options(TrainConfig())["flip"] is None


# ------------------------------------------------------------------------------ determinism and resume

def test_same_seed_same_batches_resume_bitwise_and_global_rngs_untouched(split):
    make = lambda seed: TrainAugment(CLASSES, **RECIPE_V, seed=seed).wrap(tensor_loader(split, seed=seed))  # noqa: E731
    state = random.getstate(), np.random.get_state()[1].copy(), torch.random.get_rng_state()
    full = list(make(0).epoch_batches(4))
    assert (random.getstate(), torch.equal(torch.random.get_rng_state(), state[2])) == (state[0], True)
    assert (np.random.get_state()[1] == state[1]).all()
    assert same_batches(full, list(make(0).epoch_batches(4)))
    for k in (1, 4):
        assert same_batches(full[k:], list(make(0).epoch_batches(4, start_batch=k)))
    assert not torch.equal(full[0][0], next(iter(make(1).epoch_batches(4)))[0])
    assert not torch.equal(full[0][0], next(iter(make(0).epoch_batches(5)))[0])
    wrapped = make(0)
    assert same_batches(list(wrapped), list(make(0).epoch_batches(0))) and wrapped.epoch == 1


def test_torch_loader_applies_aa_in_workers_reproducibly(split):
    loader = torch_loader(split, aa="rand-m9-n2-mstd0.5")
    wrapped = TrainAugment(CLASSES, aa="rand-m9-n2-mstd0.5", reprob=0.25).wrap(loader)
    assert wrapped._aa is None                                     # the device step is skipped
    plain = list(torch_loader(split).epoch_batches(0))
    state = random.getstate(), torch.random.get_rng_state()
    full = list(wrapped.epoch_batches(0))
    assert random.getstate() == state[0] and torch.equal(torch.random.get_rng_state(), state[1])
    assert sum(not torch.equal(a[0], b[0]) for a, b in zip(plain, full)) == len(plain)
    assert same_batches(full[3:], list(wrapped.epoch_batches(0, start_batch=3)))
    device_aa = TrainAugment(CLASSES, aa="rand-m9-n2-mstd0.5").wrap(torch_loader(split))
    assert device_aa._aa is not None                               # a loader without aa gets it on the device


# ---------------------------------------------------------------------------------------- distributed

def dali_loader(split, batch_size=16, **kw):
    return DaliLoader(split, batch_size=batch_size, train=True, seed=0, flip=True, mean=MEAN, std=STD,
                      num_threads=1, **kw)


@pytest.mark.parametrize("make", [tensor_loader, torch_loader, pytest.param(dali_loader, marks=pytest.mark.skipif(
    not dali_available(), reason="NVIDIA DALI does not import"))], ids=["tensor", "torch", "dali"])
def test_sharded_training_batches_are_the_single_process_batch(split, make):
    single = list(make(split, batch_size=16).epoch_batches(2))
    ranks = [make(split, batch_size=8, rank=r, world_size=2) for r in range(2)]
    assert len(ranks[0]) == len(single) == 6
    shards = [list(r.epoch_batches(2)) for r in ranks]
    for b, (x, y) in enumerate(single):
        assert torch.equal(torch.cat([shards[0][b][0], shards[1][b][0]]), x)
        assert torch.equal(torch.cat([shards[0][b][1], shards[1][b][1]]), y)
    augment = TrainAugment(CLASSES, aa="original", reprob=0.5, remode="pixel")     # per-image steps: drawn globally
    single = list(augment.wrap(tensor_loader(split, batch_size=16)).epoch_batches(1))
    shards = [list(augment.wrap(tensor_loader(split, batch_size=8, rank=r, world_size=2)).epoch_batches(1))
              for r in range(2)]
    for b, (x, _) in enumerate(single):
        torch.testing.assert_close(torch.cat([shards[0][b][0], shards[1][b][0]]), x, atol=1e-4, rtol=0)


@pytest.mark.parametrize("world", [2, 3, 4])
def test_sharded_validation_covers_each_sample_once(split, world):
    n = 94  # not divisible by 3 or 4
    val = ArraySplit(split.images[:n], np.arange(n, dtype=np.int64))
    seen = []
    for r in range(world):
        loader = TensorLoader(val, batch_size=8, train=False, seed=0, flip=False, mean=MEAN, std=STD, rank=r,
                              world_size=world)
        labels = [y for _, y in loader.epoch_batches(0)]
        assert len(labels) == len(loader)
        seen += torch.cat(labels).tolist()
    assert seen == list(range(n))


# ------------------------------------------------------------------------------------- loader options

def test_hflip_probability_reaches_the_plan(tmp_path):
    write_cifar10(tmp_path, n_train=40, n_test=4)
    train, _, _ = build_loaders("cifar10", tmp_path, batch_size=8, flip=0.3)
    assert train.flip == 0.3 and train.sampling.flip == 0.3
    flips = np.concatenate([train.sampling.epoch(e).flip for e in range(20)])
    assert abs(flips.mean() - 0.3) < 0.03
    assert build_loaders("cifar10", tmp_path, batch_size=8)[0].flip == 0.5      # the dataset's default
    assert build_loaders("digits", batch_size=8)[0].flip == 0.0                  # digits do not flip
    assert not train_plan(100, 10, 0, 0, 0.0, False).flip.any()


def test_scale_and_ratio_reach_the_crop_boxes(tmp_path):
    plan = Sampling(400, 8, True, files=True, scale=(0.3, 0.4), ratio=(2.0, 2.0)).epoch(0)
    w, h = plan.box[:, 2], plan.box[:, 3]                     # relative to the image: w / h = ratio, w h = area
    assert np.allclose(w / h, 2.0, atol=1e-5) and (w * h >= 0.3 - 1e-5).all() and (w * h <= 0.4 + 1e-5).all()
    write_image_folder(tmp_path, classes=2, per_class=4, val_per_class=1)
    train = build_loaders("folder", tmp_path, loader="torch", batch_size=4, img_size=16, num_workers=0,
                          scale=(0.5, 0.6), ratio=(1.0, 1.0))[0]
    box = train.sampling.epoch(0).box
    assert np.allclose(box[:, 2], box[:, 3]) and (box[:, 2] ** 2 >= 0.5 - 1e-5).all()
    with pytest.raises(DataError, match=r"scale=\(0.0, 1.0\) \(--scale\)"):
        build_loaders("folder", tmp_path, batch_size=4, scale=(0.0, 1.0))


def test_aug_repeats_repeat_indices():
    plan = Sampling(100, 10, True, seed=0, repeats=3).epoch(0)
    assert len(plan.index) == 100                                               # epoch length kept
    runs = plan.index[:99].reshape(33, 3)
    assert (runs == runs[:, :1]).all() and len(np.unique(runs[:, 0])) == 33     # 33 images, 3 times each
    crops = (plan.dx[:99] * 100 + plan.dy[:99]).reshape(33, 3)
    assert (crops != crops[:, :1]).any(1).mean() > 0.8                          # each copy its own crop
    loader = tensor_loader(ArraySplit(np.zeros((100, 3, 8, 8), np.uint8), np.arange(100)), batch_size=10,
                           aug_repeats=3)
    assert len(loader) == 10 and torch.equal(torch.cat([y for _, y in loader.epoch_batches(0)])[:99],
                                             torch.from_numpy(plan.index[:99]))


def test_img_size_upsamples_batches_on_the_device(tmp_path):
    write_cifar10(tmp_path, n_train=8, n_test=4)
    batches = {}
    for name in ("tensor", "torch") + (("dali",) if dali_available() else ()):
        train, val, info = build_loaders("cifar10", tmp_path, loader=name, batch_size=8, img_size=48, num_workers=0)
        batches[name] = next(iter(train.epoch_batches(0)))[0]
        assert info.img_size == 48 and batches[name].shape == (8, 3, 48, 48)
        assert next(iter(val.epoch_batches(0)))[0].shape == (4, 3, 48, 48)
    assert train.sampling.n == 40
    for name in batches:
        torch.testing.assert_close(batches[name], batches["tensor"], atol=1e-4, rtol=0)
    tensor_train = build_loaders("cifar10", tmp_path, loader="tensor", batch_size=8, img_size=48)[0]
    assert tensor_train._images.shape[-1] == 32 + 8                            # the store stays at 32 px
    # The torch loader's worker auto-augmentation runs at the final size.
    train = build_loaders("cifar10", tmp_path, loader="torch", batch_size=8, img_size=48, num_workers=0,
                          aa="rand-m9-n2-mstd0.5")[0]
    assert next(iter(train.epoch_batches(0)))[0].shape == (8, 3, 48, 48)


@pytest.mark.gpu
def test_cuda_augmentation(split):
    loader = tensor_loader(split, device="cuda")
    wrapped = TrainAugment(CLASSES, **{**RECIPE_V, "reprob": 0.5}).wrap(loader)
    full = list(wrapped.epoch_batches(1))
    x, t = full[0]
    assert x.is_cuda and t.is_cuda and t.shape == (16, CLASSES)
    assert same_batches(full[2:], list(wrapped.epoch_batches(1, start_batch=2)))
    # The device does not change the draws: CPU and CUDA agree but for the erasing noise's generator.
    cpu = TrainAugment(CLASSES, aa="original", mixup=0.8, cutmix=1.0).wrap(tensor_loader(split))
    gpu = TrainAugment(CLASSES, aa="original", mixup=0.8, cutmix=1.0).wrap(loader)
    for (a, ta), (b, tb) in zip(cpu.epoch_batches(2), gpu.epoch_batches(2)):
        # float rounding may move a value across a posterize / solarize step on a few pixels
        assert ((b.cpu() - a).abs() > 0.02).float().mean() < 1e-3
        torch.testing.assert_close(tb.cpu(), ta)


def test_benchmark_script_runs(tmp_path):
    import json

    from tests.helpers import load_benchmark
    bench = load_benchmark("augment_loaders")
    out = tmp_path / "r.json"
    bench.main(["--json", str(out), "--pipelines", "tensor,torch,timm", "--sizes", "32", "--images-32", "64",
                "--repeats", "1", "--workers", "0", "--batch-size", "16"])
    records = json.loads(out.read_text())
    assert {r["pipeline"] for r in records} == {"tensor", "torch", "timm"}
    assert all(r["images_per_sec"] > 0 and r["img_size"] == 32 for r in records)
