"""Model folders: lazy, validated reading one tensor at a time, and atomic sharded writing.

Reading never loads more than the tensor asked for. Writing needs the full list of output tensors
(names, dtypes, shapes) up front, which convert knows from its plan: every shard's header is then
known before any data is written, so each tensor's bytes stream straight to their final offset and
peak memory is one tensor, not one shard.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import functools
import json
import math
import mmap
import os
import secrets
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from .dtypes import as_array, is_array
from .errors import InputError, OutputError
from .safetensors_header import DTYPES, TensorInfo, read_header, st_dtype

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"
QUANT_CONFIG_FILES = ("quantize_config.json", "quant_config.json", "quantization_config.json")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".h5", ".msgpack", ".index.json")
READ_CHUNK = 64 * 1024 * 1024
MAP_MIN_BYTES = 1 << 20  # tensors from this size up are memory-mapped (Checkpoint._mapped)
MADV_POPULATE_READ = 22  # Linux 5.14+ (Python 3.11's mmap module does not name it)
DEFAULT_SHARD_SIZE = 5 * 10**9


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except (ValueError, OSError):
        return False


def _populate(arr: np.ndarray) -> None:
    """Map every page of a file-mapped array in one call (MADV_POPULATE_READ, Linux 5.14+) instead of
    a fault per 64 KB as it is first read: a 7B conversion spent ~1.4 s of CPU in those faults.
    Through ctypes, which lets go of the GIL (mmap.madvise holds it while the kernel works)."""
    madvise = _libc_madvise()
    if madvise is None or not arr.nbytes:
        return
    start = arr.ctypes.data - arr.ctypes.data % mmap.PAGESIZE
    madvise(start, arr.ctypes.data + arr.nbytes - start, MADV_POPULATE_READ)  # an old kernel says EINVAL: no harm


@functools.lru_cache(maxsize=1)
def _libc_madvise():
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    fn.argtypes, fn.restype = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int], ctypes.c_int
    return fn


class Checkpoint:
    """A safetensors model folder, opened lazily; headers are validated on open."""

    def __init__(self, root: Path, config: dict, tensors: dict[str, TensorInfo], link_root: Path | None = None):
        self.root = root
        self.config = config
        self._tensors = tensors
        self.link_root = link_root or root
        self.populate = False  # map large tensors' pages at once (whole_reads)

    @classmethod
    def open(cls, path: str | os.PathLike, link_root: str | os.PathLike | None = None) -> "Checkpoint":
        """``link_root``: symlinks may point anywhere inside it (a Hugging Face cache repo folder,
        whose snapshot files link to its blobs); by default only inside the model folder."""
        root = Path(path)
        trust = Path(link_root) if link_root is not None else root
        if not root.exists():
            raise InputError(f"{root}: no such file or folder")
        if not root.is_dir():
            raise InputError(f"{root}: not a model folder (expected a folder with config.json and *.safetensors)")
        config = read_config(root / "config.json")
        tensors: dict[str, TensorInfo] = {}
        index = root / INDEX_NAME
        if index.exists():
            weight_map = _read_index(index, root, trust)
            headers = {f: read_header(root / f)[0] for f in sorted(set(weight_map.values()))}
            for name, file in weight_map.items():
                if name not in headers[file]:
                    raise InputError(f"{root / file}: tensor '{name}': listed in {INDEX_NAME} but not in the file")
                tensors[name] = headers[file][name]
            for file, found in headers.items():
                extra = sorted(set(found) - set(weight_map))
                if extra:
                    raise InputError(f"{root / file}: tensor '{extra[0]}': in the file but not in {INDEX_NAME}")
        else:
            files = [root / SINGLE_NAME] if (root / SINGLE_NAME).exists() else sorted(root.glob("*.safetensors"))
            if not files:
                raise InputError(f"{root}: no *.safetensors weights found")
            for file in files:
                if not _inside(file, trust):
                    raise InputError(f"{file}: symlink leaves the model folder")
                for name, info in read_header(file)[0].items():
                    if name in tensors:
                        raise InputError(f"{file}: tensor '{name}': also in {tensors[name].file.name}")
                    tensors[name] = info
        return cls(root, config, tensors, trust)

    @contextlib.contextmanager
    def whole_reads(self):
        """Within it, every large tensor read is about to be read whole: its pages are mapped at once."""
        before, self.populate = self.populate, True
        try:
            yield self
        finally:
            self.populate = before

    # -- tensors ------------------------------------------------------------------------------
    def names(self) -> list[str]:
        return sorted(self._tensors)

    def __contains__(self, name: str) -> bool:
        return name in self._tensors

    def info(self, name: str) -> TensorInfo:
        try:
            return self._tensors[name]
        except KeyError:
            raise InputError(f"{self.root}: tensor '{name}' not found") from None

    def get(self, name: str, rows: int | None = None) -> np.ndarray:
        """Read one tensor into memory (a private copy; the file is never written); ``rows`` reads
        only the first rows of its leading dimension."""
        info = self.info(name)
        if rows is not None and info.shape and rows < info.shape[0]:
            per_row = info.nbytes // info.shape[0] if info.shape[0] else 0
            info = TensorInfo(info.name, info.dtype, (rows, *info.shape[1:]), info.file, info.begin, info.begin + rows * per_row)
        if info.nbytes >= MAP_MIN_BYTES and info.begin % DTYPES[info.dtype][0] == 0:
            mapped = self._mapped(info, name, self.populate)
            if mapped is not None:
                return mapped
        buf = bytearray(info.nbytes)
        try:
            with open(info.file, "rb") as f:
                f.seek(info.begin)
                got = f.readinto(buf)
        except OSError as e:
            raise InputError(f"{info.file}: tensor '{name}': cannot read: {e.strerror or e}") from None
        if got != info.nbytes:
            raise InputError(f"{info.file}: tensor '{name}': truncated (read {got} of {info.nbytes} bytes)")
        if not buf:
            return np.empty(info.shape, dtype=info.np_dtype)
        return np.frombuffer(buf, dtype=info.np_dtype).reshape(info.shape)  # a bytearray: writeable

    @staticmethod
    def _mapped(info: TensorInfo, name: str, populate: bool = False) -> np.ndarray | None:
        """A large tensor as a copy-on-write map of the file: nothing is read until used (a plan
        that needs only a layer's zeros and scales never touches its codes), no copy is made
        when it is, and a write to the tensor stays private (the file is never written). The
        header check in ``open`` has proved the bytes lie inside the file. Elements need only
        their natural alignment: safetensors pads the header to 8 bytes, so a 16-byte rule sent
        every tensor of a file with an odd number of 8-byte header words through a copy."""
        try:
            arr = np.memmap(info.file, dtype=np.uint8, mode="c", offset=info.begin, shape=(info.nbytes,))
        except (OSError, ValueError):
            return None  # the read path below reports what is wrong
        if populate:
            _populate(arr)
        return arr.view(np.ndarray).view(info.np_dtype).reshape(info.shape)

    def raw_slice(self, name: str) -> "RawSlice":
        """Where the tensor's stored bytes lie, for a writer that copies them file to file."""
        info = self.info(name)
        return RawSlice(name, Path(info.file), info.begin, info.nbytes)

    def iter_raw(self, name: str) -> Iterator[bytes]:
        """The tensor's stored bytes, in chunks: pass-through copies are byte-identical by construction."""
        info = self.info(name)
        with open(info.file, "rb") as f:
            f.seek(info.begin)
            left = info.nbytes
            while left:
                chunk = f.read(min(left, READ_CHUNK))
                if not chunk:
                    raise InputError(f"{info.file}: tensor '{name}': truncated")
                left -= len(chunk)
                yield chunk

    # -- other files --------------------------------------------------------------------------
    def side_files(self) -> list[Path]:
        """Top-level files to carry over (tokenizer, generation config, chat template, code, docs):
        everything but weights, indexes, config.json and quantization configs; symlinks that leave
        the folder are skipped."""
        out = []
        for p in sorted(self.root.iterdir()):
            if p.name.startswith(".") or not p.is_file() or not _inside(p, self.link_root):
                continue
            if p.name == "config.json" or p.name in QUANT_CONFIG_FILES or p.name.endswith(WEIGHT_SUFFIXES):
                continue
            out.append(p)
        return out


MAX_JSON_BYTES = 64 * 2**20  # config.json / index of any real model is far smaller


def load_json(path: Path):
    """A model folder's JSON file, size-capped; any problem is one InputError naming the file."""
    try:
        size = path.stat().st_size
        if size > MAX_JSON_BYTES:
            raise InputError(f"{path}: {size} bytes is too large for a JSON file of a model folder (limit {MAX_JSON_BYTES})")
        return json.loads(path.read_text(encoding="utf-8"))
    except RecursionError:
        raise InputError(f"{path}: JSON nested too deeply") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: not valid JSON ({e})") from None


def read_config(path: Path) -> dict:
    if not path.exists():
        raise InputError(f"{path}: missing (every model folder needs a config.json)")
    config = load_json(path)
    if not isinstance(config, dict):
        raise InputError(f"{path}: expected a JSON object")
    qc = config.get("quantization_config")
    if qc is not None and not isinstance(qc, dict):
        raise InputError(f"{path}: quantization_config must be an object, got {type(qc).__name__}")
    return config


def _read_index(index: Path, root: Path, trust: Path) -> dict[str, str]:
    data = load_json(index)
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise InputError(f"{index}: missing or empty weight_map")
    for name, file in weight_map.items():
        if not isinstance(file, str) or not file or "/" in file or "\\" in file or file in (".", ".."):
            raise InputError(f"{index}: tensor '{name}': shard {file!r} is not a plain file name inside the folder")
        path = root / file
        if not path.is_file():
            raise InputError(f"{path}: missing shard (named for tensor '{name}' in {INDEX_NAME})")
        if not _inside(path, trust):
            raise InputError(f"{path}: shard is a symlink that leaves the model folder")
    return weight_map


# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TensorSpec:
    """An output tensor declared before any data is written."""

    name: str
    dtype: str  # safetensors dtype string, e.g. "I32", "F16"
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * DTYPES[self.dtype][0]

    @classmethod
    def of(cls, name: str, t) -> "TensorSpec":
        """The spec of an array or tensor (numpy or torch)."""
        return cls(name, st_dtype(t.dtype), tuple(t.shape))


def plan_shards(specs: list[TensorSpec], shard_size: int) -> list[list[TensorSpec]]:
    """Greedy, in order: a new shard starts when the next tensor would push it past shard_size."""
    shards: list[list[TensorSpec]] = [[]]
    size = 0
    for spec in specs:
        if shards[-1] and size + spec.nbytes > shard_size:
            shards.append([])
            size = 0
        shards[-1].append(spec)
        size += spec.nbytes
    return shards


def _header_bytes(shard: list[TensorSpec]) -> bytes:
    header: dict = {"__metadata__": {"format": "pt"}}
    offset = 0
    for s in shard:
        header[s.name] = {"dtype": s.dtype, "shape": list(s.shape), "data_offsets": [offset, offset + s.nbytes]}
        offset += s.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # safetensors pads the header to 8 bytes so data stays aligned
    return len(raw).to_bytes(8, "little") + raw


@dataclass(frozen=True)
class RawSlice:
    """A tensor's bytes in a source file: copied by the kernel (``copy_file_range``), never through Python."""

    name: str
    file: Path
    begin: int
    nbytes: int


WRITE_CHUNK = 256 * 1024


def write_chunked(fh, data) -> int:
    """Write a buffer in 256 KB calls. One call per 20 MB tensor made the kernel build the page cache
    out of large folios, whose allocation stalled in memory compaction: 3.9 GB took 5.8-6.2 s in
    32 MB writes, 2.8-3.5 s in 256 KB writes on the 2-core machine (cp: 1.9-2.5 s)."""
    view = memoryview(data).cast("B")
    for start in range(0, len(view), WRITE_CHUNK):
        fh.write(view[start: start + WRITE_CHUNK])
    return len(view)


def copy_range(src: RawSlice, start: int, nbytes: int, out: int, at: int | None = None) -> int:
    """Copy bytes ``start .. start + nbytes`` of a stored tensor to the file descriptor ``out``, file
    to file in the kernel (``copy_file_range``), with a read/write loop where the file system cannot:
    appended at ``out``'s position, or written at offset ``at`` (``out``'s position untouched)."""
    done = 0
    try:
        with open(src.file, "rb") as f:
            fd = f.fileno()
            try:
                while done < nbytes:
                    n = os.copy_file_range(fd, out, nbytes - done, src.begin + start + done,
                                           None if at is None else at + done)
                    if n == 0:
                        break
                    done += n
            except OSError as e:
                if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EPERM):
                    raise
                f.seek(src.begin + start + done)
                while done < nbytes:
                    chunk = f.read(min(nbytes - done, READ_CHUNK))
                    if not chunk:
                        break
                    if at is None:
                        os.write(out, chunk)
                    else:
                        pwrite_all(out, at + done, memoryview(chunk))
                    done += len(chunk)
    except OSError as e:
        raise InputError(f"{src.file}: tensor '{src.name}': cannot copy: {e.strerror or e}") from None
    if done != nbytes:
        raise InputError(f"{src.file}: tensor '{src.name}': truncated (copied {done} of {nbytes} bytes)")
    return done


