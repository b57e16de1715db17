"""Compute ahead of the consumer: a generator run in a background thread, a few items in front.

Conversion has two kinds of work per module, CPU (unpack, repack: numpy and torch release the GIL)
and file writes (the kernel copies into the page cache, also without the GIL). Running the packing
of module i+1 while module i is written uses the second core; the bounded queue keeps at most
``depth`` finished items in memory, so the memory bound of one module at a time barely moves.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
_DONE = object()


def ahead(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """Yield ``items`` in order, produced by a background thread up to ``depth`` items early.
    An exception in the producer is raised here, at the item it failed on; closing this iterator
    (the consumer stops early, or fails) stops the producer at its next item."""
    q: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((True, item)):
                    return
            put((True, _DONE))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, which re-raises it
            put((False, e))

    thread = threading.Thread(target=produce, name="repack-ahead", daemon=True)
    thread.start()
    try:
        while True:
            ok, item = q.get()
            if not ok:
                raise item
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()
        thread.join()
