"""What the quantizer hands to :func:`repack.convert.convert`: its QuantTensors as the modules,
every other tensor of the input model passed through, and the tensors AWQ rewrote (norms whose
weights absorbed the inverse scales) served from memory in their original dtype."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch

from ..formats.base import Detection
from ..safetensors_header import TensorInfo, st_dtype
from ..source import Source
from ..tensor import QuantTensor


class OverlayCheckpoint:
    """A checkpoint with some tensors replaced by in-memory ones (same names, dtypes and shapes)."""

    def __init__(self, base, replaced: dict[str, torch.Tensor]):
        self.base, self.replaced = base, replaced
        self.root, self.config, self.link_root = base.root, base.config, getattr(base, "link_root", base.root)

    def names(self) -> list[str]:
        return self.base.names()

    def __contains__(self, name: str) -> bool:
        return name in self.base

    def info(self, name: str) -> TensorInfo:
        if name in self.replaced:
            t = self.replaced[name]
            nbytes = t.numel() * t.element_size()
            return TensorInfo(name, st_dtype(t.dtype), tuple(t.shape), Path(self.root), 0, nbytes)
        return self.base.info(name)

    def get(self, name: str, rows: int | None = None) -> torch.Tensor:
        if name in self.replaced:
            t = self.replaced[name]
            return (t if rows is None else t[:rows]).clone()
        return self.base.get(name, rows)

    def iter_raw(self, name: str) -> Iterator[bytes]:
        if name in self.replaced:
            yield self.replaced[name].contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        else:
            yield from self.base.iter_raw(name)

    def side_files(self) -> list[Path]:
        return self.base.side_files()


class QuantizedSource(Source):
    """A quantized model held as QuantTensors (a 4-bit model is ~1/4 of its fp16 size)."""

    def __init__(self, base: Source, quantized: dict[str, QuantTensor], replaced: dict[str, torch.Tensor], label: str):
        self.ckpt = OverlayCheckpoint(base.ckpt, replaced)
        self.format = base.format
        self.detection = Detection("quantize", label)
        self._quantized = quantized
        self._modules = sorted(quantized)
        consumed = {f"{m}.weight" for m in quantized}
        self._passthrough = [n for n in base.passthrough() if n not in consumed]

    def read(self, module: str) -> QuantTensor:
        return self._quantized[module]

    def packed(self, module: str, qt: QuantTensor | None = None):
        from ..kernels.packed import PackedWeight
        return PackedWeight.from_quant_tensor(qt if qt is not None else self.read(module), "quantize")
