"""Writing one GGUF file, tensor by tensor, into the atomic output folder (``OUT/model.gguf``).

The output is a folder like every other repack output, holding ``model.gguf`` (llama.cpp takes
the file, transformers ``from_pretrained(OUT, gguf_file="model.gguf")``). It is written into
``.<name>.repack-tmp-*`` beside the target and renamed at the end (:class:`CheckpointWriter`'s
lock, temp folder and commit). The header (metadata + every tensor's name, shape, type and offset)
is known from the plan before any data exists, so each tensor's bytes stream straight into place
(gguf-py ``GGUFWriter``: ``add_tensor_info`` for all, header/KV/tensor-info, then
``write_tensor_data`` once per tensor in the same order; gguf.md §3.2).

Names become GGUF's (gguf.md §4.1) and the rows of q_proj/k_proj are permuted for llama.cpp's
rotary layout (§4.2) — whole rows, so block bytes are permuted as they are, never re-encoded.
Float tensors: 1-D as F32 (llama.cpp's convention for norms), F16 stays F16, BF16 and F32 as F32
(exact), F64 and integers as they are.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..checkpoint import CheckpointWriter, write_chunked
from ..dtypes import as_array, is_array
from ..errors import OutputError, UnsupportedError
from ..safetensors_header import DTYPES
from . import gguf_arch as arch

GGUF_NAME = "model.gguf"
_FLOAT_OUT = {"F16": np.float16, "F32": np.float32, "BF16": np.float32, "F64": np.float64,
              "I8": np.int8, "I16": np.int16, "I32": np.int32, "I64": np.int64}
_DROPPED = (".rotary_emb.inv_freq",)  # recomputed by every runtime; llama.cpp's converter skips them too


def tokenizer_note(source) -> list[str]:
    from ..gguf_checkpoint import GgufCheckpoint
    if isinstance(source.ckpt, GgufCheckpoint):
        return []
    from .gguf_tokenizer import read_tokenizer
    _, note = read_tokenizer(Path(source.ckpt.root))
    return [note] if note else []


class _ChunkedArray(np.ndarray):
    """An array whose ``tofile`` (what gguf-py's write_tensor_data calls) writes in 256 KB calls:
    one call per tensor made the kernel allocate the page cache in large folios, which stalls in
    memory compaction (:func:`repack.checkpoint.write_chunked`)."""

    def tofile(self, fid, sep="", format="%s"):
        if sep or isinstance(fid, (str, Path)):
            return np.asarray(self).tofile(fid, sep, format)
        write_chunked(fid, np.asarray(self))


@dataclass(frozen=True)
class _GgufRows:
    """A module's block bytes, rows already in GGUF order (GgufWriter.pack_module)."""

    blocks: np.ndarray


class GgufWriter(CheckpointWriter):
    accepts_raw_slices = False  # tensors are re-encoded or re-typed on the way in
    fills_in_any_order = True  # every tensor's offset is in the header already (presize, encode)
    def __init__(self, target, specs, *, force: bool, source, config: dict):
        super().__init__(target, specs, force=force)
        self.specs = specs
        self.source = source
        self.config = config
        if str(config.get("model_type")) not in arch.LLAMA_MODEL_TYPES:
            raise UnsupportedError(f"{source.path}: GGUF writing supports the Llama family (model_type "
                                   f"{'/'.join(arch.LLAMA_MODEL_TYPES)}), not {config.get('model_type')!r}")
        self.names: dict[str, str] = {}
        for s in specs:
            if s.name.endswith(_DROPPED):
                continue
            g = arch.gguf_name(s.name)
            if g is None:
                raise UnsupportedError(f"{source.path}: tensor '{s.name}' has no GGUF (llama) name")
            self.names[s.name] = g
        # GGUF -> GGUF: tensors that pass through as floats but are stored in some other block type
        # (K-quants, IQ types, the Q8_0 embedding) are copied as their stored blocks, not widened to F32
        self.raw: dict[str, int] = {}
        from ..gguf_checkpoint import GgufCheckpoint, NATIVE_TYPES
        if isinstance(source.ckpt, GgufCheckpoint):
            for s in specs:
                if getattr(s, "ggml_type", -1) < 0 and s.name in source.ckpt and s.name in self.names:
                    info = source.ckpt.info(s.name)
                    if info.ggml_type not in NATIVE_TYPES and len(info.shape) == 2:
                        self.raw[s.name] = info.ggml_type
        self.gw = None
        self._nbytes: dict[str, int] = {}  # GGUF bytes of each written tensor, declared in the header
        self._types = {s.name: s.ggml_type for s in specs if getattr(s, "ggml_type", -1) >= 0}  # declared block types
        self._rope_freqs: np.ndarray | None = None  # Llama 3 rope divisors to add after the model's tensors
        self._offsets: dict[str, int] = {}  # each tensor's offset in the file, once presize() laid it out
        self._rope_at: int | None = None  # their offset once presize() laid out the data section

    def __enter__(self) -> "GgufWriter":
        super().__enter__()
        import gguf
        try:
            self.gw = gguf.GGUFWriter(self.tmp / GGUF_NAME, "llama")
            self._metadata(gguf)
            for s in self.specs:
                if s.name in self.names:
                    self._tensor_info(gguf, s)
            if self._rope_freqs is not None:
                self.gw.add_tensor_info("rope_freqs.weight", self._rope_freqs.shape, self._rope_freqs.dtype,
                                        self._rope_freqs.nbytes)
            self.gw.write_header_to_file()
            self.gw.write_kv_data_to_file()
            self.gw.write_ti_data_to_file()
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.gw is not None:
            try:
                self.gw.close()
            except OSError:
                pass
        super().__exit__(exc_type, exc, tb)

    # -- header -------------------------------------------------------------------------------
    def _metadata(self, gguf) -> None:
        c, w = self.config, self.gw
        heads = int(c["num_attention_heads"])
        hidden = int(c["hidden_size"])
        head_dim = int(c.get("head_dim") or hidden // heads)
        from ..gguf_checkpoint import GgufCheckpoint
        if not isinstance(self.source.ckpt, GgufCheckpoint):  # a GGUF source keeps its own general.* keys
            w.add_name(self.target.name)
        w.add_context_length(int(c.get("max_position_embeddings") or arch.HF_DEFAULTS["max_position_embeddings"]))
        w.add_embedding_length(hidden)
        w.add_block_count(int(c["num_hidden_layers"]))
        w.add_feed_forward_length(int(c["intermediate_size"]))
        w.add_head_count(heads)
        w.add_head_count_kv(int(c.get("num_key_value_heads") or heads))
        from ..quantize.rope import divisors, rope_params, rope_theta
        where = str(self.source.path)
        scaling = rope_params(c, where)  # rope_scaling or (transformers 5) rope_parameters
        w.add_rope_freq_base(rope_theta(c, where))
        w.add_layer_norm_rms_eps(float(c.get("rms_norm_eps") or arch.HF_DEFAULTS["rms_norm_eps"]))
        w.add_rope_dimension_count(head_dim)
        if c.get("head_dim"):
            w.add_key_length(head_dim)
            w.add_value_length(head_dim)
        if c.get("vocab_size"):
            w.add_vocab_size(int(c["vocab_size"]))
        kind = scaling.get("rope_type") or scaling.get("type")
        if kind == "linear":
            w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
            w.add_rope_scaling_factor(float(scaling["factor"]))
        elif kind == "llama3":
            # llama.cpp keeps Llama 3's scaling as per-frequency divisors in a `rope_freqs` tensor
            # (its converter's LlamaModel; no metadata key); a GGUF source already has the tensor
            if "rope_freqs.weight" not in self.names:
                self._rope_freqs = divisors(c, head_dim, where).astype(np.float32)
        elif kind not in (None, "default"):
            raise UnsupportedError(f"{self.source.path}: rope_scaling {kind!r} is not written to GGUF (linear and llama3 are)")
        w.add_file_type(self._file_type(gguf))
        w.add_quantization_version(gguf.GGML_QUANT_VERSION)
        self._tokenizer(gguf)

    def _file_type(self, gguf) -> int:
        """general.file_type: the block type most quantized tensors have (llama.cpp labels a file so)."""
        by_type = {2: gguf.LlamaFileType.MOSTLY_Q4_0, 3: gguf.LlamaFileType.MOSTLY_Q4_1,
                   6: gguf.LlamaFileType.MOSTLY_Q5_0, 7: gguf.LlamaFileType.MOSTLY_Q5_1,
                   8: gguf.LlamaFileType.MOSTLY_Q8_0}
        kinds = [s.ggml_type for s in self.specs if getattr(s, "ggml_type", -1) in by_type]
        if not kinds:
            f16 = any(s.dtype == "F16" and len(s.shape) == 2 for s in self.specs)
            return int(gguf.LlamaFileType.MOSTLY_F16 if f16 else gguf.LlamaFileType.ALL_F32)
        return int(by_type[max(set(kinds), key=kinds.count)])

    def _tokenizer(self, gguf) -> None:
        from ..gguf_checkpoint import GgufCheckpoint
        ckpt = self.source.ckpt
        if isinstance(ckpt, GgufCheckpoint):  # GGUF -> GGUF: tokenizer and other keys travel as they are
            written = self.gw.kv_data[0]
            for key, field in ckpt.reader.fields.items():
                if key.startswith("GGUF.") or key in written or key == "general.alignment":
                    continue
                types = field.types
                self.gw.add_key_value(key, field.contents(), types[0], types[1] if len(types) > 1 else None)
            return
        from .gguf_tokenizer import read_tokenizer
        entries, _ = read_tokenizer(Path(ckpt.root), self.config)
        for key, value, vtype, sub in entries:
            self.gw.add_key_value(key, value, vtype, sub)

    def _tensor_info(self, gguf, s) -> None:
        name = self.names[s.name]
        qtype = getattr(s, "ggml_type", -1)
        if qtype >= 0:  # block bytes [rows, bytes per row]: gguf-py turns the byte shape into elements
            dtype, shape, raw = np.dtype(np.uint8), s.shape, gguf.GGMLQuantizationType(qtype)
        elif s.name in self.raw:
            raw = gguf.GGMLQuantizationType(self.raw[s.name])
            dtype, shape = np.dtype(np.uint8), gguf.quant_shape_to_byte_shape(s.shape, raw)
        else:
            dtype, shape, raw = np.dtype(self._float_dtype(s)), s.shape, None
        self._nbytes[s.name] = math.prod(shape) * dtype.itemsize
        self.gw.add_tensor_info(name, shape, dtype, self._nbytes[s.name], raw)

    @staticmethod
    def _float_dtype(s):
        if s.dtype not in _FLOAT_OUT:
            raise UnsupportedError(f"tensor '{s.name}': dtype {s.dtype} cannot be stored in GGUF")
        return np.float32 if len(s.shape) == 1 and s.dtype in ("F16", "BF16") else _FLOAT_OUT[s.dtype]

    # -- data ---------------------------------------------------------------------------------
    def pack_module(self, module: str, qt) -> list[tuple[str, object]] | None:
        """A module's GGUF blocks, encoded on convert's workers: q_proj / k_proj rows in llama.cpp's
        rotary order (the encoder puts each row in its place), and, once :meth:`presize` has laid
        out the file, into memory with its file offset's page phase (direct_io.out_buffer: the
        write goes out from there, no copy). None: not a module of this file."""
        name = f"{module}.weight"
        if name not in self.names or name not in self._types:
            return None
        from ..direct_io import out_buffer
        from .gguf_blocks import BY_ID
        from .gguf_tensor import encode
        heads = arch.permuted_heads(name, self.config)
        rows = arch.rows_to_gguf(qt.out_features, heads) if heads else None
        at = self._offsets.get(name)
        out = None if at is None else out_buffer(self._nbytes[name], at).reshape(qt.out_features, -1)
        return [(name, _GgufRows(encode(qt, BY_ID[self._types[name]], out, rows)))]

    def write(self, name: str, data) -> None:
        spec = self._expect(name)[1]
        self._pos += 1
        arr = self.encode(name, data, spec)
        if arr is not None:
            self.gw.write_tensor_data(arr.view(_ChunkedArray))

    def encode(self, name: str, data, spec) -> np.ndarray | None:
        """A tensor's GGUF bytes (contiguous), or None for a tensor GGUF does not keep (its data is
        consumed). Shared by :meth:`write` and the forked writers of repack/parallel_write.py."""
        if name not in self.names:
            for _ in ([] if is_array(data) else data):
                pass
            return None
        if isinstance(data, _GgufRows):
            arr = data.blocks
        else:
            arr = self.source.ckpt.blocks(name) if name in self.raw else self._array(spec, data)
            heads = arch.permuted_heads(name, self.config)
            if heads:
                arr = arr[arch.rows_to_gguf(arr.shape[0], heads)]
        if arr.nbytes != self._nbytes[name]:
            raise OutputError(f"tensor '{name}': {arr.nbytes} bytes, declared {self._nbytes[name]}")
        return np.ascontiguousarray(arr)

    def presize(self) -> dict:
        """The data section at its final size (zeros, so the alignment padding is in place) after the
        header gguf-py has written; each declared tensor's (file, offset, spec), file None for the
        tensors GGUF drops. Offsets as gguf-py's tensor infos state them: the data section starts at
        the next alignment boundary and every tensor is padded to the alignment."""
        import gguf
        fout = self.gw.fout[0]
        fout.flush()
        pad, align = gguf.GGUFWriter.ggml_pad, self.gw.data_alignment
        offset = pad(fout.tell(), align)
        at = {}
        for gname, ti in self.gw.tensors[0].items():
            at[gname] = offset
            offset += pad(ti.nbytes, align)
        fout.truncate(offset)
        self._rope_at = at.get("rope_freqs.weight")
        self._offsets = {s.name: at[self.names[s.name]] for s in self.specs if s.name in self.names}
        path = self.tmp / GGUF_NAME
        return {s.name: (path, at[self.names[s.name]], s) if s.name in self.names else (None, 0, s) for s in self.specs}

    def _array(self, spec, data) -> np.ndarray:
        if is_array(data):
            return np.ascontiguousarray(as_array(data))
        stored = DTYPES[spec.dtype][1]
        if spec.name in self.source.ckpt and stored in (np.float16, np.float32) and self._float_dtype(spec) == stored:
            # stored as written: the source's tensor (memory-mapped when large) goes out without a
            # copy in memory; the embedding and lm_head of a 7B model are 262 MB each
            t = self.source.ckpt.get(spec.name)
            if tuple(t.shape) == tuple(spec.shape):
                return t
        raw = bytearray()
        for chunk in data:
            raw += chunk
        t = np.frombuffer(raw, dtype=stored).reshape(spec.shape)
        out = self._float_dtype(spec)
        return t.astype(out) if out in (np.float32, np.float16) else t

    def finish(self, config: dict, side_files=(), extra_json=None) -> Path:
        self._check_all_written()
        if self._rope_at is not None:
            with open(self.tmp / GGUF_NAME, "r+b") as f:  # its place in the presized data section
                f.seek(self._rope_at)
                f.write(np.ascontiguousarray(self._rope_freqs).tobytes())
        elif self._rope_freqs is not None:
            self.gw.write_tensor_data(self._rope_freqs)
        self.gw.close()
        return self._commit()
