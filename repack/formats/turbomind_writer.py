"""Writing a TurboMind workspace: ``OUT/triton_models/weights/`` raw little-endian files per tensor and
rank plus ``config.ini`` (``w4``) or ``config.yaml`` (``v6``); tokenizer files in
``OUT/triton_models/tokenizer/``.

The output folder is made like every repack output (:class:`CheckpointWriter`: lock, temp folder,
rename). Modules arrive one at a time in plan order; the members of a fused slot (q/k/v, gate/up)
of one layer are held until the slot is complete, then every rank's files are written and the
members dropped, so memory is one fused slot, not the model. Every divisibility rule is checked in
the constructor, from the declared shapes, before anything is written.
"""

from __future__ import annotations

import os
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ..dtypes import BF16, as_array, is_array

from ..checkpoint import CheckpointWriter, RawSlice, copy_range, write_chunked
from ..direct_io import DIRECT_MIN, open_direct, pwrite_direct
from ..packing import words_along_n
from ..errors import InputError, OutputError, UnsupportedError
from ..safetensors_header import DTYPES
from ..tensor import QuantTensor
from . import turbomind_layout as lay
from . import turbomind_slots as sl
from .turbomind_arch import DROPPED, Arch, Dims, arch_for, dims_of, packed_qkv_columns, split_layer
from .turbomind_config import CONFIG_FILE, render

WEIGHTS = Path("triton_models") / "weights"
TOKENIZER = Path("triton_models") / "tokenizer"
GROUP_SIZE = 128  # the only group size TurboMind's int4 kernels are built for (kernels.md §2.1, §2.2)
QUANT_KINDS = ("qweight", "scales", "zeros")  # what TurbomindFormat.pack emits per module


@dataclass(frozen=True)
class Role:
    """Where one declared tensor goes: a quantized module's piece, or a float tensor."""

    kind: str  # "module" | "embed" | "norm" | "lm_head" | "attn_norm" | "ffn_norm" | "bias" | "drop"
    layer: int = -1
    part: str = ""  # q/k/v/o/gate/up/down (for a packed qkv module: "qkv")


def plan_roles(specs, arch: Arch, d: Dims, where: str) -> dict[str, Role]:
    """Every declared tensor's role; a tensor the workspace has no place for is refused by name."""
    suffix_part = {arch.o: "o", arch.gate: "gate", arch.up: "up", arch.down: "down"}
    suffix_part |= {arch.q: "qkv"} if arch.packed_qkv else {arch.q: "q", arch.k: "k", arch.v: "v"}
    roles: dict[str, Role] = {}
    for s in specs:
        name = s.name
        if name.endswith(DROPPED):
            roles[name] = Role("drop")
            continue
        top = {f"{arch.embed}.weight": "embed", f"{arch.norm}.weight": "norm", f"{arch.lm_head}.weight": "lm_head"}
        if name in top:
            roles[name] = Role(top[name])
            continue
        hit = split_layer(name, arch)
        if hit is not None:
            i, rest = hit
            base, _, kind = rest.rpartition(".")
            if i >= d.layers:
                raise UnsupportedError(f"{where}: tensor '{name}': layer {i} but the config has {d.layers} layers")
            if base in suffix_part and kind in QUANT_KINDS:
                roles[name] = Role("module", i, suffix_part[base])
                continue
            if base in (arch.attn_norm, arch.ffn_norm) and kind == "weight":
                roles[name] = Role("attn_norm" if base == arch.attn_norm else "ffn_norm", i)
                continue
            if base in suffix_part and kind == "bias" and suffix_part[base] in ("q", "k", "v", "o"):
                roles[name] = Role("bias", i, suffix_part[base])
                continue
            if base in suffix_part and kind == "weight":
                raise UnsupportedError(f"{where}: tensor '{name}': an int4 TurboMind workspace needs every decoder "
                                       "linear quantized; this one is float")
        raise UnsupportedError(f"{where}: tensor '{name}' has no place in a TurboMind workspace ({arch.architecture})")
    return roles


