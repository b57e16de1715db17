"""Large writes that bypass the page cache (O_DIRECT): the tensors the write processes put into a
GGUF file or safetensors shards, and TurboMind's per-tensor files.

Why: on the 2-core VM, filling the page cache costs more than the bytes suggest once an output passes
~4 GB — buffered pwrite of 3.9 GB took 2.1 s (1.6 s system time), of 5.1 GB 6.2-9.3 s (5.2-8.4 s),
while O_DIRECT wrote the same 5.1 GB in 2.4 s with 0.3 s of system time (benchmarks/NOTES-convert.md,
seventh session). A 7B GPTQ as GGUF Q5_0 is 5.1 GB; its copies into the page cache were ~40 % of
all CPU samples of the conversion (``copy_folio_from_iter_atomic``).

O_DIRECT needs the file offset, the length and the memory to be aligned (to the device's logical
block; 4 KB covers every common one): a tensor's first and last partial 4 KB go through the normal
descriptor, the aligned middle through the direct one, copied piece by piece into page-aligned
memory first where the caller's is not. The two kinds of write never touch the same 4 KB, and the kernel keeps the page cache
coherent with direct writes, so a reader sees every byte. Where the file system refuses O_DIRECT
(tmpfs) or ``REPACK_DIRECT_IO=0``, every byte goes through the normal descriptor; a direct write
refused with EINVAL (a device wanting more alignment) goes through it too.

A producer that knows where its bytes will land can skip the staging copy: :func:`out_buffer`
hands out memory whose first byte has the file offset's phase within a page, so the aligned
middle is written from it in place (GGUF's encoder writes its blocks there: the staging copy of
5 GB was ~1 CPU-s of a 7B conversion, and the copy-then-write rhythm kept the disk idle half the
time). The buffers are anonymous maps kept for reuse after :func:`release`: a fresh map's pages
are faulted in and zeroed by the kernel on first touch (``clear_page_erms``, 4 % of the samples).
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import threading

import numpy as np

from .checkpoint import pwrite_all

ALIGN = 4096
STAGE = 32 << 20  # bytes a staged copy (and its direct write) at most: 8 MB writes were ~15 % slower here
DIRECT_MIN = 1 << 20  # smaller writes (norms, biases, small files) stay buffered: no gain to have

DIRECT_MAX = 64 << 20  # bytes one direct write from a caller's aligned memory at most
POOL_KEEP = 6  # free maps a process keeps (a write process has at most ~4 items' buffers alive)

_free: list[mmap.mmap] = []  # released out_buffer maps, for reuse; per process (a forked child starts empty)
_pool_lock = threading.Lock()
_pool_pid = os.getpid()


def open_direct(path) -> int | None:
    """An O_DIRECT write descriptor of ``path``, or None where it cannot (or should not) be had."""
    if os.environ.get("REPACK_DIRECT_IO", "1") == "0" or not hasattr(os, "O_DIRECT"):
        return None
    try:
        return os.open(path, os.O_WRONLY | os.O_DIRECT)
    except OSError:
        return None


class _PoolMap(mmap.mmap):
    """An anonymous map made by :func:`out_buffer`: the only kind :func:`release` takes back (a
    memory-mapped source tensor handed to it must not become a buffer)."""


def out_buffer(nbytes: int, offset: int) -> np.ndarray:
    """uint8 [nbytes] whose address is ``offset`` modulo 4 KB (``offset``: where in its file the
    bytes go), so :func:`pwrite_direct` writes its aligned middle without a copy. Reused memory
    (not zeroed) where a released buffer is large enough; give it back with :func:`release` once
    written, or let it be garbage like any array."""
    global _pool_pid
    phase = offset % ALIGN
    need = phase + nbytes
    with _pool_lock:
        if _pool_pid != os.getpid():  # a forked child: the parent's free maps are its copies, not ours to share
            _free.clear()
            _pool_pid = os.getpid()
        fits = [m for m in _free if len(m) >= need]
        m = min(fits, key=len) if fits else None
        if m is not None:
            _free.remove(m)
    if m is None:
        m = _PoolMap(-1, max(ALIGN, -(-need // ALIGN) * ALIGN))  # anonymous maps are page-aligned
    return np.frombuffer(m, np.uint8, count=nbytes, offset=phase)


def release(arr) -> None:
    """Give an :func:`out_buffer` array (or a view of one) back for reuse after its bytes are
    written; anything else is ignored. The caller must hold no other view of it."""
    base = arr
    while base is not None and not isinstance(base, mmap.mmap):
        base = base.obj if isinstance(base, memoryview) else getattr(base, "base", None)
    if not isinstance(base, _PoolMap):
        return
    with _pool_lock:
        if _pool_pid == os.getpid() and all(m is not base for m in _free):
            _free.append(base)
            if len(_free) > POOL_KEEP:
                _free.remove(min(_free, key=len))


def address(view: memoryview) -> int:
    """Where ``view``'s first byte is in memory."""
    return np.frombuffer(view, np.uint8).ctypes.data if len(view) else 0


def pwrite_direct(fd: int, direct_fd: int | None, offset: int, view: memoryview,
                  lock=contextlib.nullcontext()) -> int:
    """Write ``view`` (bytes) at ``offset``: its 4 KB-aligned middle through ``direct_fd``, the rest
    (or everything, when ``direct_fd`` is None or the write is small) through ``fd``. Memory without
    the file offset's page phase is copied, STAGE bytes at a time, into :func:`out_buffer` memory
    first. ``lock`` is held around each write to the file but not the copies: the write processes
    share one (repack/parallel_write.py), so one copies while the other's direct write runs."""
    n = len(view)
    a0, a1 = -(-offset // ALIGN) * ALIGN, (offset + n) // ALIGN * ALIGN
    if direct_fd is None or a1 - a0 < DIRECT_MIN:
        with lock:
            return pwrite_all(fd, offset, view)
    with lock:
        pwrite_all(fd, offset, view[:a0 - offset])
    in_place = (address(view) + a0 - offset) % ALIGN == 0  # the caller's memory has the file's phase
    for pos in range(a0, a1, DIRECT_MAX if in_place else STAGE):
        piece = view[pos - offset: pos - offset + min(DIRECT_MAX if in_place else STAGE, a1 - pos)]
        if not in_place:
            staged = out_buffer(len(piece), pos)
            staged[:] = piece
            piece = memoryview(staged)
        with lock:
            _write_direct(fd, direct_fd, pos, piece)
        if not in_place:
            release(staged)
    with lock:
        pwrite_all(fd, a1, view[a1 - offset:])
    return n


def _write_direct(fd: int, direct_fd: int, pos: int, aligned: memoryview) -> int:
    """``aligned`` (page-aligned memory, a multiple of 4 KB) at ``pos`` through the direct
    descriptor; what it refuses or leaves short goes through ``fd``."""
    k = len(aligned)
    try:
        done = os.pwrite(direct_fd, aligned, pos)
    except OSError as e:
        if e.errno != errno.EINVAL:  # ENOSPC, EIO ...: the caller's error
            raise
        done = 0  # a device whose direct writes need more than 4 KB alignment: this piece buffered
    if done < k:  # a short direct write (rare): the rest of this piece the normal way
        pwrite_all(fd, pos + done, aligned[done:])
    return k
