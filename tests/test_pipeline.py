"""The read-ahead pipeline and the file-to-file copy of pass-through tensors."""

import errno
import os
import threading
import time

import pytest
import torch

from fixtures.checkpoints import random_layer, write_gptq
from repack.checkpoint import Checkpoint, CheckpointWriter, RawSlice, TensorSpec
from repack.errors import InputError
from repack.pipeline import ahead


def test_ahead_keeps_order_and_runs_in_front():
    produced = []

    def items():
        for i in range(50):
            produced.append(i)
            yield i

    got = []
    for i in ahead(items(), depth=3):
        time.sleep(0.001)
        got.append(i)
        assert len(produced) <= i + 1 + 3 + 1  # never more than depth (+ the one being put) ahead
    assert got == list(range(50))


def test_ahead_raises_the_producers_error_at_its_item():
    def items():
        yield 1
        yield 2
        raise ValueError("bad module")

    got = []
    with pytest.raises(ValueError, match="bad module"):
        for i in ahead(items()):
            got.append(i)
    assert got == [1, 2]


def test_ahead_stops_the_producer_when_the_consumer_stops():
    started = threading.Event()
    count = [0]

    def items():
        started.set()
        for i in range(10_000):
            count[0] += 1
            yield i

    it = ahead(items(), depth=2)
    assert next(it) == 0
    it.close()
    n = count[0]
    time.sleep(0.3)
    assert count[0] == n < 10  # the thread ended: nothing more is produced
    assert not any(t.name == "repack-ahead" for t in threading.enumerate())


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
    assert torch.equal(out.get(name), ck.get(name))
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
