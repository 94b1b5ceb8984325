"""Dataset readers on files written in the exact standard layouts, the real Fashion-MNIST where installed,
and every "Bad input" case of issue 4 (an error naming the file, never a partial dataset)."""
import gzip
import pickle

import numpy as np
import pytest

from fastmotive.data import DataError, list_datasets, read_dataset
from fastmotive.data.datasets import image_folder
from fastmotive.data.datasets.readers import FASHION_MNIST_SYSTEM_DIR
from fastmotive.testing import idx_bytes, write_cifar10, write_cifar100, write_idx_dataset, write_image_folder


def _load(path):
    with open(path, "rb") as f:
        return pickle.load(f, encoding="bytes")


def test_list_datasets():
    assert list_datasets() == ["cifar10", "cifar100", "cifar100_coarse", "digits", "fashion_mnist", "folder",
                               "mnist"]
    with pytest.raises(DataError, match="unknown dataset 'imagenet'.*valid choices: cifar10"):
        read_dataset("imagenet")


def test_digits_split_is_fixed_and_stratified():
    raw = read_dataset(None)
    assert raw.name == "digits" and raw.num_classes == 10 and not raw.flip
    assert raw.train.images.shape == (1437, 1, 32, 32) and raw.val.images.shape == (360, 1, 32, 32)
    assert raw.train.images.dtype == np.uint8 and raw.train.images.max() == 255
    assert np.bincount(raw.val.labels, minlength=10).min() >= 35  # stratified: 35-37 per class
    again = read_dataset("digits")
    np.testing.assert_array_equal(raw.val.images, again.val.images)
    assert 0 < raw.mean[0] < 1 and 0 < raw.std[0] < 1


def test_cifar10_standard_layout(tmp_path):
    root = write_cifar10(tmp_path, n_train=7, n_test=5)
    raw = read_dataset("cifar10", tmp_path)
    assert raw.train.images.shape == (35, 3, 32, 32) and raw.val.images.shape == (5, 3, 32, 32)
    b3 = _load(root / "data_batch_3")
    # Row layout of the pickle: 1024 red, 1024 green, 1024 blue values, each row-major 32x32.
    np.testing.assert_array_equal(raw.train.images[14], b3[b"data"][0].reshape(3, 32, 32))
    np.testing.assert_array_equal(raw.train.images[14, 1, 2, 5], b3[b"data"][0][1024 + 2 * 32 + 5])
    np.testing.assert_array_equal(raw.train.labels[14:21], b3[b"labels"])
    assert raw.classes[3] == "class3" and raw.flip and raw.num_classes == 10


@pytest.mark.parametrize("name,key,n", [("cifar100", b"fine_labels", 100), ("cifar100_coarse", b"coarse_labels", 20)])
def test_cifar100_fine_and_coarse(tmp_path, name, key, n):
    root = write_cifar100(tmp_path, n_train=30, n_test=10)
    raw = read_dataset(name, tmp_path)
    assert raw.num_classes == n and len(raw.classes) == n
    np.testing.assert_array_equal(raw.train.labels, _load(root / "train")[key])
    np.testing.assert_array_equal(raw.val.images.reshape(10, -1), _load(root / "test")[b"data"])


@pytest.mark.parametrize("name,sub,gz", [("mnist", "", True), ("mnist", "MNIST/raw", False),
                                         ("fashion_mnist", "FashionMNIST/raw", True)])
def test_idx_layouts(tmp_path, name, sub, gz):
    d = write_idx_dataset(tmp_path / sub, n_train=13, n_test=6, gz=gz)
    raw = read_dataset(name, tmp_path)
    assert raw.train.images.shape == (13, 1, 28, 28) and raw.val.images.shape == (6, 1, 28, 28)
    stem = d / "train-images-idx3-ubyte"
    data = gzip.decompress((d / "train-images-idx3-ubyte.gz").read_bytes()) if gz else stem.read_bytes()
    np.testing.assert_array_equal(raw.train.images.reshape(-1), np.frombuffer(data, np.uint8, offset=16))
    assert not raw.flip  # digit datasets: no flip by default


def test_folder_layout(tmp_path):
    write_image_folder(tmp_path, classes=3, per_class=4, val_per_class=2, png_every=2, val_name="validation")
    (tmp_path / "train" / "class1" / "notes.txt").write_text("ignored")
    raw = read_dataset("folder", tmp_path)
    assert raw.classes == ("class0", "class1", "class2") and raw.num_classes == 3
    assert len(raw.train.files) == 12 and len(raw.val.files) == 6
    assert sum(f.endswith(".png") for f in raw.train.files) == 6
    np.testing.assert_array_equal(raw.train.labels, np.repeat([0, 1, 2], 4))


