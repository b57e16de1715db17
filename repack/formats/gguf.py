"""llama.cpp GGUF: one file, 32-element blocks Q4_0/Q4_1/Q5_0/Q5_1/Q8_0 read and written exactly.

Reading: :class:`repack.gguf_checkpoint.GgufCheckpoint` serves the file's tensors by Hugging Face
name; the block-quantized linears of the decoder layers are modules (read exactly,
:mod:`.gguf_tensor`), every other tensor — norms, the embedding, K-quants, IQ types, BF16 —
passes through as floats (gguf-py's dequantizers), which is how "any GGUF reads as ``dense``".

Writing: variants choose the block type; ``auto`` picks, per layer, the smallest type that holds
it exactly. K-quants are not written: their 6-bit sub-block scales relative to a super-scale hold
GPTQ/AWQ groups exactly only in special cases (all groups of 256 columns sharing one scale, or
small-integer scale ratios; gguf.md §5.2), so they are refused with that reason.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..checkpoint import TensorSpec
from ..dtypes import F16
from ..errors import InputError, UnsupportedError
from ..fit import cast_scales, requantize
from ..tensor import QuantTensor
from . import gguf_blocks as gb
from .base import Capabilities, Detection, Format, Scheme, full_zero_range
from .gguf_tensor import exact_type, encode, offsets_fp16, spans, to_canonical, value_range

K_QUANTS = ("q2_k", "q3_k", "q4_k", "q5_k", "q6_k", "q8_k")
K_QUANT_REASON = ("K-quants are not written: their 6-bit sub-block scales and mins, relative to one fp16 "
                  "super-scale per 256 columns, hold GPTQ/AWQ group scales exactly only in special cases "
                  "(gguf.md §5.2); use q4_0 (symmetric 4-bit), q5_0 (asymmetric 4-bit) or q8_0")


def check_gguf_type(name: str) -> str:
    """A --gguf-type value as a variant name; K-quants are refused with the reason."""
    n = name.lower()
    if n in K_QUANTS:
        raise UnsupportedError(f"GGUF type {name}: {K_QUANT_REASON}")
    return n


@dataclass(frozen=True)
class GgufSpec(TensorSpec):
    """An output tensor of a GGUF file: block bytes declared as U8 [rows, bytes per row]."""

    ggml_type: int = -1


def _shape_problem(K: int, N: int, bits: int, group_size: int) -> str | None:
    if K % gb.BLOCK:
        return f"in_features {K} is not a multiple of 32 (GGUF blocks hold 32 consecutive inputs)"
    if group_size != -1 and group_size % gb.BLOCK:
        return f"group size {group_size} is not a multiple of 32 (one GGUF block must lie inside one group)"
    return None


def _fit(variant: str, t: QuantTensor, f) -> QuantTensor:
    """GGUF's own fitting step (after the generic one): fp16 scales, then a block type."""
    t = cast_scales(t, F16, f, "scales -> fp16 (exact)", "scales rounded to fp16 (GGUF stores d as fp16)")
    only = None if variant == "auto" else gb.TYPES[variant]
    bt = exact_type(t, only)
    if bt is not None:
        f.exact_notes.append(f"as {bt.name.upper()}")
        return t
    qmax = spans(t)[2]
    if only is None:  # nothing exact: keep the codes with a rounded offset if they fit 5 bits, else Q8_0
        only = gb.Q4_1 if qmax <= 15 else gb.Q5_1 if qmax <= 31 else gb.Q8_0
    if only.has_min:
        if qmax > only.code_range[1]:
            f.unsupported.append(f"codes up to {qmax} do not fit {only.name.upper()} (0..{only.code_range[1]}); use q8_0")
            return t
        m, _ = offsets_fp16(t)
        f.lossy.append(f"offset m = -s*z rounded to fp16 for {only.name.upper()}")
        return t.replace(zeros=np.zeros_like(t.zeros), sym=False, offsets=m)
    if t.offsets is not None:
        from ..fit import offsets_to_zeros
        t, exact = offsets_to_zeros(t, (0, 2**t.bits))
        if not exact:
            f.lossy.append("float offsets rounded to integer zero points")
        if exact_type(t, only) is not None:
            f.exact_notes.append(f"as {only.name.upper()}")
            return t
    if only is gb.Q5_0:
        lo, hi, _ = spans(t)
        f.unsupported.append(f"values q - z span {lo}..{hi}, Q5_0 holds {value_range(only)[0]}..{value_range(only)[1]}; "
                             "use q8_0")
        return t
    bits = 4 if only is gb.Q4_0 else 8
    f.lossy.append(f"re-quantized to symmetric {bits}-bit for {only.name.upper()}")
    return requantize(t, bits, t.group_size, True, F16)


