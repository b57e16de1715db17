"""A float model (fp16/bf16/fp32 ``<m>.weight`` tensors): the target that dequantizes anything.

Variants choose the output dtype: ``auto`` keeps each layer's scale dtype. As a source, a dense
folder has no quantized modules; quantizing it is ``repack quantize``'s job (or
:class:`repack.source.RtnSource` for round-to-nearest).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ..checkpoint import Checkpoint, TensorSpec
from ..dtypes import NAMES as DTYPE_NAMES
from ..safetensors_header import st_dtype
from ..tensor import QuantTensor
from .base import Capabilities, Detection, Format, Scheme, any_shape, full_zero_range


class DenseFormat(Format):
    name = "dense"
    variants = ("auto", "fp16", "bf16", "fp32")
    description = "float model (dequantized): <module>.weight in fp16/bf16/fp32"
    quantized = False

    def capabilities(self, variant: str) -> Capabilities:
        return Capabilities(bits=(2, 3, 4, 8), zero_range=full_zero_range, act_order=True, shape_problem=any_shape,
                            float_offsets=True)

    def detect(self, ckpt: Checkpoint) -> Detection | None:
        if ckpt.config.get("quantization_config"):
            return None
        names = ckpt.names()
        if any(n.endswith((".qweight", ".weight_packed", ".B")) for n in names):
            return None
        if not any(n.endswith(".weight") and ckpt.info(n).dtype in ("F16", "BF16", "F32") for n in names):
            return None
        return Detection(self.name, "auto")

    def _dtype(self, qt: QuantTensor, variant: str) -> np.dtype:
        return qt.scales.dtype if variant == "auto" else DTYPE_NAMES[variant]

    def specs(self, module: str, qt: QuantTensor, variant: str) -> list[TensorSpec]:
        return [TensorSpec(f"{module}.weight", st_dtype(self._dtype(qt, variant)), qt.shape)]

    def pack(self, module: str, qt: QuantTensor, variant: str) -> dict[str, Iterator[bytes]]:
        return {f"{module}.weight": self._rows(qt, self._dtype(qt, variant))}

    @staticmethod
    def _rows(qt: QuantTensor, dtype: np.dtype) -> Iterator[bytes]:
        """The float weight [N, K] in row blocks: dequantized whole, a 4-bit layer would take 8x
        its packed size in fp32, so each block's working set is kept near 64 MiB."""
        step = max(1, (1 << 24) // max(qt.in_features, 1))
        for n in range(0, qt.out_features, step):
            block = qt.columns(n, min(n + step, qt.out_features)).dequantize(dtype)
            yield memoryview(block.reshape(-1).view(np.uint8))

    def quantization_config(self, scheme: Scheme, variant: str) -> dict | None:
        return None
