"""A GGUF file seen as a checkpoint: tensors by Hugging Face name, a config.json built from metadata.

The same reading interface as :class:`repack.checkpoint.Checkpoint` (``names``, ``info``, ``get``,
``iter_raw``, ``side_files``, ``config``), so sources, convert, inspect and verify take a GGUF
file unchanged. The file is memory-mapped read-only through ``gguf.GGUFReader``; every read of
the header is bounds-checked first, because gguf-py trusts the lengths it finds (a flipped bit
in an array length would otherwise loop over empty reads for 2**60 iterations).

Tensors of the Llama family are renamed (``blk.N.attn_q.weight`` -> ``model.layers.N.self_attn.
q_proj.weight``) and q/k rows are put back in Hugging Face order (gguf.md §4). ``get`` gives any
tensor as floats (block types through gguf-py's dequantizers); block bytes for exact reading come
from :meth:`GgufCheckpoint.blocks`.
"""

from __future__ import annotations

import atexit
import importlib.util
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from .dtypes import BF16
from .errors import InputError, UnsupportedError
from .formats import gguf_arch as arch
from .safetensors_header import DTYPES

READ_CHUNK = 64 * 1024 * 1024
_NATIVE = {0: ("F32", np.float32), 1: ("F16", np.float16), 24: ("I8", np.int8), 25: ("I16", np.int16),
           26: ("I32", np.int32), 27: ("I64", np.int64), 28: ("F64", np.float64)}
BF16_ID = 30
NATIVE_TYPES = (*_NATIVE, BF16_ID)  # stored as plain numbers, not blocks


class _Bad(Exception):
    """A problem found while parsing; becomes an InputError naming the file."""


def _reader_class():
    import gguf

    class BoundedReader(gguf.GGUFReader):
        """gguf's reader with every read checked against the file size before it happens."""

        def __init__(self, path, mode="r"):
            self._size = os.path.getsize(path)
            super().__init__(path, mode)

        def _get(self, offset, dtype, count=1, override_order=None):
            count = int(count)
            size = _ITEMSIZE.get(dtype) or _ITEMSIZE.setdefault(dtype, np.dtype(dtype).itemsize)
            end = int(offset) + size * count
            if count < 0 or end > self._size:
                raise _Bad(f"truncated: a {count}-item read at byte {int(offset)} runs past the end ({len(self.data)} bytes)")
            return super()._get(offset, dtype, count, override_order)

        def _get_field_parts(self, orig_offs, raw_type):
            rt = int(raw_type)
            if rt == 9:  # ARRAY: item type u32, item count u64, items
                itype, alen = int(self._get(orig_offs, np.uint32)[0]), int(self._get(orig_offs + 4, np.uint64)[0])
                np_type = self.gguf_scalar_to_np.get(gguf.GGUFValueType(itype)) if itype in _VALUE_TYPES else None
                least = 8 if itype in (8, 9) else (np.dtype(np_type).itemsize if np_type else 1)
                if alen * least > len(self.data) - orig_offs:
                    raise _Bad(f"metadata array of {alen} items at byte {orig_offs} is larger than the file")
            elif rt not in _VALUE_TYPES:
                raise _Bad(f"unknown metadata value type {rt} at byte {orig_offs}")
            return super()._get_field_parts(orig_offs, raw_type)

        def _build_fields(self, offs, count):
            if int(count) * 13 > len(self.data):  # a key/value is at least 8 + 1 + 4 bytes
                raise _Bad(f"header claims {int(count)} metadata entries, more than the file can hold")
            return super()._build_fields(offs, count)

        def _build_tensor_info(self, offs, count):
            if int(count) * 24 > len(self.data):  # name length, n_dims, type, offset
                raise _Bad(f"header claims {int(count)} tensors, more than the file can hold")
            return super()._build_tensor_info(offs, count)

        def _build_tensors(self, start_offs, fields):
            for f in fields:
                _check_tensor(f, start_offs, len(self.data), self.alignment)
            return super()._build_tensors(start_offs, fields)

    return BoundedReader


_VALUE_TYPES = set(range(13))
_ITEMSIZE: dict = {}  # gguf.md §1: UINT8=0 .. FLOAT64=12


