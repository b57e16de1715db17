"""Writing a checkpoint (safetensors shards, a GGUF file) from forked worker processes, each tensor at
its planned offset.

numpy's (un)packing is hundreds of short calls per tensor, and in threads they serialize on the GIL:
two threads ran ``words_along_n`` no faster than one, two processes each at full speed
(benchmarks/NOTES-convert.md). The shard layout is fixed before any data exists (every tensor's
shard and offset follow from the declared specs; GGUF's from its header), so the workers need no
order: the files are created at their final size with their headers (the writer's ``presize``),
the parent hands each worker the next items, and a worker produces their tensors as the threaded
path does and ``pwrite``s them in place (pass-through tensors file to file with ``copy_file_range``)
from a thread of its own while its main thread produces the next item; the writes of the two
workers take turns on one lock. The parent only counts finished (written) items for the progress
bar; a worker's exception (an InputError naming the file and tensor, say) comes back and is raised
in the parent, where the writer removes its temporary folder as always.

TurboMind's slots are gathered across a layer's modules, so its writer cannot take tensors in
any order; :func:`write_groups` gives each worker whole layers instead, whose files are their own.
A worker killed from outside ends the run with one error line, and the workers die with a killed
parent (an orphan would keep the output's lock).

POSIX ``fork`` only: the items and the function that produces them are inherited by the workers
(the sources they read are file maps), nothing is pickled but item indices and tensor names.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import queue
import signal
import sys
import threading
import time
from multiprocessing.connection import wait
from typing import Callable, Iterator

import numpy as np

from .checkpoint import RawSlice, TensorSpec, copy_range, pwrite_all, tensor_bytes
from .direct_io import open_direct, pwrite_direct, release
from .dtypes import is_array
from .errors import OutputError

WORKERS = 2
AHEAD = 3  # items queued at a worker: one being written, one waiting for that, one being produced

_job: tuple | None = None  # what the tasks need, inherited by the forked workers (_on_workers)
_write_lock = None  # one write at a time, across the workers (_Writes)
_fds: dict = {}


def available(workers: int = WORKERS) -> bool:
    """Whether forked workers can write here (POSIX fork, more than one core and worker)."""
    if workers < 2 or (os.cpu_count() or 1) < 2 or sys.platform == "win32":
        return False
    torch = sys.modules.get("torch")  # loaded only by quantize/eval: a conversion never imports it
    if torch is not None and torch.cuda.is_initialized():  # a forked child cannot use the parent's CUDA context
        return False
    return "fork" in mp.get_all_start_methods() and os.environ.get("REPACK_WRITE_PROCESSES", "1") != "0"


def write_all(writer, items: list, produce: Callable, workers: int = WORKERS) -> Iterator[None]:
    """Write every tensor that ``produce(item)`` returns ([(name, tensor | RawSlice | byte chunks)])
    for all ``items`` into ``writer``'s files; yields once per finished item. The writer (inside its
    ``with`` block, nothing written yet) has ``fills_in_any_order``, ``presize`` and ``mark_written``
    and may have ``encode`` (its container's bytes of a tensor); the caller calls ``finish`` after."""
    places = writer.presize()
    written: set[str] = set()
    job = (items, produce, places, getattr(writer, "encode", None))
    for names in _on_workers(writer, job, _write_item, len(items), workers):
        for name in names:
            if name in written:
                raise OutputError(f"tensor '{name}' would be written twice")
            written.add(name)
        yield
    writer.mark_written(written)


def write_groups(writer, items: list, produce: Callable, workers: int = WORKERS) -> Iterator[None]:
    """For writers whose tensors end up in files of their own, gathered across the modules of a
    group (TurboMind's fused qkv and w13 slots, per layer): each worker takes the next group of
    ``writer.groups(items)`` and passes its tensors to ``writer.write`` in declaration order, as the
    threaded path does, so whole files are written by one process and no two write one file. Yields
    once per item; the caller calls ``finish`` after."""
    groups = writer.groups(items)
    written: set[str] = set()
    for names, count in _on_workers(writer, (items, produce, writer, groups), _write_group, len(groups), workers):
        written.update(names)
        for _ in range(count):
            yield
    writer.mark_written(written)


def _on_workers(writer, job: tuple, task: Callable, count: int, workers: int) -> Iterator:
    """``task(0) .. task(count - 1)`` on forked workers that inherit ``job``; each task returns
    (its writes, a callable or None; its result), the writes run on the worker's write thread while
    its main thread starts the next task, and the result comes here, in the order the items finish,
    once they are done. A worker's exception is raised here, in the parent; a worker that dies (the
    OOM killer, a signal) ends the run with one error line. On any error (or Ctrl-C) the other
    workers are killed and reaped before the caller removes the temporary folder."""
    global _job, _write_lock
    ctx = mp.get_context("fork")
    _job, _write_lock = job, ctx.Lock()
    procs: dict = {}  # connection -> process
    sent: dict = {}  # connection -> items sent and not yet reported
    todo, finishing = iter(range(count)), set()

    def feed(conn, most: int = AHEAD) -> None:  # up to ``most`` items queued at it; None: finish
        while conn not in finishing and sent[conn] < most:
            index = next(todo, None)
            if index is None:
                finishing.add(conn)
            else:
                sent[conn] += 1
            try:
                conn.send(index)
            except OSError:  # it died: reading from it says so
                return

    ok = False
    try:
        for _ in range(min(workers, count)):
            here, there = ctx.Pipe()
            p = ctx.Process(target=_worker, args=(there, task, os.getpid()), daemon=True)
            p.start()
            there.close()  # the worker's end is its own: it reads as ended once the worker is gone
            procs[here], sent[here] = p, 0
        for most in range(1, AHEAD + 1):  # in turns: the first items (the largest tensors) to different workers
            for conn in procs:
                feed(conn, most)
        reported = 0
        while reported < count:
            for conn in wait(list(procs)):
                try:
                    kind, value = conn.recv()
                except (EOFError, OSError):  # it ended (killed with bytes unread: ECONNRESET)
                    procs.pop(conn).join()
                    conn.close()
                    if sent[conn]:
                        raise OutputError(f"{writer.target}: a write process was killed before it finished "
                                          f"(out of memory? REPACK_WRITE_PROCESSES=0 writes in one process)") from None
                    continue
                if kind == "error":
                    raise value
                reported += 1
                sent[conn] -= 1
                feed(conn)
                yield value
        ok = True
    finally:
        for conn, p in procs.items():
            if not ok:
                p.kill()
            p.join()
            conn.close()
        _job = _write_lock = None


def _worker(conn, task: Callable, parent: int) -> None:
    """A write process: runs the items the parent sends, their writes on a thread of its own."""
    _worker_init(parent)
    send_lock = threading.Lock()

    def send(kind: str, value) -> None:
        with send_lock:
            try:
                conn.send((kind, value))
            except Exception:  # an exception that does not pickle: its message
                if kind != "error":
                    raise
                conn.send((kind, OutputError(f"{type(value).__name__}: {value}")))

    writes = _Writes(send)
    try:
        while (index := conn.recv()) is not None:
            writes.put(*task(index))
        writes.close()
    except BaseException as e:  # noqa: BLE001 -- the parent raises it
        send("error", e)
        sys.exit(1)


class _Writes:
    """A worker's write thread: each item's writes in turn, then the item's result to the parent,
    while the main thread produces the next item. Two processes pwrite-ing one file take turns on
    its inode lock (ext4), and the one waiting spun in the kernel (perf: rwsem_spin_on_owner
    ~10 %); now a write thread waits, on ``_write_lock``, asleep, and its process encodes."""

    def __init__(self, send: Callable):
        self.send = send
        self.queue: queue.Queue = queue.Queue(maxsize=1)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def put(self, write: Callable | None, result) -> None:
        self.queue.put((write, result))

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()

    def _run(self) -> None:
        while (job := self.queue.get()) is not None:
            write, result = job
            try:
                if write is not None:
                    write()  # its disk writes under _write_lock
            except BaseException as e:  # noqa: BLE001
                self.send("error", e)  # the parent kills this process
                return
            self.send("done", result)


def _write_group(index: int) -> tuple[None, tuple[list[str], int]]:
    items, produce, writer, groups = _job
    names = []
    for i in groups[index]:
        for name, data in produce(items[i]):
            writer.seek(name)  # this process writes the group's tensors only, in their declared order
            writer.write(name, data)
            names.append(name)
    writer.check_groups_complete()
    return None, (names, len(groups[index]))


def _worker_init(parent: int) -> None:
    _die_with(parent)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)  # two processes already use both cores
    # Ctrl-C reaches the whole process group: the parent turns it into "interrupted" and stops the
    # workers; a worker would only add a traceback of its own
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _fds.clear()


