"""A readable model: a checkpoint plus the format that reads it, seen as a stream of modules.

``Source.modules()`` names the quantized linears, ``read(m)`` returns one canonical tensor, and
``passthrough()`` lists every other tensor (embeddings, norms, biases, lm_head), copied as bytes.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from . import formats, hub

from .checkpoint import Checkpoint
from .errors import FormatError, InputError
from .gguf_checkpoint import open_gguf
from .turbomind_checkpoint import open_turbomind
from .formats.base import Detection, Format
from .tensor import QuantTensor

KNOWN_UNSUPPORTED: dict[str, str] = {}  # quant_method -> the issue that will read it


class Source:
    def __init__(self, ckpt: Checkpoint, fmt: Format, det: Detection):
        self.ckpt, self.format, self.detection = ckpt, fmt, det
        self._modules = fmt.modules(ckpt, det)
        consumed = {t for m in self._modules for t in fmt.module_tensors(ckpt, det, m)}
        self._passthrough = [n for n in ckpt.names() if n not in consumed]

    @property
    def path(self) -> Path:
        return self.ckpt.root

    def modules(self) -> list[str]:
        return list(self._modules)

    def read(self, module: str) -> QuantTensor:
        return self.format.read(self.ckpt, self.detection, module)

    def packed(self, module: str, qt: QuantTensor | None = None):
        """The module's tensors in the format's own layout (:class:`repack.kernels.packed.PackedWeight`);
        ``qt``: the module as :meth:`read` returned it, to skip reading it again."""
        return self.format.packed(self.ckpt, self.detection, module, qt)

    def passthrough(self) -> list[str]:
        return list(self._passthrough)

    def linear_modules(self) -> list[str]:
        """Modules that are linears but not quantized here (e.g. lm_head), for skip lists."""
        return [n[:-7] for n in self._passthrough if n.endswith(".weight") and len(self.ckpt.info(n).shape) == 2
                and re.search(r"(^|\.)(lm_head|[a-z_]*proj|fc\d?|dense[a-z_0-9]*)$", n[:-7])]


def open_source(path: str | os.PathLike, fmt: str | None = None) -> Source:
    """Open a model folder (or a Hugging Face repo id ``org/name[@revision]``) and detect its
    format from its data (``fmt`` forces one)."""
    folder, link_root = hub.resolve(path)
    gguf_file = open_gguf(folder)
    if gguf_file is not None:  # a GGUF file (or a folder holding one) is read by the gguf format only
        if fmt not in (None, "gguf"):
            raise FormatError(f"{gguf_file.root}: is a GGUF file; it can only be read as gguf")
        f = formats.get("gguf")
        return Source(gguf_file, f, f.detect(gguf_file))
    workspace = open_turbomind(folder)
    if workspace is not None:  # an lmdeploy convert workspace is read by the turbomind format only
        if fmt not in (None, "turbomind"):
            raise FormatError(f"{workspace.root}: is a TurboMind workspace; it can only be read as turbomind")
        f = formats.get("turbomind")
        return Source(workspace, f, f.detect(workspace))
    ckpt = Checkpoint.open(folder, link_root)
    if fmt is not None:
        f = formats.get(fmt)
        det = f.detect(ckpt)
        if det is None:
            raise FormatError(f"{ckpt.root}: is not a {fmt} checkpoint")
        return Source(ckpt, f, det)
    method = str((ckpt.config.get("quantization_config") or {}).get("quant_method", "")).lower()
    # the config's label picks who looks first; the data still has to agree with the layout
    for f in sorted(formats.all_formats(), key=lambda f: method not in f.labels):
        det = f.detect(ckpt)
        if det is not None:
            return Source(ckpt, f, det)
    if method in KNOWN_UNSUPPORTED:
        raise FormatError(f"{ckpt.root}: quant_method {method!r} is not readable yet ({KNOWN_UNSUPPORTED[method]})")
    if method:
        raise FormatError(f"{ckpt.root}: unknown quant_method {method!r}; readable formats: "
                          + ", ".join(f.name for f in formats.all_formats()))
    raise FormatError(f"{ckpt.root}: no registered format recognises these tensors")


LINEAR_IN_BLOCK = re.compile(r"^(?P<m>.*\.layers\.\d+\..*)\.weight$")


class RtnSource(Source):
    """A float model seen as quantized with round-to-nearest, computed one module at a time."""

    def __init__(self, ckpt: Checkpoint, bits: int = 4, group_size: int = 128, sym: bool = True):
        if formats.get("dense").detect(ckpt) is None:
            raise InputError(f"{ckpt.root}: not a float model")
        self.bits, self.group_size, self.sym = bits, group_size, sym
        self.ckpt = ckpt
        self.format = formats.get("dense")
        self.detection = Detection("rtn", f"{bits}-bit g{group_size} {'sym' if sym else 'asym'}")
        self._modules = [LINEAR_IN_BLOCK.match(n)["m"] for n in ckpt.names()
                         if LINEAR_IN_BLOCK.match(n) and len(ckpt.info(n).shape) == 2 and "norm" not in n]
        consumed = {f"{m}.weight" for m in self._modules}
        self._passthrough = [n for n in ckpt.names() if n not in consumed]

    def packed(self, module: str, qt: QuantTensor | None = None):
        from .kernels.packed import PackedWeight
        return PackedWeight.from_quant_tensor(qt if qt is not None else self.read(module), "rtn")

    def read(self, module: str) -> QuantTensor:
        import torch  # quantizing a float model runs in torch

        from .dtypes import to_torch
        from .quantize.rtn import rtn_quantize

        w = to_torch(self.ckpt.get(f"{module}.weight"))
        scale_dtype = torch.float16 if w.dtype == torch.float32 else w.dtype
        return rtn_quantize(w, self.bits, self.group_size, self.sym, scale_dtype=scale_dtype)
