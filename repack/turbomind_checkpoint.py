"""A TurboMind workspace seen as a checkpoint: float tensors by Hugging Face name, quantized linears
as canonical tensors rebuilt from every rank's files (un-split, un-fused, un-interleaved, rotary
reorder undone), and a config.json built from ``config.ini`` / ``config.yaml``.

The same reading interface as :class:`repack.checkpoint.Checkpoint` (``names``, ``info``, ``get``,
``iter_raw``, ``side_files``, ``config``), plus :meth:`read_module` for the format. Raw files have no
header, so every file's size is checked against the size the config implies before it is read; a
problem is one :class:`InputError` naming the file.
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import InputError
from .formats import turbomind_slots as sl
from .formats.turbomind_arch import packed_qkv_columns
from .formats.turbomind_config import CONFIG_FILE, Layout, parse
from .tensor import QuantTensor

WEIGHTS = Path("triton_models") / "weights"
TOKENIZER = Path("triton_models") / "tokenizer"
READ_CHUNK = 64 * 1024 * 1024


@dataclass(frozen=True)
class TmTensorInfo:
    name: str
    dtype: str
    shape: tuple[int, ...]
    file: Path

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * 2


def find_workspace(path: Path) -> Path | None:
    """The weights folder of a workspace: ``path/triton_models/weights`` or ``path`` itself."""
    for w in (path / WEIGHTS, path):
        if w.is_dir() and any((w / f).is_file() for f in CONFIG_FILE.values()) and not any(w.glob("*.safetensors")):
            return w
    return None


class TurbomindCheckpoint:
    def __init__(self, root: Path, weights: Path):
        self.root = root
        self.link_root = root
        self.weights = weights
        self.layout: Layout = parse(weights)
        self.config = self.layout.hf_config
        self.notes: list[str] = []
        if self.layout.group_size <= 0 or self.layout.dims.hidden % self.layout.group_size:
            raise InputError(f"{weights / CONFIG_FILE[self.layout.variant]}: group_size {self.layout.group_size} does "
                             f"not divide hidden size {self.layout.dims.hidden}")
        files = sum(1 for _ in weights.iterdir())
        for key, n in (("num_layer", self.layout.dims.layers), ("tensor_para_size / tp", self.layout.tp)):
            if n > files:  # every layer and rank has files of its own: a bigger count is a damaged config
                raise InputError(f"{weights / CONFIG_FILE[self.layout.variant]}: {key} {n}, but the folder holds only "
                                 f"{files} files")
        self._floats = self._float_tensors()
        self._cache: dict[tuple[int, str], dict] = {}  # the last two slots read, rank files decoded
        self._lock = threading.Lock()  # convert reads modules on two threads (repack/pipeline.py)

    # -- naming --------------------------------------------------------------------------------
    def _float_tensors(self) -> dict[str, TmTensorInfo]:
        a, d, L = self.layout.arch, self.layout.dims, self.layout
        out = {f"{a.embed}.weight": (d.vocab, d.hidden), f"{a.norm}.weight": (d.hidden,),
               f"{a.lm_head}.weight": (d.vocab, d.hidden)}
        for i in range(d.layers):
            out[a.module(i, f"{a.attn_norm}.weight")] = (d.hidden,)
            out[a.module(i, f"{a.ffn_norm}.weight")] = (d.hidden,)
            if L.attn_bias and not a.packed_qkv:
                out |= {a.module(i, f"{a.q}.bias"): (d.nq,), a.module(i, f"{a.k}.bias"): (d.nkv,),
                        a.module(i, f"{a.v}.bias"): (d.nkv,)}
                if self._o_bias(i) is not None:
                    out[a.module(i, f"{a.o}.bias")] = (d.hidden,)
        return {n: TmTensorInfo(n, "F16", s, self.weights) for n, s in out.items()}

    def _o_bias(self, i: int) -> np.ndarray | None:
        f = self.weights / sl.file_name(i, "wo", 0, "bias")
        if not f.is_file():
            return None
        b = self._raw(f, np.float16, (self.layout.dims.hidden,))
        return None if self.layout.variant == "v6" and not b.any() else b  # v6 writes zeros for a missing o bias

    def modules(self) -> list[str]:
        a = self.layout.arch
        parts = [a.q, a.o, a.gate, a.up, a.down] + ([] if a.packed_qkv else [a.k, a.v])
        return sorted(a.module(i, p) for i in range(self.layout.dims.layers) for p in parts)

    # -- raw files -------------------------------------------------------------------------------
    def _raw(self, path: Path, dtype, shape: tuple[int, ...]) -> np.ndarray:
        want = math.prod(shape) * np.dtype(dtype).itemsize
        try:
            size = path.stat().st_size
        except OSError:
            raise InputError(f"{path}: missing (the workspace config implies this file)") from None
        if size != want:
            raise InputError(f"{path}: {size} bytes, expected {want} ({np.dtype(dtype).name} {list(shape)})"
                             + (" - truncated" if size < want else ""))
        try:
            return np.fromfile(path, dtype=np.dtype(dtype).newbyteorder("<")).astype(dtype).reshape(shape)
        except OSError as e:
            raise InputError(f"{path}: cannot read: {e.strerror or e}") from None

    # -- quantized modules ---------------------------------------------------------------------
    def _slot_of(self, module: str) -> tuple[int, str, str]:
        a = self.layout.arch
        i = int(module[len(a.layers) + 1:].split(".", 1)[0])
        suffix = module.split(".", len(a.layers.split(".")) + 1)[-1]
        part = {a.q: "q", a.k: "k", a.v: "v", a.o: "o", a.gate: "gate", a.up: "up", a.down: "down"}[suffix]
        slot = next(s for s in sl.SLOTS[self.layout.variant] if part in sl.PARTS[s])
        return i, slot, part

    def _part_shapes(self) -> dict[str, tuple[int, int]]:
        d = self.layout.dims
        return {"q": (d.hidden, d.nq), "k": (d.hidden, d.nkv), "v": (d.hidden, d.nkv), "o": (d.nq, d.hidden),
                "gate": (d.hidden, d.inter), "up": (d.hidden, d.inter), "down": (d.inter, d.hidden)}

    def _slot(self, i: int, slot: str) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        with self._lock:
            return self._slot_locked(i, slot)

    def _slot_locked(self, i: int, slot: str) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        if (i, slot) in self._cache:
            return self._cache[(i, slot)]
        L, tp, gs = self.layout, self.layout.tp, self.layout.group_size
        K, M = sl.shape_of(slot, self._part_shapes(), tp)
        if K % gs or K % 32 or M % 8 or (L.variant == "w4" and M % 32):
            raise InputError(f"{self.weights / sl.file_name(i, slot, 0, 'qweight')}: per-rank shape [{K}, {M}] does not "
                             f"fit the {L.variant} layout with group size {gs} and tp={tp}")
        G = K // gs
        shapes, dtypes = sl.file_shapes(L.variant, K, M, G), sl.file_dtypes(L.variant)
        ranks = []
        for r in range(tp):
            files = {k: self._raw(self.weights / sl.file_name(i, slot, r, k), dtypes[k], shapes[k]) for k in shapes}
            ranks.append(sl.decode_rank(L.variant, files, K, M))
            self._check_zeros(ranks[-1][1], self.weights / sl.file_name(i, slot, r, "scales_zeros" if L.variant == "w4" else "zeros"))
        q, z, s = (sl.parts_from_ranks(slot, [x[j] for x in ranks], L.dims) for j in range(3))
        out = {p: (q[p], z[p], s[p]) for p in q}
        if len(self._cache) >= 2:  # plan order visits k, o, q, v: keep qkv across the o_proj read
            self._cache.pop(next(iter(self._cache)))
        self._cache[(i, slot)] = out
        return out

    @staticmethod
    def _check_zeros(z: np.ndarray, path: Path) -> None:
        if z.size and (not np.all(np.isfinite(z)) or np.any(z != np.round(z)) or z.min() < 0 or z.max() > 16):
            raise InputError(f"{path}: zero points must be integers 0..16, found {float(np.nanmin(z))}..{float(np.nanmax(z))}")

    def read_module(self, module: str) -> QuantTensor:
        a = self.layout.arch
        try:
            i, slot, part = self._slot_of(module)
        except (KeyError, ValueError, IndexError):
            raise InputError(f"{self.root}: '{module}' is not a quantized module of this workspace") from None
        got = self._slot(i, slot)
        if a.packed_qkv and slot == "qkv":  # InternLM2: put q, k, v back into the packed wqkv order
            cols = packed_qkv_columns(self.layout.dims)
            n = sum(len(c) for c in cols)
            q0, z0, s0 = got["q"]
            q = np.empty((q0.shape[0], n), np.uint8)
            z = np.empty((z0.shape[0], n), np.float32)
            s = np.empty((s0.shape[0], n), np.float16)
            for p, c in zip("qkv", cols):
                q[:, c], z[:, c], s[:, c] = got[p]
        else:
            q, z, s = got[part]
        z16 = np.ascontiguousarray(z).astype(np.int16)
        return QuantTensor.from_codes(np.ascontiguousarray(q), np.ascontiguousarray(s), z16, 4,
                                      self.layout.group_size, sym=bool((z16 == 8).all()))

    # -- the Checkpoint interface ----------------------------------------------------------------
    def names(self) -> list[str]:
        return sorted(self._floats)

    def __contains__(self, name: str) -> bool:
        return name in self._floats

    def info(self, name: str) -> TmTensorInfo:
        try:
            return self._floats[name]
        except KeyError:
            raise InputError(f"{self.root}: tensor '{name}' not found") from None

    def get(self, name: str, rows: int | None = None) -> np.ndarray:
        info = self.info(name)
        a, d, L = self.layout.arch, self.layout.dims, self.layout
        w, tp = self.weights, L.tp
        padded = d.vocab + (-d.vocab % tp)
        if name == f"{a.embed}.weight" or name == f"{a.lm_head}.weight":
            stem = "tok_embeddings" if name == f"{a.embed}.weight" else "output"
            if L.variant == "w4":
                x = self._raw(w / f"{stem}.weight", np.float16, (padded, d.hidden))
            elif stem == "tok_embeddings":
                x = np.concatenate([self._raw(w / f"{stem}.{r}.weight", np.float16, (padded, d.hidden // tp))
                                    for r in range(tp)], axis=1)
            else:
                x = np.concatenate([self._raw(w / f"{stem}.{r}.weight", np.float16, (padded // tp, d.hidden))
                                    for r in range(tp)], axis=0)
            x = x[: d.vocab]
        elif name == f"{a.norm}.weight":
            x = self._raw(w / "norm.weight", np.float16, info.shape)
        elif name.endswith(f".{a.attn_norm}.weight") or name.endswith(f".{a.ffn_norm}.weight"):
            i = int(name[len(a.layers) + 1:].split(".", 1)[0])
            kind = "attention_norm" if name.endswith(f".{a.attn_norm}.weight") else "ffn_norm"
            x = self._raw(w / f"layers.{i}.{kind}.weight", np.float16, info.shape)
        else:  # biases
            i, slot, part = self._slot_of(name[: -len(".bias")])
            if part == "o":
                x = self._o_bias(i)
            else:
                ranks = [self._raw(w / sl.file_name(i, "qkv", r, "bias"), np.float16, ((d.nq + 2 * d.nkv) // tp,))
                         for r in range(tp)]
                x = sl.parts_from_ranks("qkv", [b.reshape(1, -1) for b in ranks], d)[part][0]
        t = np.ascontiguousarray(x)
        return np.ascontiguousarray(t[:rows]) if rows is not None else t

    def iter_raw(self, name: str) -> Iterator[bytes]:
        buf = self.get(name).reshape(-1).view(np.uint8)
        for i in range(0, len(buf), READ_CHUNK):
            yield memoryview(buf[i:i + READ_CHUNK])

    def side_files(self) -> list[Path]:
        tok = self.root / TOKENIZER
        if not tok.is_dir():
            return []
        return sorted(p for p in tok.iterdir() if p.is_file() and not p.is_symlink())


def open_turbomind(path: str | os.PathLike) -> TurbomindCheckpoint | None:
    p = Path(path)
    weights = find_workspace(p) if p.is_dir() else None
    return TurbomindCheckpoint(p, weights) if weights is not None else None
