"""Atomic checkpoints: a failed write (full disk) leaves the previous checkpoint intact."""
import errno

import pytest
import torch

from fastmotive.run import checkpoint


def test_full_disk_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    checkpoint.save_atomic({"x": torch.ones(3)}, path)
    good = path.read_bytes()

    def full_disk(obj, f):
        f.write(b"partial bytes")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(checkpoint.CheckpointError, match="No space"):   # one line for the user, errno text kept
        checkpoint.save_atomic({"x": torch.zeros(3)}, path)
    assert path.read_bytes() == good
    assert list(tmp_path.iterdir()) == [path]   # no temporary file left behind


def test_corrupt_and_missing_checkpoints_are_named(tmp_path):
    with pytest.raises(checkpoint.CheckpointError, match="no checkpoint at"):
        checkpoint.load(tmp_path / "none.pt")
    (tmp_path / "bad.pt").write_bytes(b"\x00" * 10)
    with pytest.raises(checkpoint.CheckpointError, match="bad.pt is corrupt"):
        checkpoint.load(tmp_path / "bad.pt")
