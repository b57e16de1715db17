"""Compute ahead of the consumer: a function mapped over items on worker threads, a few items in front.

Conversion has two kinds of work per module, CPU (unpack, repack: numpy and torch release the GIL)
and file writes (the kernel copies into the page cache, also without the GIL). Packing the next
modules while one is written uses every core; the window keeps at most ``depth`` items computed
or in progress, so the memory bound of one module at a time barely moves.
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def ahead_map(fn: Callable[[T], R], items: Iterable[T], workers: int = 2, depth: int = 3) -> Iterator[R]:
    """``fn`` over ``items`` on ``workers`` threads, results yielded in order, at most ``depth``
    computed or in progress ahead of the consumer (two modules unpacking at once use both cores
    of a small machine while the consumer writes). An exception is raised at its item; closing
    the iterator cancels what has not started and waits for what has."""
    it = iter(items)
    pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="repack-ahead")
    window: deque = deque()
    try:
        for x in it:
            window.append(pool.submit(fn, x))
            if len(window) >= depth:
                break
        while window:
            result = window.popleft().result()
            for x in it:
                window.append(pool.submit(fn, x))
                break
            yield result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@contextmanager
def torch_single_threaded():
    """torch's intra-op threads off while :func:`ahead_map` keeps the cores busy, restored after.
    With two pipeline threads each starting OpenMP regions, a small torch op waited on the other
    core: an int16 add over a [32, 11008] zeros tensor took 5 ms on 2 threads, 0.07 ms on one.
    Only when torch is loaded already: a conversion runs on numpy and never imports it."""
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
