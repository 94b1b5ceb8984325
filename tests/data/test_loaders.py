"""Loaders (issue 4, "Loaders" and "Tests"): every loader yields the same batches as an independent
numpy reference of the augmentation, the same label multiset each epoch, a deterministic order per
(seed, epoch), correct shapes/dtype/normalization, and resumes at a batch with the same remaining batches.
DALI runs as a CPU-only pipeline here (as in CI); its tests skip where DALI does not import."""
import math

import numpy as np
import pytest
import torch

from fastmotive.data import DaliLoader, DataError, TensorLoader, TorchLoader, dali_available
from fastmotive.data.datasets.readers import ArraySplit, read_dataset
from fastmotive.data.loaders.epoch_plan import PAD, train_plan
from fastmotive.testing import random_images, write_image_folder

needs_dali = pytest.mark.skipif(not dali_available(), reason="NVIDIA DALI does not import")
LOADERS = ["tensor", "torch", pytest.param("dali", marks=needs_dali)]
FILE_LOADERS = ["torch", pytest.param("dali", marks=needs_dali)]
MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)


def make(name, split, train=True, batch_size=16, seed=0, flip=True, workers=0, **kw):
    common = {"batch_size": batch_size, "train": train, "seed": seed, "flip": flip, "mean": MEAN, "std": STD,
              "device": "cpu"}
    if name == "tensor":
        return TensorLoader(split, **common)
    if name == "torch":
        return TorchLoader(split, **common, num_workers=workers, **kw)
    return DaliLoader(split, **common, num_threads=max(1, workers), **kw)


@pytest.fixture(scope="module")
def rgb():  # awkward size: 203 = 12 * 16 + 11
    rng = np.random.default_rng(1)
    return ArraySplit(random_images(203, 3, 32, rng), rng.integers(0, 10, 203).astype(np.int64))


@pytest.fixture(scope="module")
def gray():  # non-square, single channel
    rng = np.random.default_rng(2)
    return ArraySplit(random_images(70, 1, 28, rng)[:, :, :, :20].copy(), rng.integers(0, 5, 70).astype(np.int64))


def reference_batches(split, batch_size, seed, epoch, flip, train=True):
    """Independent numpy reference: zero pad 4, crop at the plan's shift, mirror, normalize."""
    n = len(split.labels)
    imgs = split.images.astype(np.float32)
    if imgs.shape[1] == 1:
        imgs = np.repeat(imgs, 3, axis=1)
    h, w = imgs.shape[2:]
    mean = np.float32(MEAN).reshape(3, 1, 1)
    std = np.float32(STD).reshape(3, 1, 1)
    if not train:
        x = (imgs / 255 - mean) / std
        return [(x[i:i + batch_size], split.labels[i:i + batch_size]) for i in range(0, n, batch_size)]
    plan = train_plan(n, batch_size, seed, epoch, flip, files=False)
    padded = np.pad(imgs, ((0, 0), (0, 0), (PAD, PAD), (PAD, PAD)))
    out = []
    for k in range(len(plan.index)):
        i, dx, dy = plan.index[k], plan.dx[k], plan.dy[k]
        crop = padded[i, :, PAD + dy:PAD + dy + h, PAD + dx:PAD + dx + w]
        out.append(crop[:, :, ::-1] if plan.flip[k] else crop)
    x = (np.stack(out) / 255 - mean) / std
    labels = split.labels[plan.index]
    return [(x[i:i + batch_size], labels[i:i + batch_size]) for i in range(0, len(x), batch_size)]


def assert_batches_equal(got, want, atol=1e-5):
    assert len(got) == len(want)
    for (x, y), (rx, ry) in zip(got, want):
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert x.shape == rx.shape and x.is_contiguous()
        np.testing.assert_allclose(x.numpy(), rx, atol=atol, rtol=0)
        np.testing.assert_array_equal(y.numpy(), ry)


@pytest.mark.parametrize("name", LOADERS)
@pytest.mark.parametrize("flip", [True, False])
def test_train_batches_match_reference(rgb, name, flip):
    loader = make(name, rgb, flip=flip)
    assert len(loader) == 12  # 203 // 16: the last partial batch is dropped
    assert_batches_equal(list(loader.epoch_batches(3)), reference_batches(rgb, 16, 0, 3, flip))