def _check_tensor(field, start: int, size: int, alignment: int) -> None:
    import gguf

    _, name_data, _, dims, raw_type, offset = field.parts
    name = bytes(name_data).decode("utf-8", "replace")
    t = int(raw_type[0])
    try:
        qtype = gguf.GGMLQuantizationType(t)
    except ValueError:
        raise _Bad(f"tensor '{name}': unknown ggml type {t}") from None
    block, type_size = gguf.GGML_QUANT_SIZES[qtype]
    ne = [int(d) for d in dims]
    if not ne or any(d <= 0 for d in ne) or math.prod(ne) > size * max(1, block):
        raise _Bad(f"tensor '{name}': impossible shape {ne}")
    if ne[0] % block:
        raise _Bad(f"tensor '{name}': row length {ne[0]} is not a multiple of the {qtype.name} block size {block}")
    nbytes = math.prod(ne) // block * type_size
    begin = start + int(offset[0])
    if int(offset[0]) % alignment:
        raise _Bad(f"tensor '{name}': data offset {int(offset[0])} is not aligned to {alignment}")
    if begin + nbytes > size:
        raise _Bad(f"tensor '{name}': data [{begin}, {begin + nbytes}) lies outside the file ({size} bytes)")


@dataclass(frozen=True)
class GgufTensorInfo:
    name: str  # Hugging Face name (or the GGUF name where no mapping exists)
    gguf_name: str
    dtype: str  # safetensors dtype of what get() returns
    shape: tuple[int, ...]  # numpy / PyTorch order
    file: Path
    index: int  # position in the reader's tensor list
    ggml_type: int
    heads: int | None  # q/k rows permuted over this many heads

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * DTYPES[self.dtype][0]


def find_gguf(path: Path) -> Path | None:
    """The GGUF file a path names: the file itself, or the one ``*.gguf`` inside a folder."""
    if path.is_file():
        return path if path.suffix == ".gguf" or _has_magic(path) else None
    if path.is_dir() and not any(path.glob("*.safetensors")):
        files = sorted(path.glob("*.gguf"))
        if len(files) > 1:
            raise InputError(f"{path}: holds {len(files)} .gguf files ({', '.join(f.name for f in files[:3])}); name one")
        if files and not files[0].resolve().is_relative_to(path.resolve()):
            raise InputError(f"{files[0]}: symlink that leaves the model folder")
        return files[0] if files else None
    return None