class GgufFormat(Format):
    name = "gguf"
    variants = ("auto", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0")
    description = "llama.cpp GGUF file (reads every type; writes Q4_0/Q4_1/Q5_0/Q5_1/Q8_0 blocks)"

    def capabilities(self, variant: str) -> Capabilities:
        return Capabilities(bits=(2, 3, 4, 8), zero_range=full_zero_range, act_order=False,
                            shape_problem=_shape_problem, float_offsets=True,
                            check=lambda t, f: _fit(variant, t, f))

    # -- reading ------------------------------------------------------------------------------
    def detect(self, ckpt) -> Detection | None:
        from ..gguf_checkpoint import GgufCheckpoint
        if not isinstance(ckpt, GgufCheckpoint):
            return None
        kinds = [gb.BY_ID[ckpt.info(f"{m}.weight").ggml_type].name for m in self._modules(ckpt)]
        variant = max(set(kinds), key=kinds.count) if kinds else "float"
        return Detection(self.name, variant, notes=list(ckpt.notes))

    @staticmethod
    def _modules(ckpt) -> list[str]:
        return [n[:-7] for n in ckpt.names() if n.endswith(".weight") and n.startswith(("model.layers.", "blk."))
                and ckpt.info(n).ggml_type in gb.BY_ID and len(ckpt.info(n).shape) == 2]

    def modules(self, ckpt, det: Detection) -> list[str]:
        return self._modules(ckpt)

    def module_tensors(self, ckpt, det: Detection, module: str) -> list[str]:
        return [f"{module}.weight"]

    def read(self, ckpt, det: Detection, module: str) -> QuantTensor:
        info = ckpt.info(f"{module}.weight")
        try:
            return to_canonical(gb.BY_ID[info.ggml_type], ckpt.blocks(f"{module}.weight"))
        except ValueError as e:
            raise InputError(f"{ckpt.root}: tensor '{info.gguf_name}': {e}") from None

    # -- writing ------------------------------------------------------------------------------
    def _type(self, qt: QuantTensor, variant: str) -> gb.BlockType:
        bt = exact_type(qt, None if variant == "auto" else gb.TYPES[variant])
        if bt is None:  # fit() made the tensor fit; anything else is a caller bug
            raise UnsupportedError(f"{qt.describe()} fits no GGUF block type ({variant}); fit() it first")
        return bt

    def specs(self, module: str, qt: QuantTensor, variant: str) -> list[TensorSpec]:
        bt = self._type(qt, variant)
        return [GgufSpec(f"{module}.weight", "U8", (qt.out_features, qt.in_features // gb.BLOCK * bt.type_size),
                         bt.ggml_id)]

    def pack(self, module: str, qt: QuantTensor, variant: str) -> dict[str, np.ndarray]:
        return {f"{module}.weight": encode(qt, self._type(qt, variant))}

    def quantization_config(self, scheme: Scheme, variant: str) -> dict | None:
        return None

    def writer(self, target, specs, *, force, shard_size, source, config, variant):
        from .gguf_writer import GgufWriter
        return GgufWriter(target, specs, force=force, source=source, config=config)

    def output_notes(self, source) -> list[str]:
        from .gguf_writer import tokenizer_note
        return tokenizer_note(source)


__all__ = ["GgufFormat", "GgufSpec", "check_gguf_type"]
