"""TurboMind (lmdeploy) workspaces, the output of ``lmdeploy convert``: 4-bit, group size 128.

Variants:
- ``w4``: the legacy workspace of lmdeploy up to v0.5.3 (``config.ini``; fused ``w_qkv`` and ``w13``,
  codes in the tiled ``reformat_s4_k_m8`` order, ``scales_zeros`` half2 words);
- ``v6``: the workspace of lmdeploy v0.6-v0.9 (``config.yaml``; ``qweight`` int32 ``[K, N_r/8]``
  packed along outputs, fp16 ``scales`` and ``zeros``; ``w1``/``w3`` separate).

Both are pre-split for a tensor-parallel size (``convert(..., tp=N)``, ``repack convert --tp N``):
TurboMind loads int4 weights without slicing them at run time. Layouts: :mod:`.turbomind_layout`;
model structure: :mod:`.turbomind_arch`; rank splits: :mod:`.turbomind_slots`; files:
:mod:`.turbomind_writer` and :mod:`repack.turbomind_checkpoint`. Facts: kernels.md §2.1, §2.2.
"""

from __future__ import annotations

import numpy as np

from ..checkpoint import TensorSpec
from ..dtypes import F16
from ..errors import UnsupportedError
from ..fit import cast_scales
from ..packing import unpack_rows
from ..tensor import QuantTensor
from . import turbomind_layout as lay
from .base import Capabilities, Detection, Format, Scheme
from .turbomind_writer import GROUP_SIZE


def _shape_problem(K: int, N: int, bits: int, group_size: int) -> str | None:
    if group_size != GROUP_SIZE:
        return f"group size {group_size}: TurboMind's int4 kernels take group size {GROUP_SIZE} only"
    if K % GROUP_SIZE:
        return f"in_features {K} is not a multiple of {GROUP_SIZE}"
    if N % 8:
        return f"out_features {N} is not a multiple of 8"
    return None


def _fit(t: QuantTensor, f) -> QuantTensor:
    """Scales are fp16 in every TurboMind int4 layout."""
    return cast_scales(t, F16, f, "scales -> fp16 (exact)", "scales rounded to fp16 (TurboMind stores fp16 scales)")


class TurbomindFormat(Format):
    name = "turbomind"
    variants = ("w4", "v6")
    description = "LMDeploy TurboMind workspace (lmdeploy convert): w4 = up to v0.5, v6 = v0.6-0.9; --tp N"
    tensor_parallel = True

    def capabilities(self, variant: str) -> Capabilities:
        # zeros: w4 stores fp16(64 + z), v6 fp16(z); both hold every true zero 0..16 exactly
        return Capabilities(bits=(4,), zero_range=lambda b: (0, 16), act_order=False, shape_problem=_shape_problem,
                            check=_fit)

    # -- reading ------------------------------------------------------------------------------
    def detect(self, ckpt) -> Detection | None:
        from ..turbomind_checkpoint import TurbomindCheckpoint
        if not isinstance(ckpt, TurbomindCheckpoint):
            return None
        L = ckpt.layout
        return Detection(self.name, L.variant, bits=4, group_size=L.group_size,
                         notes=[f"tensor-parallel workspace, tp={L.tp}"] if L.tp > 1 else [])

    def modules(self, ckpt, det: Detection) -> list[str]:
        return ckpt.modules()

    def read(self, ckpt, det: Detection, module: str) -> QuantTensor:
        return ckpt.read_module(module)

    # -- writing ------------------------------------------------------------------------------
    # Per module, pack hands the writer a layout-neutral form (codes packed along outputs as in v6,
    # fp16 scales and zeros); the writer fuses, reorders, splits and lays out whole slots.
    def specs(self, module: str, qt: QuantTensor, variant: str) -> list[TensorSpec]:
        N, K, G = qt.out_features, qt.in_features, qt.num_groups
        return [TensorSpec(f"{module}.qweight", "I32", (K, N // 8)), TensorSpec(f"{module}.scales", "F16", (G, N)),
                TensorSpec(f"{module}.zeros", "F16", (G, N))]

    def pack(self, module: str, qt: QuantTensor, variant: str) -> dict[str, np.ndarray]:
        codes = unpack_rows(qt.qweight, 4, qt.in_features)
        return {f"{module}.qweight": lay.v6_pack_qweight(codes),
                f"{module}.scales": qt.scales.astype(np.float16), f"{module}.zeros": qt.zeros.astype(np.float16)}

    def quantization_config(self, scheme: Scheme, variant: str) -> dict | None:
        offending = [m for m, (b, g, _) in scheme.overrides if b != 4 or g != GROUP_SIZE]
        if offending:
            raise UnsupportedError(f"turbomind has one int4 group size {GROUP_SIZE} per model; differing: "
                                   f"{', '.join(offending)}")
        return None

    def writer(self, target, specs, *, force, shard_size, source, config, variant, tp: int = 1):
        from .turbomind_writer import TurbomindWriter
        return TurbomindWriter(target, specs, force=force, source=source, config=config, variant=variant, tp=tp)

    def layout_problem(self, specs, config: dict, variant: str, tp: int, where: str) -> None:
        from .turbomind_arch import arch_for, dims_of
        from .turbomind_writer import check_dims, plan_roles
        arch = arch_for(config)
        if arch is None:
            raise UnsupportedError(f"{where}: model_type {config.get('model_type')!r} is not in the TurboMind "
                                   "architecture table (llama, mistral, qwen2, internlm2)")
        d = dims_of(config, where)
        check_dims(specs, plan_roles(specs, arch, d, where), arch, d, variant, tp, where)

    def output_notes(self, source) -> list[str]:
        if source.ckpt.config.get("tie_word_embeddings"):
            return ["tied embeddings: the workspace gets its own output.weight (a copy of the embedding)"]
        return []


__all__ = ["TurbomindFormat"]