# The write processes (repack/parallel_write.py) share one file (a GGUF, a single shard), and ext4
# holds the inode's lock for each buffered write while the other process spins on it: 128 KB calls
# took a 7B gptq -> gguf from 9.3-10.0 s to 8.6-8.8 s (settled A/B, three rounds; 32 KB: 10.4-10.9 s,
# 4 MB: 14.8 s); -> awq and -> marlin moved within their noise.
PWRITE_CHUNK = 128 * 1024


def pwrite_all(fd: int, offset: int, view: memoryview) -> int:
    """Write ``view`` at ``offset`` in PWRITE_CHUNK calls, retrying short writes."""
    pos = 0
    while pos < len(view):
        pos += os.pwrite(fd, view[pos: pos + PWRITE_CHUNK], offset + pos)
    return len(view)


def tensor_bytes(name: str, spec: TensorSpec, data) -> np.ndarray:
    """An array's bytes (uint8, flat; numpy or torch), after checking it against its declared spec."""
    got = TensorSpec.of(name, data)
    if got != spec:
        raise OutputError(f"tensor '{name}': declared {spec.dtype}{list(spec.shape)}, got {got.dtype}{list(got.shape)}")
    return np.ascontiguousarray(as_array(data)).reshape(-1).view(np.uint8)


