"""repack.direct_io: writes whose aligned middles bypass the page cache land byte for byte."""

import os

import numpy as np
import pytest

from repack import direct_io


@pytest.mark.parametrize("direct", [True, False])
@pytest.mark.parametrize("in_place", [False, True])
def test_pieces_at_any_offset_and_length_land_exactly(tmp_path, direct, in_place, monkeypatch):
    """Pieces of random bytes at unaligned and aligned offsets, shorter than a page, spanning many
    pages and longer than the staging buffer, written next to each other (neighbours share their
    boundary pages) into a sparse file, as the write processes fill a GGUF: the file is the
    expected bytes exactly, through a normal descriptor afterwards. ``in_place``: the bytes sit in
    out_buffer memory with their offset's page phase, written without the staging copy."""
    monkeypatch.setattr(direct_io, "STAGE", 64 * 1024)  # several staged pieces per write
    monkeypatch.setattr(direct_io, "DIRECT_MAX", 3 * 4096)  # several direct writes per in-place piece
    make_buffer, staged = direct_io.out_buffer, []  # pwrite_direct's own staging copies, counted

    def counting(nbytes, offset):
        staged.append(nbytes)
        return make_buffer(nbytes, offset)
    monkeypatch.setattr(direct_io, "out_buffer", counting)
    monkeypatch.setattr(direct_io, "DIRECT_MIN", 3 * 4096)
    monkeypatch.setenv("REPACK_DIRECT_IO", "1" if direct else "0")
    rng = np.random.default_rng(1)
    lengths = [1, 4095, 4096, 4097, 20000, 3 * 65536 + 123, 65536 * 2, 7, 100000]
    gaps = [5, 0, 17, 0, 4096, 0, 3, 0, 0]  # some pieces start where the last ended, mid-page
    offsets = (np.cumsum(gaps) + np.cumsum([0, *lengths[:-1]])).tolist()
    assert all(offsets[i] + lengths[i] <= offsets[i + 1] for i in range(len(lengths) - 1))  # disjoint
    total = int(offsets[-1] + lengths[-1] + 4096)
    path = tmp_path / "out.bin"
    with open(path, "wb") as f:
        f.truncate(total)
    expected = np.zeros(total, np.uint8)
    fd = os.open(path, os.O_WRONLY)
    dfd = direct_io.open_direct(path)
    if direct and dfd is None:
        pytest.skip("this file system refuses O_DIRECT (tmpfs?): the buffered case covers it")
    assert (dfd is None) == (not direct)
    for off, n in reversed(list(zip(offsets, lengths))):  # out of order, as two processes write
        data = rng.integers(0, 256, n, dtype=np.uint8)
        if in_place:
            buf = make_buffer(n, off)
            assert buf.ctypes.data % 4096 == off % 4096
            buf[:] = data
            data = buf
        expected[off: off + n] = data
        assert direct_io.pwrite_direct(fd, dfd, off, memoryview(data)) == n
        if in_place:
            direct_io.release(data)
    os.close(fd)
    if dfd is not None:
        os.close(dfd)
    assert np.array_equal(np.fromfile(path, np.uint8), expected)
    assert (not staged) == (in_place or not direct)  # in place: no staging copy ever made


def test_a_refused_direct_write_falls_back_to_the_page_cache(tmp_path, monkeypatch):
    """A device whose direct writes need more alignment answers EINVAL: those bytes go through the
    normal descriptor, and the file is still exact."""
    import errno
    real = os.pwrite
    calls = []

    def refuse(fd, data, offset):
        if fd == dfd:
            calls.append(offset)
            raise OSError(errno.EINVAL, "Invalid argument")
        return real(fd, data, offset)

    path = tmp_path / "out.bin"
    with open(path, "wb") as f:
        f.truncate(3 << 20)
    fd = os.open(path, os.O_WRONLY)
    dfd = os.open(path, os.O_WRONLY)  # stands in for the O_DIRECT descriptor
    monkeypatch.setattr(direct_io.os, "pwrite", refuse)
    data = np.random.default_rng(2).integers(0, 256, (2 << 20) + 123, dtype=np.uint8)
    assert direct_io.pwrite_direct(fd, dfd, 77, memoryview(data)) == data.size
    monkeypatch.undo()
    os.close(fd)
    os.close(dfd)
    assert calls  # the direct path was tried
    got = np.fromfile(path, np.uint8)
    assert np.array_equal(got[77: 77 + data.size], data) and not got[:77].any()



def test_other_direct_write_errors_reach_the_caller(tmp_path, monkeypatch):
    """ENOSPC (or EIO) from a direct write is not papered over by the buffered path."""
    import errno
    real = os.pwrite
    path = tmp_path / "out.bin"
    with open(path, "wb") as f:
        f.truncate(3 << 20)
    fd, dfd = os.open(path, os.O_WRONLY), os.open(path, os.O_WRONLY)

    def full(f, data, offset):
        if f == dfd:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(f, data, offset)

    monkeypatch.setattr(direct_io.os, "pwrite", full)
    try:
        with pytest.raises(OSError) as e:
            direct_io.pwrite_direct(fd, dfd, 0, memoryview(np.zeros(2 << 20, np.uint8)))
        assert e.value.errno == errno.ENOSPC
    finally:
        monkeypatch.undo()
        os.close(fd)
        os.close(dfd)


def test_out_buffers_are_reused_once_released_and_never_shared(tmp_path):
    """A released buffer's memory serves the next request that fits (no fresh, zeroed pages); a
    buffer still held is never handed out again; memory that is not the pool's is never taken in."""
    a = direct_io.out_buffer(100_000, 5)
    a[:] = 7
    b = direct_io.out_buffer(100_000, 5)
    assert not np.shares_memory(a, b)
    direct_io.release(a.reshape(1000, 100))  # a view of it gives the whole map back
    c = direct_io.out_buffer(90_000, 4096 + 300)
    assert c.ctypes.data % 4096 == 300 and c.ctypes.data // 4096 == a.ctypes.data // 4096  # a's map again
    assert not np.shares_memory(b, c)
    direct_io.release(np.zeros(10))  # not a buffer of the pool: ignored
    src = tmp_path / "source.bin"
    src.write_bytes(bytes(200_000))
    mapped = np.memmap(src, np.uint8, mode="r")  # a memory-mapped source tensor, as GGUF's pass-through ones
    direct_io.release(mapped)
    d = direct_io.out_buffer(150_000, 0)
    assert not np.shares_memory(d, mapped) and d.flags.writeable
    direct_io.release(b)
    direct_io.release(c)
