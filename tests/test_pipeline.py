"""The read-ahead pipeline and the file-to-file copy of pass-through tensors."""

import errno
import os
import threading
import time

import pytest
import numpy as np
import torch

from fixtures.checkpoints import random_layer, write_gptq
from repack.checkpoint import Checkpoint, CheckpointWriter, RawSlice, TensorSpec
from repack.errors import InputError
from repack.pipeline import ahead_map


def _source_with_tensor(tmp_path):
    L = random_layer(__import__("numpy").random.default_rng(0), 64, 32, 4, 32)
    folder = write_gptq(tmp_path / "src", {"model.layers.0.mlp.up_proj": L}, "v1")
    ck = Checkpoint.open(folder)
    return ck, "model.layers.0.mlp.up_proj.qweight"


@pytest.mark.parametrize("fail_copy", [False, True])
def test_raw_slice_copies_the_stored_bytes(tmp_path, monkeypatch, fail_copy):
    ck, name = _source_with_tensor(tmp_path)
    if fail_copy:  # a file system without copy_file_range: the read/write loop takes over
        def no_copy(*a, **k):
            raise OSError(errno.EXDEV, "cross-device")
        monkeypatch.setattr(os, "copy_file_range", no_copy)
    info = ck.info(name)
    spec = TensorSpec(name, info.dtype, info.shape)
    with CheckpointWriter(tmp_path / "out", [spec, TensorSpec("after", "I32", (2,))]) as w:
        w.write(name, ck.raw_slice(name))
        w.write("after", torch.tensor([7, 8], dtype=torch.int32))
        w.finish({})
    out = Checkpoint.open(tmp_path / "out")
    assert np.array_equal(out.get(name), ck.get(name))
    assert out.get("after").tolist() == [7, 8]  # the copy left the file position after the tensor


def test_raw_slice_of_a_truncated_source_is_one_line(tmp_path):
    ck, name = _source_with_tensor(tmp_path)
    info = ck.info(name)
    short = RawSlice(name, info.file, info.begin, info.nbytes + 10**6)  # more than the file holds
    spec = TensorSpec(name, info.dtype, (info.shape[0] + 10**6 // (info.nbytes // info.shape[0]) + 1, *info.shape[1:]))
    with pytest.raises(InputError, match="truncated"):
        with CheckpointWriter(tmp_path / "out", [spec]) as w:
            w.write(name, short)
    assert not (tmp_path / "out").exists()


def test_ahead_map_keeps_order_with_two_workers():
    def slow_square(i):
        time.sleep(0.002 * (i % 3))  # later items often finish first
        return i * i

    assert list(ahead_map(slow_square, range(40), workers=2, depth=3)) == [i * i for i in range(40)]


def test_ahead_map_raises_at_the_failing_item_and_stops():
    seen = []

    def fn(i):
        seen.append(i)
        if i == 5:
            raise ValueError("module 5 is bad")
        return i

    got = []
    with pytest.raises(ValueError, match="module 5"):
        for r in ahead_map(fn, range(100), workers=2, depth=3):
            got.append(r)
    assert got == [0, 1, 2, 3, 4]
    assert max(seen) < 5 + 3 + 1  # nothing far past the failure was started


def test_ahead_map_stops_when_the_consumer_stops():
    started = []

    def fn(i):
        started.append(i)
        time.sleep(0.01)
        return i

    it = ahead_map(fn, range(1000), workers=2, depth=3)
    assert next(it) == 0
    it.close()
    n = len(started)
    time.sleep(0.1)
    assert len(started) == n <= 5
    assert not any(t.name.startswith("repack-ahead") for t in threading.enumerate())


def test_allocator_tuning_applies_on_linux_and_is_idempotent():
    import sys
    from repack.allocator import keep_freed_memory
    first, second = keep_freed_memory(), keep_freed_memory()
    assert first == second
    if sys.platform.startswith("linux") and os.path.exists("/lib/x86_64-linux-gnu/libc.so.6"):
        assert first is True
