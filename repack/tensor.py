"""The canonical quantized linear weight every format reads into and writes from.

``W[n, k] = scales[g(k), n] * (q[k, n] - zeros[g(k), n])`` with ``g(k) = g_idx[k]`` when the layer
has a real act-order group map, else ``k // group_size``.

- ``qweight``: int32 ``[packed_rows(K, bits), N]``, codes packed along K in GPTQ word order
  (see :mod:`repack.packing`); padding codes past K are zero.
- ``scales``: ``[G, N]`` float (fp16/bf16/fp32 kept from the source), ``G = ceil(K / group_size)``.
- ``zeros``: int16 ``[G, N]``, the true zero point. Its range is ``0 .. 2**bits`` inclusive: a GPTQ
  v1 checkpoint can only hold zeros 1..2**bits (it stores z-1), so 2**bits occurs in real files.
- ``g_idx``: int32 ``[K]`` or ``None``. A g_idx equal to ``k // group_size`` is dropped on
  construction: sequential groups are never called act-order.
- ``sym``: symmetric quantization, i.e. every zero is ``2**(bits-1)``.
- ``offsets``: float ``[G, N]`` or ``None``. Formats whose offset is a float (GGUF Q4_1/Q5_1:
  ``w = d*q + m``) are held exactly with it: then ``W[n, k] = scales[g, n] * q[k, n] + offsets[g, n]``
  (products and sum in fp32, as llama.cpp and gguf-py dequantize), and every zero is 0. Integer
  zeros can hold it only where ``-m/d`` is an integer in range (:func:`repack.fit.fit` checks).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .dtypes import FLOAT_DTYPES, as_array, as_dtype
from .packing import SUPPORTED_BITS, pack_rows, packed_rows, unpack_rows


def int_bounds(t) -> tuple[int, int]:
    """(min, max) of a non-empty integer array (numpy, or torch: its CPU reductions over int16 took
    ~7 ms per [32, 11008] zeros tensor here, numpy's 0.07 ms)."""
    a = as_array(t)
    return int(a.min()), int(a.max())


def num_groups(in_features: int, group_size: int) -> int:
    return 1 if group_size == -1 else -(-in_features // group_size)


class Deferred:
    """Canonical words made on first use: a reader whose layout needs a transform to reach them
    (AWQ's nibble transpose) hands this over as ``qweight``, so a plan that needs only zeros and
    scales never pays for it (an awq -> gptq plan transposed every code of the model)."""

    dtype = np.dtype(np.int32)

    def __init__(self, shape: tuple[int, int], make):
        self.shape = tuple(shape)
        self.ndim = len(self.shape)
        self._make = make

    def make(self) -> np.ndarray:
        words = as_array(self._make())
        if words.dtype != np.int32 or tuple(words.shape) != tuple(self.shape):
            raise ValueError(f"deferred words came out {words.dtype} {tuple(words.shape)}, declared {tuple(self.shape)}")
        return words


class _Words:
    """The ``qweight`` field: a tensor, or a :class:`Deferred` made into one when first read."""

    def __get__(self, obj, owner=None):
        if obj is None:
            raise AttributeError("qweight")  # a dataclass field without a default
        got = obj.__dict__["_qweight"]
        if isinstance(got, Deferred):
            got = obj.__dict__["_qweight"] = got.make()
        return got

    def __set__(self, obj, value) -> None:
        obj.__dict__["_qweight"] = value if isinstance(value, Deferred) else as_array(value)


@dataclass(frozen=True, eq=False)
class QuantTensor:
    """Every field is a numpy array (conversion never needs torch); the constructor also takes torch
    tensors (quantizers, kernels) and keeps their values, bf16 bits included."""

    qweight: np.ndarray = _Words()  # int32 words, or a Deferred (made on first read)
    scales: np.ndarray
    zeros: np.ndarray
    bits: int
    group_size: int
    in_features: int
    g_idx: np.ndarray | None = None
    sym: bool = False
    offsets: np.ndarray | None = None

    def __post_init__(self) -> None:
        for name in ("scales", "zeros", "g_idx", "offsets"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, np.ndarray):
                object.__setattr__(self, name, as_array(value))
        if self.bits not in SUPPORTED_BITS:
            raise ValueError(f"bits must be one of {SUPPORTED_BITS}, got {self.bits}")
        if self.group_size != -1 and self.group_size <= 0:
            raise ValueError(f"group_size must be -1 or positive, got {self.group_size}")
        K, G = self.in_features, self.num_groups
        if K <= 0:
            raise ValueError(f"in_features must be positive, got {K}")
        words = self._words  # shape and dtype only: a Deferred stays deferred
        if words.dtype != np.int32 or words.ndim != 2:
            raise ValueError(f"qweight must be a 2-D int32 tensor, got {words.dtype} {tuple(words.shape)}")
        N = words.shape[1]
        if words.shape[0] != packed_rows(K, self.bits):
            raise ValueError(f"qweight has {words.shape[0]} rows, {K} {self.bits}-bit codes need {packed_rows(K, self.bits)}")
        if self.scales.dtype not in FLOAT_DTYPES or tuple(self.scales.shape) != (G, N):
            raise ValueError(f"scales must be float [{G}, {N}], got {self.scales.dtype} {tuple(self.scales.shape)}")
        if tuple(self.zeros.shape) != (G, N):
            raise ValueError(f"zeros must be [{G}, {N}], got {tuple(self.zeros.shape)}")
        if self.zeros.dtype != np.int16:
            object.__setattr__(self, "zeros", self.zeros.astype(np.int16))
        if G and N:
            zmin, zmax = int_bounds(self.zeros)
            if zmin < 0 or zmax > 2**self.bits:
                raise ValueError(f"zeros must lie in 0..{2**self.bits}, found {zmin}..{zmax}")
            if self.sym and (zmin, zmax) != (2 ** (self.bits - 1),) * 2:
                raise ValueError(f"sym=True but some zeros differ from {2 ** (self.bits - 1)}")
        if self.offsets is not None:
            if self.offsets.dtype not in FLOAT_DTYPES or tuple(self.offsets.shape) != (G, N):
                raise ValueError(f"offsets must be float [{G}, {N}], got {self.offsets.dtype} {tuple(self.offsets.shape)}")
            if self.sym or self.zeros.any():
                raise ValueError("a tensor with float offsets has no integer zeros (all 0, sym=False)")
        if self.g_idx is not None:
            g = self.g_idx
            if g.ndim != 1 or g.shape[0] != K:
                raise ValueError(f"g_idx must be [{K}], got {tuple(g.shape)}")
            if K:
                gmin, gmax = int_bounds(g)
                if gmin < 0 or gmax >= G:
                    raise ValueError(f"g_idx values must lie in 0..{G - 1}, found {gmin}..{gmax}")
            g = g.astype(np.int32, copy=False)
            object.__setattr__(self, "g_idx", None if np.array_equal(g, self.sequential_g_idx()) else g)

    # -- shape facts -------------------------------------------------------------------------
    @property
    def _words(self):
        return self.__dict__["_qweight"]

    @property
    def out_features(self) -> int:
        return self._words.shape[1]

    @property
    def shape(self) -> tuple[int, int]:
        """The logical weight shape ``(N, K)``, as torch.nn.Linear stores it."""
        return (self.out_features, self.in_features)

    @property
    def num_groups(self) -> int:
        return num_groups(self.in_features, self.group_size)

    @property
    def effective_group_size(self) -> int:
        return self.in_features if self.group_size == -1 else self.group_size

    @property
    def act_order(self) -> bool:
        return self.g_idx is not None

    def sequential_g_idx(self) -> np.ndarray:
        return np.arange(self.in_features, dtype=np.int32) // np.int32(self.effective_group_size)

    def group_index(self) -> np.ndarray:
        """int64 [K]: the group of every input channel (g_idx or sequential)."""
        return (self.g_idx if self.g_idx is not None else self.sequential_g_idx()).astype(np.int64)

    # -- values -------------------------------------------------------------------------------
    @cached_property
    def _codes(self) -> np.ndarray:
        return unpack_rows(self.qweight, self.bits, self.in_features)

    def codes(self) -> np.ndarray:
        """uint8 [K, N]: the unpacked codes."""
        return self._codes

    def dequantize(self, dtype=None) -> np.ndarray:
        """Float [N, K] numpy array: ``s * (q - z)`` (or ``s * q + offset``) computed in fp32 and
        cast once, to ``dtype`` (numpy or torch dtype) or the scales' dtype.
        :func:`repack.dtypes.to_torch` makes it a tensor."""
        g = self.group_index()
        q = self.codes().astype(np.float32)
        s = self.scales.astype(np.float32)[g]
        with np.errstate(invalid="ignore", over="ignore"):  # inf/nan scales propagate, as in any float math
            if self.offsets is not None:
                w = q * s + self.offsets.astype(np.float32)[g]
            else:
                w = (q - self.zeros.astype(np.float32)[g]) * s
            return np.ascontiguousarray(w.T).astype(as_dtype(dtype) if dtype is not None else self.scales.dtype, copy=False)

    def columns(self, start: int, stop: int) -> "QuantTensor":
        """The output channels ``start:stop`` as their own tensor (for streaming a large layer)."""
        part = lambda a: np.ascontiguousarray(a[:, start:stop])  # noqa: E731
        return dataclasses.replace(self, qweight=part(self.qweight), scales=part(self.scales), zeros=part(self.zeros),
                                   offsets=None if self.offsets is None else part(self.offsets))

    def replace(self, **changes) -> "QuantTensor":
        return dataclasses.replace(self, **{"qweight": self._words, **changes})  # a Deferred stays deferred

    @classmethod
    def from_codes(cls, codes, scales, zeros, bits: int, group_size: int, g_idx=None, sym: bool = False,
                   offsets=None) -> "QuantTensor":
        """Build from unpacked codes [K, N] (any integer array or tensor)."""
        c = as_array(codes)
        if c.size and (int(c.min()) < 0 or int(c.max()) >= 2**bits):
            raise ValueError(f"codes must lie in 0..{2**bits - 1}")
        zeros = as_array(zeros).astype(np.int16)
        g = None if g_idx is None else as_array(g_idx).astype(np.int32)
        return cls(pack_rows(c, bits), scales, zeros, bits, group_size, c.shape[0], g, sym, offsets)

    def describe(self) -> str:
        gs = "per-channel" if self.group_size == -1 else f"g{self.group_size}"
        return f"{self.bits}-bit {gs} {'sym' if self.sym else 'float-offset' if self.offsets is not None else 'asym'}{' act-order' if self.act_order else ''} [{self.out_features}x{self.in_features}]"
