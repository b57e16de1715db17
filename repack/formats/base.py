"""The format contract: detect, list modules, read one module, declare and pack its tensors.

Each format also declares what it can hold (:class:`Capabilities`) so that convert can decide,
before writing anything, whether every layer fits exactly, fits only approximately, or not at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from ..dtypes import F16

from ..checkpoint import Checkpoint, TensorSpec
from ..tensor import QuantTensor

if TYPE_CHECKING:
    from ..kernels.packed import PackedWeight


@dataclass(frozen=True)
class Capabilities:
    """What one variant of a format can represent."""

    bits: tuple[int, ...]
    zero_range: Callable[[int], tuple[int, int]]  # bits -> inclusive range of true zeros it can store
    act_order: bool
    shape_problem: Callable[[int, int, int, int], str | None]  # (K, N, bits, group_size) -> why not
    scale_dtypes: tuple[np.dtype, ...] | None = None  # None: any float dtype
    float_offsets: bool = False  # can hold W = s*q + m with a float m (QuantTensor.offsets)
    # a format's own fitting step, run last: (tensor, fit so far) -> tensor, adding notes/loss/refusals to the fit
    check: Callable[[QuantTensor, Any], QuantTensor] | None = None


def any_shape(K: int, N: int, bits: int, group_size: int) -> str | None:
    return None


def full_zero_range(bits: int) -> tuple[int, int]:
    return (0, 2**bits)


@dataclass
class Detection:
    """What a checkpoint is, from its data; ``notes`` say where its config.json disagrees."""

    format: str
    variant: str
    bits: int | None = None
    group_size: int | None = None
    sym: bool | None = None
    notes: list[str] = field(default_factory=list)
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Scheme:
    """The model-level quantization settings a writer puts into config.json."""

    bits: int
    group_size: int
    sym: bool
    act_order: bool
    quantized: tuple[str, ...]
    unquantized_linears: tuple[str, ...] = ()
    scale_dtype: np.dtype = F16
    # modules whose (bits, group_size, sym) differ from the model-wide ones above
    overrides: tuple[tuple[str, tuple[int, int, bool]], ...] = ()

    def setting(self, module: str) -> tuple[int, int, bool]:
        return dict(self.overrides).get(module, (self.bits, self.group_size, self.sym))

    def override_dicts(self) -> dict[str, dict]:
        """module -> only the keys that differ from the model-wide scheme."""
        out = {}
        for m, (b, g, s) in self.overrides:
            d = {k: v for k, v, base in (("bits", b, self.bits), ("group_size", g, self.group_size), ("sym", s, self.sym))
                 if v != base}
            out[m] = d
        return out


def settings_from_overrides(base: dict, override: dict | None) -> dict:
    """A module's effective settings: the model-wide ones with its own keys on top."""
    return {**base, **(override or {})}


class Format:
    name: str = ""
    variants: tuple[str, ...] = ("default",)
    description: str = ""
    labels: tuple[str, ...] = ()  # quant_method values in config.json that name this format
    quantized: bool = True
    tensor_parallel: bool = False  # writes files pre-split per rank: writer() takes tp=N

    @property
    def default_variant(self) -> str:
        return self.variants[0]

    # -- reading ------------------------------------------------------------------------------
    def detect(self, ckpt: Checkpoint) -> Detection | None:
        raise NotImplementedError

    def modules(self, ckpt: Checkpoint, det: Detection) -> list[str]:
        """Names of the quantized linear modules, e.g. ``model.layers.0.self_attn.q_proj``."""
        return []

    def module_tensors(self, ckpt: Checkpoint, det: Detection, module: str) -> list[str]:
        """The source tensors one module is made of (everything else passes through)."""
        return []

    def read(self, ckpt: Checkpoint, det: Detection, module: str) -> QuantTensor:
        raise NotImplementedError

    def packed(self, ckpt: Checkpoint, det: Detection, module: str, qt: QuantTensor | None = None) -> "PackedWeight":
        """The module's tensors as stored, for a kernel that reads this layout directly; ``qt`` is
        the module as :meth:`read` returned it, when the caller has it already. The default hands
        over the canonical layout; formats with their own layout override it."""
        from ..kernels.packed import PackedWeight
        return PackedWeight.from_quant_tensor(qt if qt is not None else self.read(ckpt, det, module), f"{self.name}/{det.variant}")

    # -- writing ------------------------------------------------------------------------------
    def capabilities(self, variant: str) -> Capabilities:
        raise NotImplementedError

    def specs(self, module: str, qt: QuantTensor, variant: str) -> list[TensorSpec]:
        raise NotImplementedError

    def pack(self, module: str, qt: QuantTensor, variant: str) -> dict[str, np.ndarray | Iterator[bytes]]:
        """The output tensors of one module, in the order :meth:`specs` declares them: an array, or
        its bytes in chunks when materialising it whole would cost more than the input does."""
        raise NotImplementedError

    def quantization_config(self, scheme: Scheme, variant: str) -> dict | None:
        raise NotImplementedError

    def extra_files(self, scheme: Scheme, variant: str) -> dict[str, dict]:
        return {}

    def writer(self, target, specs: list[TensorSpec], *, force: bool, shard_size: int, source, config: dict,
               variant: str):
        """The output writer (a context manager with ``write(name, data)`` and ``finish(...)``):
        a sharded safetensors folder by default; a format with its own container overrides it."""
        from ..checkpoint import CheckpointWriter
        return CheckpointWriter(target, specs, force=force, shard_size=shard_size)

    def layout_problem(self, specs: list[TensorSpec], config: dict, variant: str, tp: int, where: str) -> None:
        """Raise UnsupportedError, naming the tensor, if the declared output cannot be laid out (e.g. a
        dim that does not split over ``tp`` ranks); run by convert before anything is written."""

    def output_notes(self, source) -> list[str]:
        """What the plan should say about writing ``source`` in this format (e.g. what is left out)."""
        return []


def quant_config(ckpt: Checkpoint) -> dict:
    return ckpt.config.get("quantization_config") or {}