def _die_with(parent: int) -> None:
    """End this worker when the parent dies (SIGKILL, the OOM killer): an orphan would keep the
    output's lock (its descriptor is inherited) and the next run would be refused. A worker waiting
    on its pipe is not told (the other worker holds a copy of the parent's end), so on Linux the kernel is asked to (PR_SET_PDEATHSIG);
    elsewhere a thread checks every 0.2 s."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
        else:
            if os.getppid() != parent:  # the parent died before the request took hold
                os._exit(1)
            return

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.2)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _write_item(index: int) -> tuple[Callable, list[str]]:
    """Produces (and encodes) an item's tensors; returns their writes and names."""
    items, produce, places, encode = _job
    names, writes, buffers = [], [], []
    for name, data in produce(items[index]):
        place = places.get(name)
        if place is None:
            raise OutputError(f"tensor '{name}' was not declared")
        path, offset, spec = place
        names.append(name)
        if encode is not None:  # the writer turns the data into its container's bytes (GGUF)
            arr = encode(name, data, spec)
            if arr is not None:  # the whole file's bytes: its aligned middles bypass the page cache
                writes.append((pwrite_direct, _fd(path), _fd(path, direct=True), offset,
                               memoryview(arr.reshape(-1).view(np.uint8)), _write_lock))
                buffers.append(arr)
            continue
        writes.append((_put, _fd(path), _fd(path, direct=True), offset, name, spec, data))

    def write() -> None:
        for fn, *args in writes:
            fn(*args)
        for arr in buffers:  # an encoder's direct_io.out_buffer, written: free for the next item's
            release(arr)
    return write, names


def _fd(path, direct: bool = False) -> int | None:
    """This process's write descriptor of ``path`` (``direct``: its O_DIRECT one, None if refused)."""
    key = (path, direct)
    if key not in _fds:
        _fds[key] = open_direct(path) if direct else os.open(path, os.O_WRONLY)
    return _fds[key]


def _put(fd: int, direct_fd: int | None, offset: int, name: str, spec: TensorSpec, data) -> None:
    if isinstance(data, RawSlice):
        with _write_lock:
            done = copy_range(data, 0, data.nbytes, fd, at=offset)
    elif is_array(data):
        done = pwrite_direct(fd, direct_fd, offset, memoryview(tensor_bytes(name, spec, data)), _write_lock)
    else:
        done = 0
        with _write_lock:
            for chunk in data:
                done += pwrite_all(fd, offset + done, memoryview(chunk).cast("B"))
    if done != spec.nbytes:
        raise OutputError(f"tensor '{name}': wrote {done} bytes, declared {spec.nbytes}")
