"""inspect: what a checkpoint is, layer by layer, and which targets it converts to exactly."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field

from . import formats
from .dtypes import name as dtype_name
from .fit import fit
from .progress import progress_bar
from .source import Source, open_source
from .tensor import QuantTensor



@dataclass
class LayerInfo:
    module: str
    shape: tuple[int, int]
    bits: int
    group_size: int
    sym: bool
    act_order: bool
    scale_dtype: str


@dataclass
class Inspection:
    path: str
    format: str
    variant: str
    layers: list[LayerInfo] = field(default_factory=list)
    passthrough: int = 0
    notes: list[str] = field(default_factory=list)
    targets: dict[str, str] = field(default_factory=dict)  # "format/variant" -> exact | lossy | unsupported

    def summary(self) -> dict:
        def common(attr):
            values = Counter(getattr(l, attr) for l in self.layers)
            return values.most_common(1)[0][0] if len(values) == 1 else ("mixed" if values else None)
        return {"bits": common("bits"), "group_size": common("group_size"), "sym": common("sym"),
                "act_order": common("act_order"), "scale_dtype": common("scale_dtype")}

    def to_dict(self) -> dict:
        return {"path": self.path, "format": self.format, "variant": self.variant, **self.summary(),
                "quantized_layers": len(self.layers), "passthrough_tensors": self.passthrough,
                "notes": self.notes, "targets": self.targets,
                "layers": [{**vars(l), "shape": list(l.shape)} for l in self.layers]}


def inspect(src: str | os.PathLike | Source, progress: bool = False) -> Inspection:
    source = src if isinstance(src, Source) else open_source(src)
    det = source.detection
    result = Inspection(str(source.path), det.format, det.variant, passthrough=len(source.passthrough()),
                        notes=list(det.notes))
    targets = [(f, v) for f in formats.all_formats() for v in f.variants if f.quantized or v == "auto"]
    worst: dict[str, int] = {}
    rank = {"exact": 0, "lossy": 1, "unsupported": 2}
    for m in progress_bar(source.modules(), "inspect", progress):
        qt: QuantTensor = source.read(m)
        result.layers.append(LayerInfo(m, qt.shape, qt.bits, qt.group_size, qt.sym, qt.act_order,
                                       dtype_name(qt.scales.dtype)))
        for f, v in targets:
            key = f"{f.name}/{v}"
            status = fit(qt, f.capabilities(v), measure=False).status
            worst[key] = max(worst.get(key, 0), rank[status])
    names = {r: s for s, r in rank.items()}
    result.targets = {k: names[r] for k, r in worst.items()} if source.modules() else {}
    return result