@pytest.mark.skipif(not FASHION_MNIST_SYSTEM_DIR.is_dir(), reason="apt-get install dataset-fashion-mnist")
def test_real_fashion_mnist():
    raw = read_dataset("fashion_mnist")  # Debian's install is the default location
    assert raw.train.images.shape == (60000, 1, 28, 28) and raw.val.images.shape == (10000, 1, 28, 28)
    assert np.bincount(raw.train.labels).tolist() == [6000] * 10
    assert np.bincount(raw.val.labels).tolist() == [1000] * 10
    # Published training-set statistics, which normalization uses.
    assert abs(raw.train.images.mean() / 255 - raw.mean[0]) < 1e-3
    assert abs(raw.train.images.std() / 255 - raw.std[0]) < 1e-3


# ------------------------------------------------------------------------------------------------ bad input


def test_cifar_missing_file(tmp_path):
    root = write_cifar10(tmp_path, n_train=2, n_test=2)
    (root / "data_batch_3").unlink()
    with pytest.raises(DataError, match=r"data_batch_3: missing file; expected layout: .*cifar-10-batches-py"):
        read_dataset("cifar10", tmp_path)
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(DataError, match="elsewhere/cifar-10-batches-py: no such directory"):
        read_dataset("cifar10", tmp_path / "elsewhere")
    with pytest.raises(DataError, match="needs --data-dir"):
        read_dataset("cifar10")


def test_cifar_truncated_pickle(tmp_path):
    root = write_cifar10(tmp_path, n_train=4, n_test=2)
    path = root / "test_batch"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(DataError, match="test_batch: truncated or not a CIFAR python pickle"):
        read_dataset("cifar10", tmp_path)


def test_cifar_pickle_without_keys(tmp_path):
    root = write_cifar100(tmp_path, n_train=4, n_test=2)
    d = _load(root / "train")
    del d[b"fine_labels"]
    with open(root / "train", "wb") as f:
        pickle.dump(d, f, protocol=2)
    with pytest.raises(DataError, match=r"train: pickle lacks key\(s\) \['fine_labels'\]"):
        read_dataset("cifar100", tmp_path)
    read_dataset("cifar100_coarse", tmp_path)  # the coarse labels are still there


def test_cifar_labels_out_of_range(tmp_path):
    root = write_cifar10(tmp_path, n_train=4, n_test=3)
    d = _load(root / "data_batch_5")
    d[b"labels"][2] = 10
    with open(root / "data_batch_5", "wb") as f:
        pickle.dump(d, f, protocol=2)
    with pytest.raises(DataError, match=r"data_batch_5 b'labels': 1 labels outside \[0, 10\), first at index 2: 10"):
        read_dataset("cifar10", tmp_path)


def test_cifar_pickle_cannot_run_code(tmp_path):
    root = write_cifar10(tmp_path, n_train=2, n_test=2)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))
    with open(root / "test_batch", "wb") as f:
        pickle.dump({b"data": Evil(), b"labels": []}, f, protocol=2)
    with pytest.raises(DataError, match=r"test_batch: the pickle references .*print, which CIFAR files never hold"):
        read_dataset("cifar10", tmp_path)


def test_idx_bad_magic(tmp_path):
    d = write_idx_dataset(tmp_path, gz=False)
    path = d / "t10k-labels-idx1-ubyte"
    path.write_bytes(b"\x00\x00\x08\x03" + path.read_bytes()[4:])
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte: bad idx magic number 0x00000803, expected 0x00000801"):
        read_dataset("mnist", tmp_path)


def test_idx_truncated(tmp_path):
    d = write_idx_dataset(tmp_path, gz=False)
    path = d / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte: truncated idx file: .* header \[60, 28, 28\]"):
        read_dataset("mnist", tmp_path)


def test_idx_truncated_gzip(tmp_path):
    d = write_idx_dataset(tmp_path, gz=True)
    path = d / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-50])
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz: cannot read .*truncated or corrupt"):
        read_dataset("mnist", tmp_path)