@pytest.mark.parametrize("name", LOADERS)
def test_grayscale_nonsquare(gray, name):
    loader = make(name, gray, batch_size=8, seed=5)
    batches = list(loader.epoch_batches(1))
    assert batches[0][0].shape == (8, 3, 28, 20)
    assert_batches_equal(batches, reference_batches(gray, 8, 5, 1, True))


@pytest.mark.parametrize("name", LOADERS)
def test_validation_fixed_order_partial_batch_and_normalization(rgb, name):
    loader = make(name, rgb, train=False)
    assert len(loader) == 13
    batches = list(loader.epoch_batches(0))
    assert [len(y) for _, y in batches] == [16] * 12 + [11]  # last partial batch kept
    assert_batches_equal(batches, reference_batches(rgb, 16, 0, 0, False, train=False))
    # Undo the normalization: the raw pixels come back.
    x = torch.cat([b[0] for b in batches])
    raw = x * torch.tensor(STD).view(1, 3, 1, 1) + torch.tensor(MEAN).view(1, 3, 1, 1)
    np.testing.assert_allclose((raw * 255).numpy(), rgb.images, atol=1e-3)
    assert_batches_equal(list(loader.epoch_batches(7)), reference_batches(rgb, 16, 0, 0, False, train=False))


@pytest.mark.parametrize("name", LOADERS)
def test_label_multiset_order_and_seed(name):
    rng = np.random.default_rng(3)
    split = ArraySplit(random_images(64, 3, 16, rng), rng.integers(0, 7, 64).astype(np.int64))
    loader = make(name, split, batch_size=16)
    epochs = [torch.cat([y for _, y in loader.epoch_batches(e)]) for e in range(3)]
    for labels in epochs:  # 64 = 4 x 16: every sample once per epoch
        assert sorted(labels.tolist()) == sorted(split.labels.tolist())
    assert not torch.equal(epochs[0], epochs[1])  # reshuffled each epoch
    again = make(name, split, batch_size=16)
    assert torch.equal(torch.cat([y for _, y in again.epoch_batches(1)]), epochs[1])  # deterministic
    other = make(name, split, batch_size=16, seed=1)
    assert not torch.equal(torch.cat([y for _, y in other.epoch_batches(1)]), epochs[1])


@pytest.mark.parametrize("name", LOADERS)
def test_resume_mid_epoch(rgb, name):
    loader = make(name, rgb)
    full = list(loader.epoch_batches(2))
    it = loader.epoch_batches(5)
    next(it)  # an abandoned pass must leave nothing behind
    del it
    resumed = list(loader.epoch_batches(2, start_batch=7))
    assert len(resumed) == len(full) - 7
    for (x, y), (rx, ry) in zip(resumed, full[7:]):
        assert torch.equal(x, rx) and torch.equal(y, ry)
    assert list(loader.epoch_batches(2, start_batch=len(loader))) == []
    with pytest.raises(ValueError, match=r"start_batch=13 is outside \[0, 12\]"):
        loader.epoch_batches(2, start_batch=13)


@pytest.mark.parametrize("name", LOADERS)
def test_iter_advances_epoch_counter(rgb, name):
    loader = make(name, rgb, batch_size=64)
    first, second = [y for _, y in loader], [y for _, y in loader]
    assert loader.epoch == 2
    assert all(torch.equal(a, b) for a, (_, b) in zip(first, loader.epoch_batches(0)))
    assert all(torch.equal(a, b) for a, (_, b) in zip(second, loader.epoch_batches(1)))


@pytest.mark.parametrize("name", LOADERS)
def test_never_a_training_batch_of_one(name):
    rng = np.random.default_rng(4)
    split = ArraySplit(random_images(33, 3, 8, rng), rng.integers(0, 3, 33).astype(np.int64))
    loader = make(name, split, batch_size=16)
    assert [len(y) for _, y in loader.epoch_batches(0)] == [16, 16]
    assert [len(y) for _, y in make(name, split, train=False, batch_size=16).epoch_batches(0)] == [16, 16, 1]


def test_torch_loader_with_workers(rgb):
    loader = make("torch", rgb, workers=2)
    for epoch in (0, 1):  # persistent workers across epochs, including an abandoned pass
        assert_batches_equal(list(loader.epoch_batches(epoch)), reference_batches(rgb, 16, 0, epoch, True))
        next(iter(loader.epoch_batches(epoch + 10)))


