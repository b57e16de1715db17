"""A layer's packed tensors exactly as its format stores them, described for a kernel.

Kernels index these tensors through strides, so a layout that is another one transposed (AutoAWQ
gemv's ``[N, K/8]`` words are GPTQ's ``[K/8, N]`` words transposed, hf.md §2.3) is the same layout
with swapped strides, read in place.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from ..dtypes import to_torch
from ..tensor import QuantTensor

# how the codes are packed
CODES_ALONG_K = "k"        # GPTQ / canonical: word (k // (32/b), n), field k % (32/b), LSB first
CODES_ALONG_N_AWQ = "n-awq"  # AutoAWQ gemm: word (k, n // 8), nibble AWQ_REVERSE_ORDER[n % 8]
CODES_MARLIN = "marlin"  # Marlin 16x64 tiles [K/16, N*16*b/32] (formats/marlin_layout.py), 4/8-bit
# how the zeros are stored
ZEROS_ALONG_N = "n"          # GPTQ qzeros [G, N*b/32], sequential fields
ZEROS_ALONG_N_AWQ = "n-awq"  # AutoAWQ gemm qzeros [G, N/8], AWQ nibble order
ZEROS_ALONG_G = "g"          # AutoAWQ gemv qzeros [N, W], 8 groups per word, sequential
ZEROS_INT = "int"            # unpacked integers [G, N] (the canonical tensor's)
ZEROS_MARLIN = "marlin"      # vLLM marlin_zero_points [G, N*b/32]: 64-column transpose, interleave, packed
# how the scales' columns are ordered
SCALES_PLAIN = "plain"       # [G, N], column n at n
SCALES_MARLIN = "marlin"     # marlin_permute_scales: 64-column transpose (G > 1) or the 32-column single order


@dataclass(frozen=True)
class PackedWeight:
    """``qweight`` is indexed (row, col) as its ``codes`` layout says: ``[K*b/32, N]`` for codes
    along K, ``[K, N/8]`` for AWQ; ``scales`` as ``[G, N]``; ``zeros`` as its ``zeros`` layout says
    (``[N, W]`` for zeros along G). Any of them may be a strided view. The true zero is the stored
    field plus ``zero_offset`` (1 for GPTQ v1, which stores z - 1)."""

    codes: str
    zeros_layout: str
    bits: int
    in_features: int
    out_features: int
    group_size: int
    qweight: torch.Tensor
    scales: torch.Tensor
    zeros: torch.Tensor
    zero_offset: int = 0
    g_idx: torch.Tensor | None = None
    source: str = ""  # the format/variant it came from, for reports
    scales_layout: str = SCALES_PLAIN
    # Marlin act-order: layout row k' holds input x_perm[k'] (and g_idx is in layout row order);
    # the kernel reads x's columns in this order, as vLLM's permute_cols does before the GEMM
    x_perm: torch.Tensor | None = None

    def __post_init__(self) -> None:
        for name in ("qweight", "scales", "zeros", "g_idx", "x_perm"):  # formats hand over numpy arrays
            value = getattr(self, name)
            if value is not None and not isinstance(value, torch.Tensor):
                object.__setattr__(self, name, to_torch(value))

    @property
    def effective_group_size(self) -> int:
        return self.in_features if self.group_size == -1 else self.group_size

    @property
    def num_groups(self) -> int:
        return -(-self.in_features // self.effective_group_size)

    def to(self, device: torch.device | str) -> "PackedWeight":
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return dataclasses.replace(self, qweight=move(self.qweight), scales=move(self.scales),
                                   zeros=move(self.zeros), g_idx=move(self.g_idx), x_perm=move(self.x_perm))

    def columns(self, start: int, stop: int) -> "PackedWeight":
        """Output columns [start, stop) as views of the same tensors (nothing copied): a launch over them writes
        those columns of y (e.g. a layer split so that its first launch fills whole waves of SMs). GPTQ-order and
        AutoAWQ gemm words with plain scales; packed zeros and AWQ words hold 32 / bits columns a word, so the
        bounds must fall on word edges."""
        if self.codes not in (CODES_ALONG_K, CODES_ALONG_N_AWQ) or self.scales_layout != SCALES_PLAIN \
                or self.zeros_layout not in (ZEROS_ALONG_N, ZEROS_ALONG_N_AWQ, ZEROS_INT) or self.x_perm is not None:
            raise ValueError(f"{self.source or 'layer'}: no column views of {self.codes} codes with "
                             f"{self.zeros_layout} zeros and {self.scales_layout} scales")
        per = 32 // self.bits if 32 % self.bits == 0 else 0
        packed = self.codes == CODES_ALONG_N_AWQ or self.zeros_layout != ZEROS_INT
        if not 0 <= start < stop <= self.out_features or (packed and (not per or start % per or stop % per)):
            raise ValueError(f"{self.source or 'layer'}: columns [{start}, {stop}) are not a range within its "
                             f"{self.out_features} on {per or '(no)'}-column word edges")
        words = self.qweight[:, start // per:stop // per] if self.codes == CODES_ALONG_N_AWQ else self.qweight[:, start:stop]
        zeros = self.zeros[:, start:stop] if self.zeros_layout == ZEROS_INT else self.zeros[:, start // per:stop // per]
        return dataclasses.replace(self, out_features=stop - start, qweight=words, scales=self.scales[:, start:stop],
                                   zeros=zeros)

    @classmethod
    def from_quant_tensor(cls, qt: QuantTensor, source: str = "canonical") -> "PackedWeight":
        return cls(CODES_ALONG_K, ZEROS_INT, qt.bits, qt.in_features, qt.out_features, qt.group_size,
                   qt.qweight, qt.scales, qt.zeros.astype(np.int32), 0, qt.g_idx, source)