def test_idx_missing_and_mismatched(tmp_path):
    d = write_idx_dataset(tmp_path, n_train=10, gz=False)
    (d / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(9, np.uint8)))
    with pytest.raises(DataError, match="holds 10 images but .* holds 9 labels"):
        read_dataset("mnist", tmp_path)
    (d / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.full(10, 12, np.uint8)))
    with pytest.raises(DataError, match=r"labels outside \[0, 10\)"):
        read_dataset("mnist", tmp_path)
    (d / "train-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match=r"missing file train-labels-idx1-ubyte\[.gz\]: looked in .*MNIST/raw"):
        read_dataset("mnist", tmp_path)


def test_folder_empty_class(tmp_path):
    write_image_folder(tmp_path, classes=2, per_class=2, val_per_class=1)
    (tmp_path / "train" / "empty").mkdir()
    with pytest.raises(DataError, match="train/empty: empty class folder"):
        read_dataset("folder", tmp_path)


def test_folder_missing_val_and_unknown_class(tmp_path):
    write_image_folder(tmp_path, classes=2, per_class=2, val_per_class=1, val_name="test")
    with pytest.raises(DataError, match=r"missing val/ \(or validation/\); expected layout: DIR/train/<class>"):
        read_dataset("folder", tmp_path)
    (tmp_path / "test").rename(tmp_path / "val")
    (tmp_path / "val" / "class1").rename(tmp_path / "val" / "zebra")
    with pytest.raises(DataError, match=r"class folder\(s\) \['zebra'\] do not exist in train/"):
        read_dataset("folder", tmp_path)


@pytest.mark.parametrize("damage,what", [(lambda b: b[: len(b) // 2], "truncated JPEG"),
                                         (lambda b: b"GIF89a" + b[6:], "not a JPEG or PNG"),
                                         (lambda b: b"", "empty file"),
                                         (lambda b: b"\xff\xd8\xff\xe0" + bytes(200) + b"\xff\xd9",
                                          "bad header .*cannot identify image file")],
                         ids=["truncated", "gif", "empty", "header"])
def test_folder_bad_image_raises_or_is_skipped(tmp_path, damage, what):
    write_image_folder(tmp_path, classes=2, per_class=3, val_per_class=1)
    bad = tmp_path / "train" / "class1" / "00001.jpg"
    bad.write_bytes(damage(bad.read_bytes()))
    with pytest.raises(DataError, match=rf"1 image\(s\) cannot be decoded .*skip-bad-images.*00001.jpg: {what}"):
        read_dataset("folder", tmp_path)
    with pytest.warns(UserWarning, match=r"skipped 1 undecodable image\(s\): .*00001.jpg"):
        raw = read_dataset("folder", tmp_path, skip_bad_images=True)
    assert len(raw.train.files) == 5 and str(bad) not in raw.train.files and raw.skipped == 1


def test_folder_truncated_png(tmp_path):
    write_image_folder(tmp_path, classes=2, per_class=2, val_per_class=1, png_every=1)
    bad = tmp_path / "val" / "class0" / "00000.png"
    bad.write_bytes(bad.read_bytes()[:-20])
    with pytest.raises(DataError, match="00000.png: truncated PNG"):
        read_dataset("folder", tmp_path)


def test_a_whole_folder_is_not_checked_again_until_a_file_changes(tmp_path, monkeypatch):
    write_image_folder(tmp_path, classes=2, per_class=3, val_per_class=1)
    checked = []
    real = image_folder._drop_bad
    monkeypatch.setattr(image_folder, "_drop_bad", lambda files, *a: checked.extend(files) or real(files, *a))
    first = read_dataset("folder", tmp_path)
    assert len(checked) == 8
    again = read_dataset("folder", tmp_path)
    assert len(checked) == 8, "unchanged since it was found whole: not read again"
    assert again.train.files == first.train.files and (again.train.labels == first.train.labels).all()
    assert again.val.files == first.val.files and (again.val.labels == first.val.labels).all()
    damaged = tmp_path / "train" / "class1" / "00001.jpg"
    damaged.write_bytes(damaged.read_bytes()[:-100])   # a changed file: the folder is checked again, and fails
    with pytest.raises(DataError, match="00001.jpg: truncated JPEG"):
        read_dataset("folder", tmp_path)
    assert len(checked) == 8 + 6, "the training split read again (the error comes before the validation split)"


def test_a_folder_with_bad_files_is_checked_every_time(tmp_path):
    write_image_folder(tmp_path, classes=2, per_class=3, val_per_class=1)
    bad = tmp_path / "train" / "class0" / "00000.jpg"
    bad.write_bytes(b"")
    for _ in range(2):
        with pytest.warns(UserWarning, match=r"skipped 1 undecodable image\(s\)"):
            assert read_dataset("folder", tmp_path, skip_bad_images=True).skipped == 1


def test_with_the_cache_off_the_folder_is_checked_without_a_listing_key(tmp_path, monkeypatch):
    write_image_folder(tmp_path, classes=2, per_class=3, val_per_class=1)
    monkeypatch.setenv("FASTMOTIVE_CACHE_DIR", "off")
    keyed, checked = [], []
    monkeypatch.setattr(image_folder, "_listing_key", lambda files: keyed.append(files))
    real = image_folder._drop_bad
    monkeypatch.setattr(image_folder, "_drop_bad", lambda files, *a: checked.extend(files) or real(files, *a))
    for _ in range(2):
        read_dataset("folder", tmp_path)
    assert not keyed and len(checked) == 16, "every read checks every file, and stats none of them for a key"
