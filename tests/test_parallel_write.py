"""The forked-process write pass (repack/parallel_write.py) against the in-order threaded one:
the same bytes in every shard, and a worker's failure handled as the threaded path handles it."""

import os
import signal

import pytest

from fixtures.checkpoints import random_model, write_gptq
from repack import parallel_write
from repack.convert import convert
from repack.errors import InputError, OutputError
from tests.conftest import leftovers

pytestmark = pytest.mark.skipif(not parallel_write.available(), reason="needs fork and two cores")


def folder_bytes(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("to, variant", [("auto_awq", "gemm"), ("auto_gptq", "v2"), ("marlin", "gptq"),
                                         ("compressed_tensors", "pack-quantized"), ("gguf", "auto"), ("gguf", "q8_0")])
def test_processes_write_the_same_bytes_as_threads(tmp_path, monkeypatch, to, variant):
    layers = random_model(seed=3, bits=4, group_size=64, sym=True)
    src = write_gptq(tmp_path / "src", layers, "v1", sym=True)
    outs = {}
    for mode in ("0", "1"):
        monkeypatch.setenv("REPACK_WRITE_PROCESSES", mode)
        # a small shard size: several shards, tensors of one module split across them
        out = tmp_path / mode / "out"  # one folder name: GGUF records it (general.name)
        convert(src, out, to, variant, shard_size=40_000)
        outs[mode] = folder_bytes(out)
    if to != "gguf":  # one GGUF file; the safetensors outputs have several shards here
        assert sum(name.endswith(".safetensors") for name in outs["1"]) > 2
    assert outs["1"] == outs["0"]


@pytest.mark.parametrize("to, variant", [("auto_awq", "gemm"), ("gguf", "auto"), ("gguf", "q8_0")])
def test_direct_and_staged_writes_land_the_same_bytes(tmp_path, monkeypatch, to, variant):
    """With the direct-write threshold lowered to a few pages, the write processes' tensors go out
    with O_DIRECT: GGUF's blocks from the encoder's phase-aligned buffers, safetensors arrays (and
    the GGUF's pass-through tensors) copied piece by piece into such buffers outside the disk lock
    (direct_io.pwrite_direct). The files equal the in-order threaded pass's, written all buffered."""
    from repack import direct_io
    layers = random_model(seed=4, bits=4, group_size=64, sym=False)
    src = write_gptq(tmp_path / "src", layers, "v1", sym=False)
    monkeypatch.setenv("REPACK_WRITE_PROCESSES", "0")
    monkeypatch.setenv("REPACK_DIRECT_IO", "0")
    convert(src, tmp_path / "a" / "out", to, variant, shard_size=40_000)
    monkeypatch.setenv("REPACK_WRITE_PROCESSES", "1")
    monkeypatch.setenv("REPACK_DIRECT_IO", "1")
    if direct_io.open_direct(src / "config.json") is None:
        pytest.skip("this file system refuses O_DIRECT (tmpfs?)")
    monkeypatch.setattr(direct_io, "DIRECT_MIN", 2 * 4096)
    monkeypatch.setattr(direct_io, "STAGE", 3 * 4096)  # several staged pieces a tensor
    log = tmp_path / "direct.log"
    real = direct_io._write_direct

    def logged(fd, direct_fd, pos, aligned):  # in the write processes: a line a direct write
        with open(log, "a") as f:
            f.write(f"{os.getpid()} {pos} {len(aligned)}\n")
        return real(fd, direct_fd, pos, aligned)
    monkeypatch.setattr(direct_io, "_write_direct", logged)
    convert(src, tmp_path / "b" / "out", to, variant, shard_size=40_000)
    lines = log.read_text().split()
    assert len(lines) >= 3 * 4 and all(int(n) % 4096 == 0 for n in lines[2::3])  # direct writes happened, whole pages
    assert len(set(lines[0::3])) == 2  # from both write processes
    assert folder_bytes(tmp_path / "b" / "out") == folder_bytes(tmp_path / "a" / "out")


def _fail(how: str, ckpt, module: str):
    if how == "raise":
        raise InputError(f"{ckpt.root}: tensor '{module}.qweight': simulated bad bytes")
    os.kill(os.getpid(), signal.SIGKILL)  # the OOM killer


@pytest.mark.parametrize("how, error, match", [("raise", InputError, "simulated bad bytes"),
                                               ("kill", OutputError, "write process was killed")])
def test_a_worker_failure_is_one_error_and_leaves_nothing(tmp_path, monkeypatch, how, error, match):
    """A worker's exception is raised in the parent; a worker killed from outside ends the run with
    an error naming the output (multiprocessing.Pool waited forever for its item). Either way no
    target and no temporary folder are left."""
    from repack.formats import gptq
    layers = random_model(seed=4, bits=4, group_size=64, sym=True)
    src = write_gptq(tmp_path / "src", layers, "v1", sym=True)
    bad = sorted(layers)[1]
    real = gptq.GptqFormat.read

    def read(self, ckpt, det, module):
        if module == bad and parallel_write._job is not None:  # only in the write pass's workers
            _fail(how, ckpt, module)
        return real(self, ckpt, det, module)

    monkeypatch.setattr(gptq.GptqFormat, "read", read)
    with pytest.raises(error, match=match):
        convert(src, tmp_path / "out", "auto_awq", "gemm")
    assert not (tmp_path / "out").exists()
    assert not leftovers(tmp_path)


def test_pass_through_copies_without_copy_file_range(tmp_path, monkeypatch):
    """Where the file systems refuse copy_file_range, pass-through tensors go through the
    read/pwrite loop at their offsets (the forked workers inherit the refusal)."""
    import errno
    layers = random_model(seed=6, bits=4, group_size=64, sym=True)
    src = write_gptq(tmp_path / "src", layers, "v1", sym=True)
    monkeypatch.setenv("REPACK_WRITE_PROCESSES", "0")
    convert(src, tmp_path / "0" / "out", "auto_gptq", "v2", shard_size=40_000)

    def no_copy(*a, **k):
        raise OSError(errno.EXDEV, "cross-device")

    monkeypatch.setattr(os, "copy_file_range", no_copy)
    monkeypatch.setenv("REPACK_WRITE_PROCESSES", "1")
    convert(src, tmp_path / "1" / "out", "auto_gptq", "v2", shard_size=40_000)
    assert folder_bytes(tmp_path / "1" / "out") == folder_bytes(tmp_path / "0" / "out")


@pytest.mark.parametrize("variant, tp, bias", [("v6", 1, False), ("v6", 2, True), ("w4", 2, True), ("w4", 1, False)])
def test_turbomind_layers_in_processes_write_the_same_files(tmp_path, monkeypatch, variant, tp, bias):
    """TurboMind's fused slots (qkv, w13) and biases are gathered within a layer: forked processes
    take whole layers (write_groups), the files equal the threaded path's, every one of them."""
    import torch
    from tests.test_turbomind import HEAD_DIM, HIDDEN, PARTS, write_model
    g = torch.Generator().manual_seed(7)
    extra = {f"model.layers.{i}.{PARTS[p]}.bias": torch.randn(n, generator=g).to(torch.float16)
             for i in range(3) for p, n in (("q", HIDDEN), ("k", 4 * HEAD_DIM), ("v", 4 * HEAD_DIM))} if bias else None
    config = {"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"]} if bias else None
    src, _, _ = write_model(tmp_path / "src", layers=3, extra=extra, config=config)
    outs = {}
    for mode in ("0", "1"):
        monkeypatch.setenv("REPACK_WRITE_PROCESSES", mode)
        out = tmp_path / mode / "ws"
        convert(src, out, "turbomind", variant, tp=tp)
        outs[mode] = {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    assert len(outs["1"]) > 20
    assert outs["1"] == outs["0"]


def test_turbomind_groups_are_whole_layers(tmp_path, monkeypatch):
    from repack.formats.turbomind_writer import TurbomindWriter
    from tests.test_turbomind import write_model
    src, _, _ = write_model(tmp_path / "src", layers=3)
    seen = []
    real = TurbomindWriter.groups

    def groups(self, items):
        got = real(self, items)
        seen.append([[items[i][0] for i in grp] for grp in got])
        return got

    monkeypatch.setattr(TurbomindWriter, "groups", groups)
    convert(src, tmp_path / "ws", "turbomind", "v6")  # groups() is asked only on the process path
    (got,) = seen
    layers = [grp for grp in got if grp[0].startswith("model.layers.")]
    assert len(layers) == 3 and all(len({n.split(".")[2] for n in grp}) == 1 for grp in layers)
    assert all(len(grp) == 1 for grp in got if not grp[0].startswith("model.layers."))
    assert sum(len(grp) for grp in got) == len({n for grp in got for n in grp})