# ------------------------------------------------------------------------------------------------ folders


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("folder")
    write_image_folder(root, classes=3, per_class=6, val_per_class=3, size=(72, 60), png_every=3)
    return read_dataset("folder", root)


def pil_val_reference(files, size):
    from PIL import Image

    out = []
    for f in files:
        im = Image.open(f).convert("RGB")
        w, h = im.size
        short = math.floor(size / 0.875)   # timm's resize for crop_pct 0.875
        im = im.resize((max(short, round(w * short / h)), max(short, round(h * short / w))), Image.BILINEAR)
        left, top = (im.size[0] - size + 1) // 2, (im.size[1] - size + 1) // 2
        x = np.asarray(im.crop((left, top, left + size, top + size)), np.float32).transpose(2, 0, 1) / 255
        out.append((x - np.float32(MEAN).reshape(3, 1, 1)) / np.float32(STD).reshape(3, 1, 1))
    return np.stack(out)


@pytest.mark.parametrize("name", FILE_LOADERS)
def test_folder_loader(folder, name):
    train = make(name, folder.train, batch_size=4, img_size=24)
    batches = list(train.epoch_batches(0))
    assert len(train) == len(batches) == 4 and batches[0][0].shape == (4, 3, 24, 24)
    labels = torch.cat([y for _, y in batches])
    plan = train_plan(18, 4, 0, 0, True, files=True)
    np.testing.assert_array_equal(labels.numpy(), folder.train.labels[plan.index])
    again = list(make(name, folder.train, batch_size=4, img_size=24).epoch_batches(0))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, again))
    resumed = list(train.epoch_batches(0, start_batch=2))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches[2:], resumed))

    val = make(name, folder.val, train=False, batch_size=4, img_size=24)
    x = torch.cat([b[0] for b in val.epoch_batches(0)])
    ref = pil_val_reference(folder.val.files, 24)
    diff = np.abs(x.numpy() - ref)
    # torch is PIL itself; DALI's decoder and resampler differ by about a grey level on average.
    assert diff.mean() < (1e-6 if name == "torch" else 0.03), diff.mean()


@needs_dali
def test_folder_dali_matches_torch_training_crops(folder):
    a = list(make("torch", folder.train, batch_size=6, img_size=32).epoch_batches(4))
    b = list(make("dali", folder.train, batch_size=6, img_size=32).epoch_batches(4))
    for (xa, ya), (xb, yb) in zip(a, b):
        assert torch.equal(ya, yb)
        assert (xa - xb).abs().mean() < 0.05  # same boxes and flips; decoders/resamplers differ slightly


@pytest.mark.parametrize("name", FILE_LOADERS)
def test_folder_decode_failure_names_the_file(tmp_path, name):
    write_image_folder(tmp_path, classes=2, per_class=2, val_per_class=1, png_every=1)
    bad = tmp_path / "train" / "class0" / "00001.png"
    # Damage inside the compressed pixels: signature, IEND and header are intact, decoding fails.
    data = bytearray(bad.read_bytes())
    start = data.index(b"IDAT") + 20
    data[start:start + 40] = bytes(v ^ 0x5A for v in data[start:start + 40])
    bad.write_bytes(bytes(data))
    raw = read_dataset("folder", tmp_path)
    loader = make(name, raw.train, batch_size=2, img_size=16)
    with pytest.raises(DataError, match="00001.png.*damage is inside the image data"):
        list(loader.epoch_batches(0))


def test_the_adapter_keeps_loaders_with_the_protocol_and_wraps_plain_iterables():
    from fastmotive.data.loaders.protocol import EpochLoader, PlainBatches, as_epoch_loader

    class OwnLoader:   # a user's loader that follows the protocol without deriving from EpochLoader
        def __len__(self):
            return 3

        def epoch_batches(self, epoch, start_batch=0):
            return iter(range(start_batch, 3))

    own = OwnLoader()
    assert as_epoch_loader(own) is own
    wrapped = as_epoch_loader(["a", "b", "c"])
    assert isinstance(wrapped, PlainBatches) and isinstance(wrapped, EpochLoader) and len(wrapped) == 3
    assert list(wrapped.epoch_batches(5, start_batch=1)) == ["b", "c"]
    assert list(wrapped) == ["a", "b", "c"] and wrapped.epoch == 1   # iter(): the next epoch, then the counter