def check_dims(specs, roles: dict[str, Role], arch: Arch, d: Dims, variant: str, tp: int, where: str) -> None:
    """Refuse, naming the tensor, every shape the workspace (or its ``tp`` split) cannot hold."""
    shapes = {s.name[: -len(".qweight")]: s.shape for s in specs if roles[s.name].kind == "module"
              and s.name.endswith(".qweight")}
    if d.hidden != d.heads * d.head_dim:
        raise UnsupportedError(f"{where}: hidden_size {d.hidden} != heads x head_dim; TurboMind derives one from the other")
    if d.heads % tp or d.kv_heads % tp:
        name = next((m for m in shapes if m.endswith(arch.k)), arch.k)
        raise UnsupportedError(f"{where}: tensor '{name}': {d.heads} attention / {d.kv_heads} kv heads do not divide "
                               f"into tp={tp} ranks")
    for layer in range(d.layers):
        for part, suffix in (("q", arch.q), ("k", arch.k), ("v", arch.v), ("o", arch.o), ("gate", arch.gate),
                             ("up", arch.up), ("down", arch.down)):
            m = arch.module(layer, suffix)
            if m not in shapes:
                raise UnsupportedError(f"{where}: module '{m}' is missing; every TurboMind layer needs q/k/v/o and "
                                       "gate/up/down quantized")
    for m, (K, words) in shapes.items():
        N = words * 8
        part = roles[f"{m}.qweight"].part
        row_parallel = part in ("o", "down")
        if K % GROUP_SIZE:
            raise UnsupportedError(f"{where}: tensor '{m}.qweight': in_features {K} is not a multiple of {GROUP_SIZE}")
        if row_parallel:
            if (K // tp) % GROUP_SIZE:
                raise UnsupportedError(f"{where}: tensor '{m}.qweight': in_features {K} split over tp={tp} is "
                                       f"{K / tp:g} rows per rank, not whole groups of {GROUP_SIZE}")
            continue
        n_rank = N / tp
        if part in ("gate", "up"):
            cols = 2 * n_rank if variant == "w4" else n_rank
            unit = 32 if variant == "w4" else 8
            if variant == "v6" and n_rank % GROUP_SIZE:  # lmdeploy would pad inter_size per rank (_pad_inter_size)
                raise UnsupportedError(f"{where}: tensor '{m}.qweight': {N} outputs over tp={tp} is {n_rank:g} per rank, "
                                       f"not a multiple of {GROUP_SIZE} (lmdeploy pads it; repack does not)")
        else:
            cols, unit = (d.nq + 2 * d.nkv) / tp, 32 if variant == "w4" else 8
        if cols != int(cols) or int(cols) % unit or n_rank != int(n_rank) or int(n_rank) % 8:
            raise UnsupportedError(f"{where}: tensor '{m}.qweight': {N} outputs over tp={tp} give {cols:g} columns per "
                                   f"rank; the {variant} layout needs a multiple of {unit}")


def _as_numpy(spec, data) -> np.ndarray:
    if is_array(data):
        t = np.ascontiguousarray(as_array(data))
    elif isinstance(data, RawSlice):
        raw = np.fromfile(data.file, np.uint8, data.nbytes, offset=data.begin)
        if raw.nbytes != data.nbytes:
            raise InputError(f"{data.file}: tensor '{data.name}': truncated")
        t = raw.view(DTYPES[spec.dtype][1]).reshape(spec.shape)
    else:
        raw = bytearray()
        for chunk in data:
            raw += chunk
        t = np.frombuffer(raw, dtype=DTYPES[spec.dtype][1]).reshape(spec.shape)
    return t.astype(np.float32) if t.dtype == BF16 else t


def to_fp16(name: str, a: np.ndarray) -> np.ndarray:
    """Float tensors are stored fp16 in an int4 workspace (lmdeploy ``_weight_dtype_map('int4')``);
    a value fp16 cannot hold exactly is refused rather than rounded."""
    with np.errstate(over="ignore"):
        h = a.astype(np.float16)
    if a.dtype != np.float16 and not np.array_equal(h.astype(a.dtype), a, equal_nan=True):
        bad = int(np.count_nonzero(h.astype(a.dtype) != a))
        raise UnsupportedError(f"tensor '{name}': {bad} values do not fit fp16 exactly (TurboMind int4 workspaces store "
                               "float tensors as fp16)")
    return h


@dataclass(frozen=True)
class _Ranks:
    """One module's pieces of each rank's files: (qweight words, fp16 scales, fp16 zeros) per rank."""

    ranks: list[tuple[np.ndarray, np.ndarray, np.ndarray]]


def _rank_part(qt: QuantTensor, columns: np.ndarray | None, tp: int, r: int, variant: str,
               half: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rank ``r``'s qweight words, fp16 scales and fp16 zeros of one part: its block of the columns in
    TurboMind order (``columns``), or its block of input rows and their groups for a row-parallel
    part (None). The words go straight from the canonical layout to the file's (v6: a nibble
    transpose with the column gather folded in; w4: :func:`turbomind_layout.w4_tiles`, ``half`` for
    w13's parts), never through one byte per code."""
    K, N, words = qt.in_features, qt.out_features, qt.qweight
    s, z = qt.scales, qt.zeros
    if columns is None:
        rows, groups = lay.rank_slice(K, tp, r), lay.rank_slice(s.shape[0], tp, r)
        block = words[rows[0] // 8: (rows[-1] + 1) // 8]
        return _words(block, len(rows), None, variant, half), s[groups].astype(np.float16), z[groups].astype(np.float16)
    cols = columns[lay.rank_slice(N, tp, r)]
    return _words(words, K, cols, variant, half), s[:, cols].astype(np.float16), z[:, cols].astype(np.float16)


def _words(words: np.ndarray, K: int, cols: np.ndarray | None, variant: str, half: bool) -> np.ndarray:
    if cols is not None and np.array_equal(cols, np.arange(cols[0], cols[0] + len(cols))):
        words, cols = words[:, cols[0]: cols[0] + len(cols)], None  # a plain block: a view, no gather
    if variant == "v6":
        return words_along_n(words, K, words.shape[1], range(8), cols)
    if cols is not None:
        words = np.take(words, cols, axis=1)
    return lay.w4_tiles(words, K, words.shape[1], half)


def _join(slot: str, pieces: list[tuple]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One rank's (words, scales, zeros) of a slot from its parts' pieces: qkv puts q | k | v side by
    side (whole tiles / words each), w13 interleaves gate and up column by column (their half tiles
    take alternate 16-word runs of each tile)."""
    if len(pieces) == 1:
        return pieces[0]
    if slot == "w13":
        (g, gs, gz), (u, us, uz) = pieces
        kt, half_tiles = g.shape[:2]
        words = np.stack([g.reshape(kt, half_tiles, 4, 16), u.reshape(kt, half_tiles, 4, 16)], axis=3)
        return words, lay.interleave(gs, us), lay.interleave(gz, uz)
    return tuple(np.concatenate([x[j] for x in pieces], axis=1) for j in range(3))


class TurbomindWriter(CheckpointWriter):
    fills_in_any_order = False  # slots are gathered across modules (_gathered): written in order...
    writes_groups = True  # ...within a layer; layers are independent files (parallel_write.write_groups)
    accepts_raw_slices = True  # float tensors stored as written are copied file to file

    def __init__(self, target, specs, *, force: bool, source, config: dict, variant: str, tp: int):
        where = str(source.path)
        arch = arch_for(config)
        if arch is None:
            raise UnsupportedError(f"{where}: model_type {config.get('model_type')!r} is not in the TurboMind "
                                   "architecture table (llama, mistral, qwen2, internlm2)")
        if sys.byteorder != "little":  # pragma: no cover - the files are little-endian by definition
            raise UnsupportedError("writing TurboMind workspaces needs a little-endian machine")
        if tp < 1:
            raise UnsupportedError(f"tp must be at least 1, got {tp}")
        d = dims_of(config, where)
        self.roles = plan_roles(specs, arch, d, where)
        check_dims(specs, self.roles, arch, d, variant, tp, where)
        super().__init__(target, specs, force=force)
        self.config, self.arch, self.d, self.variant, self.tp = config, arch, d, variant, tp
        self.source_format = source.detection.format
        self.attn_bias = any(r.kind == "bias" and r.part in "qkv" for r in self.roles.values())
        self.has_o_bias = any(r.kind == "bias" and r.part == "o" for r in self.roles.values())
        self.pieces: dict[str, dict[str, np.ndarray]] = defaultdict(dict)  # module -> kind -> array
        self.parts: dict[tuple[int, str], dict[str, tuple]] = defaultdict(dict)  # (layer, slot) -> part -> (q, z, s)
        self.biases: dict[int, dict[str, np.ndarray]] = defaultdict(dict)
        self.weights: Path | None = None

    def __enter__(self) -> "TurbomindWriter":
        super().__enter__()
        self.weights = self.tmp / WEIGHTS
        self.weights.mkdir(parents=True)
        return self

    # -- modules, laid out on the worker threads ---------------------------------------------
    def pack_module(self, module: str, qt: QuantTensor) -> list[tuple[str, object]] | None:
        """This module's share of every rank's files, in their final layout (v6, one HF module per
        part): run on convert's worker threads in place of the format's ``pack``, so the writer only
        joins the parts of a slot and writes. None: the variant takes the layout-neutral pieces."""
        part = self.roles[f"{module}.qweight"].part
        if self.arch.packed_qkv or not self._direct(part, qt):
            return None
        columns, half = self._columns(part, qt.out_features), part in ("gate", "up") and self.variant == "w4"
        ranks = [_rank_part(qt, columns, self.tp, r, self.variant, half) for r in range(self.tp)]
        # the module's three declared tensors: everything travels with the first
        return [(f"{module}.qweight", _Ranks(ranks)), (f"{module}.scales", None), (f"{module}.zeros", None)]

    def _direct(self, part: str, qt: QuantTensor) -> bool:
        """Whether a rank's piece of this part is whole tiles of the w4 layout (each part of qkv, and
        gate / up of w13, starts a new tile of the fused matrix); v6 pieces always are whole words."""
        if self.variant == "v6":
            return True
        K, N = qt.in_features, qt.out_features
        rows, cols = (K // self.tp, N) if part in ("o", "down") else (K, N // self.tp)
        return rows % 32 == 0 and cols % (16 if part in ("gate", "up") else 32) == 0

    def _columns(self, part: str, n: int) -> np.ndarray | None:
        """TurboMind column order of a column-parallel part (None: HF order, or row-parallel)."""
        if part in ("o", "down"):
            return None
        if part in ("q", "k"):
            return sl.lay.rotary_order(self.d.heads if part == "q" else self.d.kv_heads, self.d.head_dim)
        return np.arange(n)

    def _gathered(self, i: int, part: str, value) -> tuple[str, dict] | None:
        """Hold ``value`` for ``part`` of layer i's slot; once every part of the slot is held, hand
        back (slot, part -> value) and forget them."""
        slot = next(sl_ for sl_ in sl.SLOTS[self.variant] if part in sl.PARTS[sl_])
        got = self.parts[(i, slot)]
        got[part] = value
        if len(got) < len(sl.PARTS[slot]):
            return None
        del self.parts[(i, slot)]
        return slot, got

    def _ranks(self, i: int, part: str, ranks: list[tuple]) -> None:
        done = self._gathered(i, part, ranks)
        if done is None:
            return
        slot, got = done
        for r in range(self.tp):
            q, s, z = _join(slot, [got[p][r] for p in sl.PARTS[slot]])
            files = {"qweight": q, "scales": s, "zeros": z} if self.variant == "v6" else \
                {"qweight": q, "scales_zeros": lay.w4_pack_scales_zeros(s, z)}
            for kind, data in files.items():
                self._file(sl.file_name(i, slot, r, kind), data)

    # -- data ---------------------------------------------------------------------------------
    def write(self, name: str, data) -> None:
        spec = self._expect(name)[1]
        self._pos += 1
        role = self.roles[name]
        if isinstance(data, _Ranks):
            self._ranks(role.layer, role.part, data.ranks)
            return
        if data is None and role.kind == "module":  # scales / zeros, sent with the qweight (pack_module)
            return
        if role.kind == "drop":
            for _ in ([] if is_array(data) or isinstance(data, RawSlice) else data):
                pass
            return
        if isinstance(data, RawSlice) and self._copies(spec, role):
            self._float_copy(role, data, spec.shape)
            return
        arr = _as_numpy(spec, data)
        if tuple(arr.shape) != tuple(spec.shape):
            raise OutputError(f"tensor '{name}': declared {list(spec.shape)}, got {list(arr.shape)}")
        if role.kind == "module":
            self._piece(name, role, arr)
        elif role.kind == "bias":
            self._bias(name, role, to_fp16(name, arr))
        else:
            self._float(name, role, to_fp16(name, arr))

    def _file(self, name: str, arr: np.ndarray) -> None:
        data = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<"), copy=False)
        path = self.weights / name
        with open(path, "wb") as f:
            direct = open_direct(path) if data.nbytes >= DIRECT_MIN else None
            if direct is None:
                write_chunked(f, data)
                return
            try:  # a large file's pages bypass the page cache (repack/direct_io.py says why)
                pwrite_direct(f.fileno(), direct, 0, memoryview(data.reshape(-1).view(np.uint8)))
            finally:
                os.close(direct)

    def _float(self, name: str, role: Role, a: np.ndarray) -> None:
        tp = self.tp
        if role.kind in ("attn_norm", "ffn_norm", "norm"):
            self._file(self._norm_file(role), a)
        else:  # embedding / lm_head: rows padded to a multiple of tp (export_misc pad_weight)
            pad = -a.shape[0] % tp
            if pad:
                a = np.concatenate([a, np.zeros((pad, a.shape[1]), a.dtype)])
            stem = "tok_embeddings" if role.kind == "embed" else "output"
            if self.variant == "w4":
                self._file(f"{stem}.weight", a)
            else:  # v0.6+: embedding split along hidden, output along vocab (export_misc save_split)
                axis = 1 if role.kind == "embed" else 0
                for r, piece in enumerate(np.split(a, tp, axis=axis)):
                    self._file(f"{stem}.{r}.weight", piece)
        if role.kind == "embed" and f"{self.arch.lm_head}.weight" not in self.roles:
            self._float(name, Role("lm_head"), a[: self.d.vocab])  # tied: the engine needs its own output.weight

    def _copies(self, spec, role: Role) -> bool:
        """Whether the files of a float tensor are byte ranges of its stored fp16 bytes (norms; the
        embedding and output rows, zero-padded; not a v6 embedding split along hidden)."""
        if spec.dtype != "F16" or role.kind not in ("attn_norm", "ffn_norm", "norm", "embed", "lm_head"):
            return False
        return not (role.kind == "embed" and self.variant == "v6" and self.tp > 1)

    def _float_copy(self, role: Role, src: RawSlice, shape: tuple[int, ...]) -> None:
        """:meth:`_float` of an fp16 tensor, copied file to file by the kernel as `cp` does: the
        embedding and output of a 7B model went through three copies in memory (524 MB each)."""
        if role.kind in ("attn_norm", "ffn_norm", "norm"):
            self._rows_file(self._norm_file(role), src, 1, 0, 1)
            return
        self._row_files(role.kind, src, shape[0], shape[0])
        if role.kind == "embed" and f"{self.arch.lm_head}.weight" not in self.roles:
            rows = shape[0] + (-shape[0] % self.tp)
            self._row_files("lm_head", src, shape[0], min(self.d.vocab, rows))  # tied, as in _float

    def _row_files(self, kind: str, src: RawSlice, stored: int, rows: int) -> None:
        """The files of an embedding / output matrix of ``rows`` rows (``stored`` of them in ``src``,
        the rest zero), padded to a multiple of tp and split along rows (v6 output; w4 whole)."""
        total = rows + (-rows % self.tp)
        stem = "tok_embeddings" if kind == "embed" else "output"
        if self.variant == "w4":
            spans = [(f"{stem}.weight", 0, total)]
        else:
            spans = [(f"{stem}.{r}.weight", r * total // self.tp, (r + 1) * total // self.tp) for r in range(self.tp)]
        for name, r0, r1 in spans:
            self._rows_file(name, src, stored, r0, r1)

    def _rows_file(self, name: str, src: RawSlice, stored: int, r0: int, r1: int) -> None:
        row = src.nbytes // max(stored, 1) if stored else 0
        with open(self.weights / name, "wb") as f:
            if r0 < stored:
                copy_range(src, r0 * row, (min(r1, stored) - r0) * row, f.fileno())
            zero_rows = r1 - max(r0, stored)
            if zero_rows > 0:
                write_chunked(f, bytes(zero_rows * row))

    @staticmethod
    def _norm_file(role: Role) -> str:
        if role.kind == "norm":
            return "norm.weight"
        return f"layers.{role.layer}.{'attention_norm' if role.kind == 'attn_norm' else 'ffn_norm'}.weight"

    def _bias(self, name: str, role: Role, b: np.ndarray) -> None:
        i = role.layer
        if role.part == "o":  # copied to every rank (save_split(..., copy=True))
            for r in range(self.tp):
                self._file(sl.file_name(i, "wo", r, "bias"), b)
            return
        self.biases[i][role.part] = b
        if len(self.biases[i]) == 3:
            parts = {p: x.reshape(1, -1) for p, x in self.biases.pop(i).items()}
            for r in range(self.tp):
                self._file(sl.file_name(i, "qkv", r, "bias"), sl.rank_columns("qkv", parts, self.d, self.tp, r)[0])
            if self.variant == "v6" and not self.has_o_bias:  # exporter.py export_attn: zeros for a missing o bias
                for r in range(self.tp):
                    self._file(sl.file_name(i, "wo", r, "bias"), np.zeros(self.d.nq, np.float16))

    def _piece(self, name: str, role: Role, arr: np.ndarray) -> None:
        module, _, kind = name.rpartition(".")
        got = self.pieces[module]
        got[kind] = arr
        if len(got) < len(QUANT_KINDS):
            return
        del self.pieces[module]
        q = sl.lay.v6_unpack_qweight(got["qweight"])
        z = got["zeros"].astype(np.int16)
        s = got["scales"].astype(np.float16)
        if role.part == "qkv":  # InternLM2's packed wqkv: three column selections
            for p, cols in zip("qkv", packed_qkv_columns(self.d)):
                self._member(role.layer, p, (q[:, cols], z[:, cols], s[:, cols]))
        else:
            self._member(role.layer, role.part, (q, z, s))

    def _member(self, i: int, part: str, qzs: tuple) -> None:
        done = self._gathered(i, part, qzs)
        if done is None:
            return
        slot, got = done
        for r in range(self.tp):
            if slot in sl.COLUMN_PARALLEL:
                q, z, s = (sl.rank_columns(slot, {p: v[j] for p, v in got.items()}, self.d, self.tp, r) for j in range(3))
            else:
                q, z, s = (sl.rank_rows(x, self.tp, r) for x in got[sl.PARTS[slot][0]])
            for kind, data in sl.encode_rank(self.variant, q, z, s).items():
                self._file(sl.file_name(i, slot, r, kind), data)

    def groups(self, items: list[tuple[str, str]]) -> list[list[int]]:
        """Convert's items (module or tensor name, kind) as groups that complete every fused slot
        and bias they start: the runs of items of one layer (declaration order keeps a layer's
        items together), every other item alone."""
        groups: list[list[int]] = []
        last = None
        for i, (name, kind) in enumerate(items):
            role = self.roles.get(f"{name}.qweight" if kind == "module" else name)
            layer = role.layer if role is not None and role.layer >= 0 else None
            if layer is not None and layer == last:
                groups[-1].append(i)
            else:
                groups.append([i])
            last = layer
        return groups

    def check_groups_complete(self) -> None:
        left = list(self.pieces) + [f"layer {i} {s}" for i, s in self.parts] + [f"layer {i} bias" for i in self.biases]
        if left:
            raise OutputError(f"{self.target}: incomplete fused groups at the end: {', '.join(left[:4])}")

    def finish(self, config: dict, side_files=(), extra_json=None) -> Path:
        self._check_all_written()
        self.check_groups_complete()
        # model_format names the input lmdeploy converted from (informational: zeros on disk are true zeros)
        fmt = "gptq" if self.source_format in ("auto_gptq", "auto_round") else "awq"
        text = render(self.variant, self.config, self.d, self.arch, self.tp, GROUP_SIZE, self.attn_bias, fmt)
        (self.weights / CONFIG_FILE[self.variant]).write_text(text, encoding="utf-8")
        if side_files:
            tok = self.tmp / TOKENIZER
            tok.mkdir(parents=True)
            import shutil
            for src in side_files:
                shutil.copyfile(src, tok / src.name)
        return self._commit()
