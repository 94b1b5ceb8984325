"""`build_loaders`, the trainer's one way in: options, defaults, the `auto` choice and its errors."""
import json

import pytest
import torch

import fastmotive.data.build as build
from fastmotive.data import DataError, DatasetInfo, build_loaders, dali_available, list_loaders
from fastmotive.testing import write_cifar10, write_image_folder


def test_digits_default():
    train, val, info = build_loaders()  # dataset=None / "digits": no files needed
    assert info == DatasetInfo("digits", 10, 32, info.mean, info.std, 1437, 360, "tensor")
    assert len(info.mean) == 3 and len(info.std) == 3
    assert len(train) == 1437 // 64 and len(val) == 6
    assert not train.flip  # digit datasets: flip=None means off
    images, labels = next(iter(train))
    assert images.shape == (64, 3, 32, 32) and images.dtype == torch.float32 and labels.dtype == torch.int64
    with pytest.raises(AttributeError):
        info.name = "x"  # frozen


def test_val_split_independent_of_training_seed():
    _, val0, _ = build_loaders("digits", seed=0, loader="tensor")
    _, val7, _ = build_loaders("digits", seed=7, loader="tensor")
    for (a, ya), (b, yb) in zip(val0.epoch_batches(0), val7.epoch_batches(3)):
        assert torch.equal(a, b) and torch.equal(ya, yb)


def test_img_size_and_flip_override(tmp_path):
    write_cifar10(tmp_path, n_train=8, n_test=4)
    train, val, info = build_loaders("cifar10", tmp_path, batch_size=8, img_size=40, loader="torch",
                                     num_workers=0)
    assert info.img_size == 40 and info.train_size == 40 and info.val_size == 4 and info.loader == "torch"
    assert train.flip  # CIFAR flips by default
    assert next(iter(val.epoch_batches(0)))[0].shape == (4, 3, 40, 40)
    train, _, _ = build_loaders("cifar10", tmp_path, batch_size=8, flip=False)
    assert not train.flip


@pytest.mark.parametrize("loader", ["tensor", "torch", pytest.param("dali", marks=pytest.mark.skipif(
    not dali_available(), reason="NVIDIA DALI does not import"))])
def test_every_loader_through_build(loader):
    train, _, info = build_loaders("digits", loader=loader, batch_size=100, num_workers=0)
    assert info.loader == loader and len(train) == 14
    got = [y for _, y in train.epoch_batches(1, start_batch=12)]
    assert len(got) == 2 and all(len(y) == 100 for y in got)


def test_auto_choice(tmp_path, monkeypatch):
    write_image_folder(tmp_path, classes=2, per_class=3, val_per_class=1)
    assert list_loaders() == ["auto", "dali", "tensor", "torch"]
    _, _, info = build_loaders("folder", tmp_path, batch_size=2, img_size=16)
    assert info.loader == ("dali" if dali_available() else "torch")
    # Without DALI: auto falls back to torch, and asking for dali says why it cannot.
    monkeypatch.setattr(build, "dali_import_error", lambda: "ImportError: No module named 'nvidia.dali'")
    monkeypatch.setattr("fastmotive.data.loaders.dali.dali_import_error",
                        lambda: "ImportError: No module named 'nvidia.dali'")
    _, _, info = build_loaders("folder", tmp_path, batch_size=2, img_size=16, num_workers=0)
    assert info.loader == "torch"
    with pytest.raises(DataError, match="loader 'dali' needs NVIDIA DALI .*No module named"):
        build_loaders("folder", tmp_path, batch_size=2, loader="dali")
    assert build_loaders("digits")[2].loader == "tensor"


def test_tensor_loader_rejects_folders(tmp_path):
    write_image_folder(tmp_path, classes=2, per_class=3, val_per_class=1)
    with pytest.raises(DataError, match="loader='tensor' needs an array dataset.*use loader='dali', 'torch'"):
        build_loaders("folder", tmp_path, batch_size=2, loader="tensor")


def test_bad_options_are_listed_together():
    with pytest.raises(DataError) as e:
        build_loaders("imagenet", loader="fast", batch_size=1, img_size=3, seed=-2, num_workers=-1)
    msg = str(e.value)
    for part in ("dataset='imagenet' is unknown; valid choices: cifar10",
                 "loader='fast' is unknown; valid choices: auto, dali, tensor, torch",
                 "batch_size=1 must be an integer >= 2", "img_size=3", "seed=-2", "num_workers=-1"):
        assert part in msg


def test_batch_larger_than_dataset(tmp_path):
    write_cifar10(tmp_path, n_train=2, n_test=2)
    with pytest.raises(DataError, match="10 training images, fewer than batch_size=64"):
        build_loaders("cifar10", tmp_path)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_cuda_without_cuda():
    with pytest.raises(DataError, match="device='cuda' but CUDA is not available"):
        build_loaders(device="cuda")


@pytest.mark.gpu
@pytest.mark.parametrize("loader", ["tensor", "torch", "dali"])
def test_cuda_batches(loader, tmp_path):
    if loader == "dali" and not dali_available():
        pytest.skip("NVIDIA DALI does not import")
    train, val, _ = build_loaders("digits", loader=loader, device="cuda", num_workers=0)
    x, y = next(iter(train))
    assert x.is_cuda and y.is_cuda
    ref, _, _ = build_loaders("digits", loader="tensor", device="cpu")
    torch.testing.assert_close(x.cpu(), next(iter(ref.epoch_batches(0)))[0], atol=1e-5, rtol=0)
    if loader != "tensor":  # GPU (mixed) JPEG decoding
        write_image_folder(tmp_path, classes=2, per_class=4, val_per_class=2, size=(64, 48))
        train, val, _ = build_loaders("folder", tmp_path, loader=loader, batch_size=4, img_size=32, device="cuda")
        assert next(iter(train))[0].is_cuda and next(iter(val.epoch_batches(0)))[0].shape == (4, 3, 32, 32)


def test_benchmark_script_runs(tmp_path):
    from tests.helpers import load_benchmark
    bench = load_benchmark("loaders")
    out = tmp_path / "r.json"
    bench.main(["--json", str(out), "--array-images", "300", "--jpeg-images", "8", "--img-size", "32",
                "--repeats", "2", "--workers", "0", "--batch-size", "4"])
    records = json.loads(out.read_text())
    assert {(r["loader"], r["data"]) for r in records} >= {("tensor", "array32"), ("torch", "array32"),
                                                            ("torch", "jpeg224")}
    for r in records:
        assert {"loader", "data", "device", "images_per_sec"} <= set(r) and r["images_per_sec"] > 0
