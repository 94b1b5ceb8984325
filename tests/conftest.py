import atexit
import os
import shutil
import tempfile

# Triton kernels run on the CPU only in the interpreter, which must be chosen before triton is imported.
os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
# The user cache (fastmotive/cache.py) of this test session, not the user's: a fresh, empty one each session
# (module fixtures use it); each test gets its own below.
if "FASTMOTIVE_CACHE_DIR" not in os.environ:
    os.environ["FASTMOTIVE_CACHE_DIR"] = tempfile.mkdtemp(prefix="fastmotive-test-cache-")
    atexit.register(shutil.rmtree, os.environ["FASTMOTIVE_CACHE_DIR"], ignore_errors=True)

import pytest
import torch


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def own_user_cache(monkeypatch, tmp_path_factory):
    """Each test its own empty user cache: none reads what another remembered (a FLOPs count, a folder check),
    so each computes what it tests."""
    monkeypatch.setenv("FASTMOTIVE_CACHE_DIR", str(tmp_path_factory.mktemp("user-cache")))


@pytest.fixture
def one_thread():
    """torch on one thread for the test (tests that train on two processes, or on a shared machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def no_tf32():
    """Full fp32 matmuls and convolutions on CUDA for the test (GPU-vs-CPU comparisons): CUDA convolutions
    default to TF32, whose 10-bit mantissa puts results far outside an fp32 tolerance. Restored after."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved

