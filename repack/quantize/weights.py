"""The float weights of any readable model, by tensor name: a dense tensor as stored, a quantized
linear's ``.weight`` dequantized (the reference kernel's math: fp32 ``s * (q - z)``)."""

from __future__ import annotations

import torch

from ..dtypes import to_torch, torch_dtype
from ..errors import InputError
from ..source import Source
from ..tensor import QuantTensor


class ModelWeights:
    def __init__(self, source: Source):
        self.source = source
        self.quantized = set(source.modules())

    def quant(self, module: str) -> QuantTensor | None:
        return self.source.read(module) if module in self.quantized else None

    def has(self, name: str) -> bool:
        return name in self.source.ckpt or (name.endswith(".weight") and name[:-7] in self.quantized)

    def get(self, name: str) -> torch.Tensor:
        """fp32 tensor ``name`` (e.g. ``model.layers.0.mlp.up_proj.weight``)."""
        if name.endswith(".weight") and name[:-7] in self.quantized:
            return to_torch(self.source.read(name[:-7]).dequantize(torch.float32))
        if name not in self.source.ckpt:
            raise InputError(f"{self.source.path}: tensor '{name}' not found (the model's tensor names "
                             "must follow its Hugging Face architecture; convert it to auto_gptq or dense first)")
        return to_torch(self.source.ckpt.get(name)).to(torch.float32)

    def bias(self, module: str) -> torch.Tensor | None:
        return self.get(module + ".bias") if module + ".bias" in self.source.ckpt else None

    def dtype(self, name: str) -> torch.dtype:
        return torch_dtype(self.source.ckpt.get(name).dtype)
