"""Keep large freed buffers in the process instead of returning them to the kernel (glibc only).

Re-packing a layer makes a dozen numpy temporaries of a few MB each. glibc serves blocks above its
mmap threshold with a fresh ``mmap`` and unmaps them on free, so every temporary costs page
faults and zero-filling in the kernel: on a 7B conversion that was about a third of the run
(sys time 6.4 s of 13 s for gptq -> awq on the 2-core machine; 4.9 s of 9.7 s with this). The CLI
calls :func:`keep_freed_memory` once; a library user decides for their own process.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3


def keep_freed_memory(mmap_threshold: int = 1 << 30, trim_threshold: int = 1 << 34, top_pad: int = 1 << 28) -> bool:
    """Raise glibc's mmap and trim thresholds; True when applied (False off glibc)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    limit = 2**31 - 1
    ok = all(mallopt(param, min(value, limit)) == 1 for param, value in
             ((_M_MMAP_THRESHOLD, mmap_threshold), (_M_TRIM_THRESHOLD, trim_threshold), (_M_TOP_PAD, top_pad)))
    return ok