class CheckpointWriter:
    """Writes a model folder into ``.<name>.repack-tmp-*`` beside ``target`` and renames it at the end.

    Use as a context manager; on any exception the temporary folder is removed and the target is
    untouched. ``write`` must be called once per declared tensor, in declaration order.
    """

    accepts_raw_slices = True  # write() takes a RawSlice for a pass-through tensor
    fills_in_any_order = True  # presize() + workers writing at the planned offsets (parallel_write.py)

    def __init__(self, target: str | os.PathLike, specs: list[TensorSpec], *, force: bool = False,
                 shard_size: int = DEFAULT_SHARD_SIZE):
        self.target = Path(target)
        self.force = force
        if shard_size <= 0:
            raise OutputError(f"shard size must be positive, got {shard_size}")
        check_target(self.target, force)
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise OutputError(f"{self.target}: tensor '{dup}' would be written twice")
        self.shards = plan_shards(specs, shard_size)
        n = len(self.shards)
        self.files = [SINGLE_NAME] if n == 1 else [f"model-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n)]
        self._order = [(i, s) for i, shard in enumerate(self.shards) for s in shard]
        self._pos = 0
        self._where: dict[str, int] | None = None  # name -> declared position (seek)
        self._fh = None
        self._shard = -1
        self.tmp: Path | None = None

    def __enter__(self) -> "CheckpointWriter":
        parent = self.target.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
            self._lock = _lock_target(self.target)
            self.removed_stale = remove_stale_temps(self.target)
            self.tmp = parent / f".{self.target.name}.repack-tmp-{os.getpid()}-{secrets.token_hex(4)}"
            self.tmp.mkdir()
        except OSError as e:
            self._unlock()
            raise OutputError(f"{self.target}: cannot prepare the output: {e.strerror or e}") from None
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._fh:
            try:
                self._fh.close()
            except OSError:
                pass
            self._fh = None
        if exc_type is not None and self.tmp is not None and self.tmp.exists():
            shutil.rmtree(self.tmp, ignore_errors=True)
        self._unlock()
        if exc_type is not None and issubclass(exc_type, OSError):
            # a full disk, a file-size limit, a vanished folder: one line naming the output
            raise OutputError(f"{self.target}: writing failed: {exc.strerror or exc}; nothing was written") from None

    def _unlock(self) -> None:
        lock = getattr(self, "_lock", None)
        if lock is not None:
            try:
                os.unlink(lock.name)
            except OSError:
                pass
            lock.close()  # closing the descriptor releases the lock
            self._lock = None

    def write(self, name: str, data) -> None:
        """Write the next declared tensor: an array (numpy or torch, checked against its spec), a
        RawSlice, or raw byte chunks."""
        shard, spec = self._expect(name)
        if shard != self._shard:
            if self._fh:
                self._fh.close()
            self._shard = shard
            self._fh = open(self.tmp / self.files[shard], "wb")
            self._fh.write(_header_bytes(self.shards[shard]))
        written = 0
        if isinstance(data, RawSlice):
            written = self._copy_slice(data)
        elif is_array(data):
            buf = tensor_bytes(name, spec, data)
            if spec.nbytes:
                written = write_chunked(self._fh, buf)
        else:
            for chunk in data:
                self._fh.write(chunk)
                written += len(chunk)
        if written != spec.nbytes:
            raise OutputError(f"tensor '{name}': wrote {written} bytes, declared {spec.nbytes}")
        self._pos += 1

    def _copy_slice(self, src: RawSlice) -> int:
        """Copy a pass-through tensor file to file in the kernel, as `cp` does (no user-space copy)."""
        self._fh.flush()
        return copy_range(src, 0, src.nbytes, self._fh.fileno())

    def _expect(self, name: str) -> tuple[int, TensorSpec]:
        """(shard, spec) of the next declared tensor, which must be ``name`` (writers of every
        format take their tensors in declaration order)."""
        if self._pos >= len(self._order):
            raise OutputError(f"tensor '{name}' was not declared")
        shard, spec = self._order[self._pos]
        if spec.name != name:
            raise OutputError(f"tensor '{name}' written out of order (expected '{spec.name}')")
        return shard, spec

    def presize(self) -> dict[str, tuple[Path, int, TensorSpec]]:
        """Create every shard at its final size with its header, for writers that fill tensors in any
        order (:mod:`repack.parallel_write`); returns each declared tensor's (file, offset, spec)."""
        if self._pos or self._fh is not None:
            raise OutputError(f"{self.target}: presize() after tensors were written in order")
        places = {}
        for i, shard in enumerate(self.shards):
            head = _header_bytes(shard)
            path = self.tmp / self.files[i]
            with open(path, "wb") as f:
                f.write(head)
                f.truncate(len(head) + sum(s.nbytes for s in shard))
            offset = len(head)
            for spec in shard:
                places[spec.name] = (path, offset, spec)
                offset += spec.nbytes
        self._shard = len(self.shards) - 1
        return places

    def seek(self, name: str) -> None:
        """Continue at declared tensor ``name``: a process writing one group of tensors
        (:func:`repack.parallel_write.write_groups`) starts in the middle of the declaration order."""
        if self._where is None:
            self._where = {spec.name: i for i, (_, spec) in enumerate(self._order)}
        pos = self._where.get(name)
        if pos is None:
            raise OutputError(f"tensor '{name}' was not declared")
        self._pos = pos

    def mark_written(self, names: set[str]) -> None:
        """After a :meth:`presize` fill: every declared tensor must be among ``names``."""
        missing = next((s.name for _, s in self._order if s.name not in names), None)
        if missing is not None:
            raise OutputError(f"tensor '{missing}' was declared but never written")
        self._pos = len(self._order)

    def _check_all_written(self) -> None:
        if self._pos != len(self._order):
            raise OutputError(f"tensor '{self._order[self._pos][1].name}' was declared but never written")

    def finish(self, config: dict, side_files: list[Path] = (), extra_json: dict[str, dict] | None = None) -> Path:
        """Write config, index and side files, then move the folder into place atomically."""
        self._check_all_written()
        if self._fh:
            self._fh.close()
            self._fh = None
        if self._shard == -1:  # no tensors at all: still a valid (empty) shard
            (self.tmp / self.files[0]).write_bytes(_header_bytes([]))
        if len(self.files) > 1:
            weight_map = {s.name: self.files[i] for i, s in self._order}
            total = sum(s.nbytes for _, s in self._order)
            _write_json(self.tmp / INDEX_NAME, {"metadata": {"total_size": total}, "weight_map": weight_map})
        _write_json(self.tmp / "config.json", config)
        for name, data in (extra_json or {}).items():
            _write_json(self.tmp / name, data)
        for src in side_files:
            shutil.copyfile(src, self.tmp / src.name)
        return self._commit()

    def _commit(self) -> Path:
        check_target(self.target, self.force)
        old = None
        if self.target.exists() or self.target.is_symlink():
            old = self.target.parent / f".{self.target.name}.repack-old-{secrets.token_hex(4)}"
            os.rename(self.target, old)
        try:
            os.rename(self.tmp, self.target)
        except OSError as e:
            if old is not None:
                os.rename(old, self.target)
            raise OutputError(f"{self.target}: cannot move the finished output into place: {e.strerror or e}") from None
        if old is not None:
            shutil.rmtree(old, ignore_errors=True) if old.is_dir() and not old.is_symlink() else old.unlink()
        return self.target


def _lock_target(target: Path):
    """Hold an exclusive lock on ``.<name>.repack-lock`` beside the target while writing it, so that
    two conversions into one target cannot both go ahead; the kernel drops it if we die."""
    import fcntl
    fh = open(target.parent / f".{target.name}.repack-lock", "a+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        raise OutputError(f"{target}: another repack process is writing this output") from None
    return fh


def remove_stale_temps(target: Path) -> list[Path]:
    """Temporary folders of earlier runs into this target whose process is gone (killed, crashed)."""
    removed = []
    for p in target.parent.glob(f".{target.name}.repack-tmp-*"):
        try:
            pid = int(p.name.rsplit("-", 2)[-2])
        except ValueError:
            continue
        if pid != os.getpid() and not _alive(pid):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check_target(target: Path, force: bool) -> None:
    if (target.exists() or target.is_symlink()) and not force:
        raise OutputError(f"{target}: already exists (use --force to replace it)")


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
