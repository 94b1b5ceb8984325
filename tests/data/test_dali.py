"""The `dali` loader's pipeline (issue 18): built once per loader and fed per pass, with batches still a pure
function of (seed, epoch, batch) through abandoned, resumed and overlapping passes; validation keeps its last
partial batch with every image exactly once (DALI's iterator would have turned PARTIAL into FILL)."""
import numpy as np
import pytest
import torch

from fastmotive.data import DaliLoader, TorchLoader, dali_available
from fastmotive.data.datasets.readers import ArraySplit, read_dataset
from fastmotive.testing import random_images, write_image_folder

pytestmark = pytest.mark.skipif(not dali_available(), reason="NVIDIA DALI does not import")
MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)


def make(split, loader=DaliLoader, train=True, batch_size=16, **kw):
    return loader(split, batch_size=batch_size, train=train, seed=3, flip=True, mean=MEAN, std=STD, device="cpu",
                  **kw)


def count_builds(loader):
    """Wrap the loader's pipeline factory to count the pipelines it builds."""
    built = []
    build = loader._pipeline
    loader._pipeline = lambda source: built.append(1) or build(source)
    return built


def same(a, b):
    return len(a) == len(b) and all(torch.equal(x, u) and torch.equal(y, v) for (x, y), (u, v) in zip(a, b))


@pytest.fixture(scope="module")
def arrays():  # 100 = 6 * 16 + 4
    rng = np.random.default_rng(7)
    return ArraySplit(random_images(100, 3, 16, rng), rng.integers(0, 10, 100).astype(np.int64))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):  # validation: 15 images, not a multiple of the batch of 4
    root = tmp_path_factory.mktemp("dali_folder")
    write_image_folder(root, classes=3, per_class=4, val_per_class=5, size=(56, 48), png_every=4)
    return read_dataset("folder", root)


def test_one_pipeline_serves_every_pass(arrays):
    loader = make(arrays)
    built = count_builds(loader)
    first = [list(loader.epoch_batches(e)) for e in range(3)]
    it = loader.epoch_batches(9)
    next(it)
    del it                                             # abandoned: drained, not rebuilt
    resumed = list(loader.epoch_batches(1, start_batch=4))
    again = list(loader.epoch_batches(1))
    assert len(built) == 1
    fresh = make(arrays)                               # a new loader gives the same batches: a pure function
    assert all(same(first[e], list(fresh.epoch_batches(e))) for e in range(3))
    assert same(again, first[1]) and same(resumed, first[1][4:])
    assert not torch.equal(first[0][0][1], first[1][0][1])   # reshuffled per epoch


def test_overlapping_passes_each_get_their_batches(arrays):
    loader = make(arrays)
    built = count_builds(loader)
    want = {e: list(make(arrays).epoch_batches(e)) for e in (0, 1)}
    a, b = loader.epoch_batches(0), loader.epoch_batches(1, start_batch=2)
    got_a, got_b = [next(a)], [next(b)]
    got_a += list(a)
    got_b += list(b)
    assert same(got_a, want[0]) and same(got_b, want[1][2:])
    assert len(built) == 2 and len(loader._idle) == 1       # the second pipeline was not kept
    assert same(list(loader.epoch_batches(1)), want[1]) and len(built) == 2


def test_validation_keeps_the_last_partial_batch_without_padding(folder):
    dali = make(folder.val, train=False, batch_size=4, img_size=24)
    # The reference loads in this process: forking workers beside DALI's live threads can crash them (seen once in CI).
    torch_ = make(folder.val, loader=TorchLoader, train=False, batch_size=4, img_size=24, num_workers=0)
    for epoch in (0, 1):                               # the reused pipeline too
        got = list(dali.epoch_batches(epoch))
        want = list(torch_.epoch_batches(epoch))
        assert [len(y) for _, y in got] == [len(y) for _, y in want] == [4, 4, 4, 3]
        x, xt = torch.cat([b[0] for b in got]), torch.cat([b[0] for b in want])
        np.testing.assert_array_equal(torch.cat([b[1] for b in got]).numpy(), folder.val.labels)
        # Each DALI image is nearest to the PIL one at its place: every image once, none repeated or padded.
        dist = (x[:, None] - xt[None]).abs().flatten(2).mean(2)
        assert torch.equal(dist.argmin(1), torch.arange(15)), dist
        assert dist.diagonal().mean() < 0.03


def test_validation_of_arrays_every_image_once(arrays):
    loader = make(arrays, train=False)
    for _ in range(2):
        batches = list(loader.epoch_batches(0))
        assert [len(y) for _, y in batches] == [16] * 6 + [4]
        x = torch.cat([b[0] for b in batches])
        raw = (x * torch.tensor(STD).view(1, 3, 1, 1) + torch.tensor(MEAN).view(1, 3, 1, 1)) * 255
        np.testing.assert_allclose(raw.numpy(), arrays.images, atol=1e-3)


def test_a_failed_pass_drops_its_pipeline(arrays):
    loader = make(arrays)
    built = count_builds(loader)
    loader._array_batch = lambda plan, b: (_ for _ in ()).throw(OSError("disk gone"))
    with pytest.raises(OSError, match="disk gone"):
        list(loader.epoch_batches(0))
    assert loader._idle == []
    del loader._array_batch                            # the source works again: a new pipeline, right batches
    assert same(list(loader.epoch_batches(0)), list(make(arrays).epoch_batches(0))) and len(built) == 2
