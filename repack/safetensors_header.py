"""A strict reader of safetensors headers, written for files we do not trust.

A file is ``u64 little-endian header length n`` + ``n`` bytes of JSON + the data. Each JSON entry
is ``{"dtype", "shape", "data_offsets": [begin, end]}`` relative to the start of the data. We check
what safetensors' own ``src/tensor.rs`` validation checks, with our own messages naming the file
and tensor: a capped header size, known dtypes, shapes whose byte size equals the offsets, and
offsets that tile the data exactly (no gaps, overlaps or trailing bytes).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

from .dtypes import NP_TO_ST, ST_DTYPES, as_dtype
from .errors import InputError

MAX_HEADER_BYTES = 100 * 1024 * 1024  # safetensors' own cap

DTYPES: dict[str, tuple[int, object]] = {name: (dt.itemsize, dt) for name, dt in ST_DTYPES.items()}  # (bytes, numpy dtype)


def st_dtype(dtype) -> str:
    """The safetensors dtype string of a numpy or torch dtype."""
    return NP_TO_ST[as_dtype(dtype)]


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple[int, ...]
    file: Path
    begin: int  # absolute byte offset in the file
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.begin

    @property
    def np_dtype(self):
        return ST_DTYPES[self.dtype]


def read_header(path: Path) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    """Parse and validate the header of ``path``; returns (tensors by name, __metadata__)."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise InputError(f"{path}: not a safetensors file (only {size} bytes)")
            n = int.from_bytes(head, "little")
            if n > MAX_HEADER_BYTES or n > size - 8:
                raise InputError(f"{path}: corrupted safetensors header: declares {n} header bytes, file has {size}")
            raw = f.read(n)
    except OSError as e:
        raise InputError(f"{path}: cannot read: {e.strerror or e}") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: corrupted safetensors header: invalid JSON ({e})") from None
    except RecursionError:
        raise InputError(f"{path}: corrupted safetensors header: JSON nested too deeply") from None
    if not isinstance(header, dict):
        raise InputError(f"{path}: corrupted safetensors header: not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        raise InputError(f"{path}: corrupted safetensors header: __metadata__ is not an object")
    data_start = 8 + n
    data_len = size - data_start
    tensors: dict[str, TensorInfo] = {}
    for name, entry in header.items():
        tensors[name] = _entry(path, name, entry, data_start)
    spans = sorted((t.begin, t.end, t.name) for t in tensors.values())
    cursor = data_start
    for begin, end, name in spans:
        if begin != cursor:
            raise InputError(f"{path}: tensor '{name}': data offsets leave a gap or overlap at byte {begin - data_start}")
        cursor = end
    if cursor != size:
        if cursor > size:
            raise InputError(f"{path}: truncated: tensors need {cursor - data_start} data bytes, file has {data_len}")
        raise InputError(f"{path}: corrupted: {size - cursor} trailing bytes after the last tensor")
    return tensors, metadata


def _entry(path: Path, name: str, entry, data_start: int) -> TensorInfo:
    def bad(problem: str) -> InputError:
        return InputError(f"{path}: tensor '{name}': {problem}")

    if not isinstance(entry, dict):
        raise bad("header entry is not an object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise bad(f"unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise bad(f"invalid shape {shape!r}")
    if (not isinstance(offsets, list) or len(offsets) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
            or not 0 <= offsets[0] <= offsets[1]):
        raise bad(f"invalid data_offsets {offsets!r}")
    expected = math.prod(shape) * DTYPES[dtype][0]
    if offsets[1] - offsets[0] != expected:
        raise bad(f"shape {shape} {dtype} needs {expected} bytes, data_offsets span {offsets[1] - offsets[0]}")
    return TensorInfo(name, dtype, tuple(shape), path, data_start + offsets[0], data_start + offsets[1])
