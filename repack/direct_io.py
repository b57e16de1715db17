"""Large writes that bypass the page cache (O_DIRECT): the tensors the write processes put into a
GGUF file or safetensors shards, and TurboMind's per-tensor files.

Why: on the 2-core VM, filling the page cache costs more than the bytes suggest once an output passes
~4 GB — buffered pwrite of 3.9 GB took 2.1 s (1.6 s system time), of 5.1 GB 6.2-9.3 s (5.2-8.4 s),
while O_DIRECT wrote the same 5.1 GB in 2.4 s with 0.3 s of system time (benchmarks/NOTES-convert.md,
seventh session). A 7B GPTQ as GGUF Q5_0 is 5.1 GB; its copies into the page cache were ~40 % of
all CPU samples of the conversion (``copy_folio_from_iter_atomic``).

O_DIRECT needs the file offset, the length and the memory to be aligned (to the device's logical
block; 4 KB covers every common one): a tensor's first and last partial 4 KB go through the normal
descriptor, the aligned middle through the direct one, copied in turn into a page-aligned staging
buffer. The two kinds of write never touch the same 4 KB, and the kernel keeps the page cache
coherent with direct writes, so a reader sees every byte. Where the file system refuses O_DIRECT
(tmpfs) or ``REPACK_DIRECT_IO=0``, every byte goes through the normal descriptor; a direct write
refused with EINVAL (a device wanting more alignment) goes through it too.
"""

from __future__ import annotations

import errno
import mmap
import os

from .checkpoint import pwrite_all

ALIGN = 4096
STAGE = 8 << 20  # bytes a direct write at most (the staging buffer)
DIRECT_MIN = 1 << 20  # smaller writes (norms, biases, small files) stay buffered: no gain to have

_stage: mmap.mmap | None = None  # per process: one thread of a process writes (its write thread, or TurboMind's)


def open_direct(path) -> int | None:
    """An O_DIRECT write descriptor of ``path``, or None where it cannot (or should not) be had."""
    if os.environ.get("REPACK_DIRECT_IO", "1") == "0" or not hasattr(os, "O_DIRECT"):
        return None
    try:
        return os.open(path, os.O_WRONLY | os.O_DIRECT)
    except OSError:
        return None


def pwrite_direct(fd: int, direct_fd: int | None, offset: int, view: memoryview) -> int:
    """Write ``view`` (bytes) at ``offset``: its 4 KB-aligned middle through ``direct_fd``, the rest
    (or everything, when ``direct_fd`` is None or the write is small) through ``fd``."""
    n = len(view)
    a0, a1 = -(-offset // ALIGN) * ALIGN, (offset + n) // ALIGN * ALIGN
    if direct_fd is None or a1 - a0 < DIRECT_MIN:
        return pwrite_all(fd, offset, view)
    pwrite_all(fd, offset, view[:a0 - offset])
    global _stage
    if _stage is None or len(_stage) != STAGE:
        _stage = mmap.mmap(-1, STAGE)  # anonymous maps are page-aligned
    stage = memoryview(_stage)
    pos = a0
    while pos < a1:
        k = min(STAGE, a1 - pos)
        stage[:k] = view[pos - offset: pos - offset + k]
        try:
            done = os.pwrite(direct_fd, stage[:k], pos)
        except OSError as e:
            if e.errno != errno.EINVAL:  # ENOSPC, EIO ...: the caller's error
                raise
            done = 0  # a device whose direct writes need more than 4 KB alignment: this piece buffered
        if done < k:  # a short direct write (rare): the rest of this piece the normal way
            pwrite_all(fd, pos + done, view[pos + done - offset: pos + k - offset])
        pos += k
    pwrite_all(fd, a1, view[a1 - offset:])
    return n