# Llama 3.x as Meta released it (3.1: factor 8, 3.2: factor 32): llama.cpp's converter turns these
# into the per-frequency divisors of `rope_freqs` and keeps no parameter in the metadata, so a
# divisor vector is matched against them (the factor is its largest entry)
LLAMA3_BANDS = {"low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}


def llama3_scaling_of(divisors: np.ndarray, cfg: dict) -> dict | None:
    """The Hugging Face ``rope_scaling`` whose frequencies ``rope_freqs`` divides out, or None."""
    heads, hidden = cfg.get("num_attention_heads"), cfg.get("hidden_size")
    if not heads or not hidden or divisors.size == 0 or not np.all(np.isfinite(divisors)):
        return None
    dim = 2 * divisors.size
    theta = float(cfg.get("rope_theta", 10000.0))
    factor = float(divisors.max())
    if dim > hidden // heads or factor <= 1.0:
        return None
    scaling = {"rope_type": "llama3", "factor": factor, **LLAMA3_BANDS}
    from .quantize.rope import divisors as scaled_divisors
    ratio = scaled_divisors({"rope_theta": theta, "rope_scaling": scaling}, dim)
    return scaling if np.allclose(ratio, divisors, rtol=1e-5, atol=0) else None


def _has_magic(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"GGUF"
    except OSError:
        return False


class GgufCheckpoint:
    """One GGUF file, opened lazily (memory-mapped) and validated on open."""

    def __init__(self, file: Path):
        self.root = file
        self.link_root = file.parent
        self.notes: list[str] = []
        if importlib.util.find_spec("gguf") is None:  # pragma: no cover - a runtime dependency
            raise InputError(f"{file}: reading GGUF needs the gguf package (pip install gguf)")
        try:
            self.reader = _reader_class()(file, "r")
        except _Bad as e:
            raise InputError(f"{file}: {e}") from None
        except (ValueError, IndexError, KeyError, OverflowError, TypeError, UnicodeDecodeError, OSError, MemoryError) as e:
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise InputError(f"{file}: not a readable GGUF file ({msg})") from None
        if self.reader.byte_order != "I":  # block fields are read as little-endian (gguf.md §2)
            raise InputError(f"{file}: a big-endian GGUF file; only little-endian files are supported")
        self.metadata = _metadata(self.reader, file)
        self.arch = self.metadata.get("general.architecture")
        if not isinstance(self.arch, str):
            raise InputError(f"{file}: general.architecture is missing or not a string")
        self.config = self._config()
        self._tensors: dict[str, GgufTensorInfo] = {}
        for i, t in enumerate(self.reader.tensors):
            self._add(i, t)
        self._side_dir: Path | None = None
        self.has_tokenizer = isinstance(self.metadata.get("tokenizer.ggml.model"), str)
        if not self.has_tokenizer:
            self.notes.append("tokenizer: the GGUF file has no tokenizer metadata")
        elif importlib.util.find_spec("transformers") is None:
            self.notes.append("tokenizer: transformers is not installed, so converting to a non-GGUF format makes no "
                              "Hugging Face tokenizer files from the GGUF metadata (pip install transformers)")

    # -- building ------------------------------------------------------------------------------
    def _config(self) -> dict:
        meta, a = self.metadata, self.arch
        names = {t.name for t in self.reader.tensors}
        if a != "llama":
            self.notes.append(f"architecture {a!r}: tensor names kept as in the GGUF file (only llama is mapped to "
                              "Hugging Face names)")
            return {"model_type": a, "gguf_architecture": a}
        cfg: dict = {"architectures": ["LlamaForCausalLM"], "model_type": "llama"}
        for hf_key, key in arch.CONFIG_KEYS.items():
            v = meta.get(key.format(a=a))
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise InputError(f"{self.root}: metadata {key.format(a=a)} must be a number, got {v!r}")
            cfg[hf_key] = float(str(np.float32(v))) if isinstance(v, float) else int(v)  # f32 1e-5 stays 1e-05
        if "num_attention_heads" not in cfg or cfg["num_attention_heads"] <= 0:
            raise InputError(f"{self.root}: metadata llama.attention.head_count is missing (needed to undo the q/k row "
                             "permutation)")
        cfg.setdefault("num_key_value_heads", cfg["num_attention_heads"])
        if cfg["num_key_value_heads"] <= 0:
            raise InputError(f"{self.root}: metadata llama.attention.head_count_kv must be positive")
        tokens = meta.get("tokenizer.ggml.tokens")
        if "vocab_size" not in cfg and isinstance(tokens, list):
            cfg["vocab_size"] = len(tokens)
        cfg["tie_word_embeddings"] = "output.weight" not in names
        if meta.get(f"{a}.rope.scaling.type") == "linear" and isinstance(meta.get(f"{a}.rope.scaling.factor"), float):
            cfg["rope_scaling"] = {"rope_type": "linear", "factor": float(str(np.float32(meta[f"{a}.rope.scaling.factor"])))}
        freqs = next((t for t in self.reader.tensors if t.name == "rope_freqs.weight"), None)
        if freqs is not None and "rope_scaling" not in cfg:
            scaling = llama3_scaling_of(np.asarray(freqs.data, np.float32).reshape(-1), cfg)
            if scaling is not None:
                cfg["rope_scaling"] = scaling
        for key in ("bos", "eos", "pad"):
            v = meta.get(f"tokenizer.ggml.{key}_token_id")
            if isinstance(v, int) and not isinstance(v, bool):
                cfg[f"{key}_token_id"] = v
        cfg["torch_dtype"] = "float16"
        return cfg

    def _add(self, index: int, t) -> None:
        shape = tuple(int(d) for d in reversed([int(x) for x in t.shape]))
        name = t.name
        heads = None
        if self.arch == "llama":
            name = arch.hf_name(t.name) or t.name
            if name == t.name:
                self.notes.append(f"tensor '{t.name}' has no Hugging Face name; kept as is"
                                  + (("" if "rope_scaling" in self.config else
                                      " (they match no Llama 3 rope scaling: config.json gets no rope_scaling)")
                                     if t.name.startswith("rope_freqs") else ""))
            heads = arch.permuted_heads(name, self.config)
            if heads is not None and shape[0] % (2 * heads):
                raise InputError(f"{self.root}: tensor '{t.name}': {shape[0]} rows do not split into {heads} heads")
        dtype = _NATIVE[int(t.tensor_type)][0] if int(t.tensor_type) in _NATIVE else (
            "BF16" if int(t.tensor_type) == BF16_ID else "F32")
        if name in self._tensors:
            raise InputError(f"{self.root}: tensor '{t.name}': maps to '{name}', which another tensor has")
        self._tensors[name] = GgufTensorInfo(name, t.name, dtype, shape, self.root, index, int(t.tensor_type), heads)

    # -- the Checkpoint interface ----------------------------------------------------------------
    def names(self) -> list[str]:
        return sorted(self._tensors)

    def __contains__(self, name: str) -> bool:
        return name in self._tensors

    def info(self, name: str) -> GgufTensorInfo:
        try:
            return self._tensors[name]
        except KeyError:
            raise InputError(f"{self.root}: tensor '{name}' not found") from None

    def blocks(self, name: str) -> np.ndarray:
        """The stored bytes of a block-quantized 2-D tensor, uint8 [rows, bytes per row], rows in HF order."""
        info = self.info(name)
        data = self.reader.tensors[info.index].data
        if data.dtype != np.uint8 or data.ndim != 2:
            raise InputError(f"{self.root}: tensor '{info.gguf_name}': expected 2-D block data, got {data.dtype} {data.shape}")
        return np.ascontiguousarray(data[arch.rows_to_hf(data.shape[0], info.heads)] if info.heads else data)

    def get(self, name: str, rows: int | None = None) -> np.ndarray:
        """One tensor in HF order (a private copy): native dtypes as stored, block types dequantized to float32."""
        import gguf
        info = self.info(name)
        t = self.reader.tensors[info.index]
        if info.ggml_type in _NATIVE:
            out = np.array(t.data).reshape(info.shape)
        elif info.ggml_type == BF16_ID:
            out = np.array(t.data).reshape(-1).view(BF16).reshape(info.shape)
        else:
            try:
                out = np.ascontiguousarray(gguf.dequantize(t.data, t.tensor_type)).reshape(info.shape)
            except NotImplementedError:
                raise UnsupportedError(f"{self.root}: tensor '{info.gguf_name}': gguf cannot dequantize type "
                                       f"{t.tensor_type.name}") from None
        if info.heads:
            out = out[arch.rows_to_hf(out.shape[0], info.heads)]
        return np.ascontiguousarray(out[:rows])

    def iter_raw(self, name: str) -> Iterator[bytes]:
        """The tensor as :meth:`get` returns it, as bytes (little-endian), in chunks."""
        buf = self.get(name).reshape(-1).view(np.uint8)
        for i in range(0, len(buf), READ_CHUNK):
            yield memoryview(buf[i:i + READ_CHUNK])

    def side_files(self) -> list[Path]:
        """A Hugging Face tokenizer folder built from the GGUF's tokenizer metadata, when transformers
        is installed (it knows how to turn tokenizer.ggml.* into a fast tokenizer)."""
        if self._side_dir is None:
            self._side_dir = Path(tempfile.mkdtemp(prefix="repack-gguf-tok-"))
            atexit.register(shutil.rmtree, self._side_dir, True)
            try:
                from .formats.gguf_tokenizer import hf_tokenizer_files
                if self.has_tokenizer:
                    hf_tokenizer_files(self.root, self._side_dir)
            except ImportError:
                pass
        return sorted(p for p in self._side_dir.iterdir() if p.is_file())


def _metadata(reader, file: Path) -> dict:
    out = {}
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        try:
            value = field.contents()
        except (ValueError, IndexError, TypeError, UnicodeDecodeError) as e:
            raise InputError(f"{file}: metadata {key!r} cannot be decoded ({e})") from None
        out[key] = value
    return out


def open_gguf(path: str | os.PathLike) -> GgufCheckpoint | None:
    """A GgufCheckpoint if ``path`` is a GGUF file or a folder holding one (and no safetensors)."""
    found = find_gguf(Path(path))
    return GgufCheckpoint(found) if found is not None else None
