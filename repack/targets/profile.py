"""What an inference engine looks at when it loads a checkpoint: per quantized linear the settings
the data holds and the ones config.json states (engines decide from the config, so a mislabelled
checkpoint can pick the wrong kernel or read its zeros wrong)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .. import formats
from ..formats.base import quant_config, settings_from_overrides
from ..inspect import Inspection
from ..source import Source

# zero convention each GPTQ-layout writer uses (auto_round: by packing_format, formats/auto_round.py)
_ZEROS = {("auto_gptq", "v1"): "v1", ("auto_gptq", "v2"): "v2", ("auto_round", "gptq"): "v1",
          ("auto_round", "gptqmodel"): "v2", ("auto_round", "native"): "v2"}


@dataclass(frozen=True)
class Layer:
    module: str
    K: int
    N: int
    bits: int
    group_size: int
    sym: bool  # from the data: every zero is 2^(bits-1)
    act_order: bool  # from the data: a real g_idx
    label_sym: bool | None = None  # what config.json says for this module (None: not said)


@dataclass(frozen=True)
class Profile:
    format: str
    variant: str
    layers: tuple[Layer, ...]
    zeros: str | None = None  # GPTQ layouts: "v1" (stores z-1) or "v2" (stores z), from the data
    label_zeros: str | None = None  # ... as the config implies (checkpoint_format / packing_format)
    label_layout: str | None = None  # AWQ: the config's ``version``; Marlin B/s: "marlin" when labelled so
    label_desc_act: bool | None = None


def profile_of(source: Source, info: Inspection) -> Profile:
    det = source.detection
    qc = quant_config(source.ckpt)
    labels = det.options.get("module_labels", {})
    layers = tuple(Layer(l.module, l.shape[1], l.shape[0], l.bits, l.group_size, l.sym, l.act_order,
                         settings_from_overrides({"sym": det.sym}, labels.get(l.module)).get("sym"))
                   for l in info.layers)
    zeros = label_zeros = layout = None
    if det.format == "auto_gptq":
        zeros = det.variant
        label_zeros = "v2" if str(qc.get("checkpoint_format", qc.get("format", "gptq"))).lower() == "gptq_v2" else "v1"
    elif det.format == "auto_round" and det.variant != "awq":
        zeros, label_zeros = det.options.get("inner"), _ZEROS[("auto_round", det.variant)]
    elif det.format == "auto_awq":
        layout = str(qc.get("version", "gemm")).lower()
    elif det.format == "marlin" and (str(qc.get("checkpoint_format", "")).lower() == "marlin"
                                     or qc.get("is_marlin_format") is True):
        layout = "marlin"  # what makes vLLM choose its marlin method (override_quantization_method)
    desc_act = qc.get("desc_act") if isinstance(qc.get("desc_act"), bool) else None
    return Profile(det.format, det.variant, layers, zeros, label_zeros, layout, desc_act)


def converted(p: Profile, fmt: str, variant: str) -> Profile:
    """The profile ``repack convert --to fmt --variant variant`` writes: the same layers (narrow codes
    widened to the target's smallest wider width, or re-quantized to its widest, as fit() does) and a config that matches the data."""
    caps_bits = formats.get(fmt).capabilities(variant).bits if formats.get(fmt).quantized else None
    all_sym = all(l.sym for l in p.layers)
    layers = []
    for l in p.layers:
        bits = l.bits if not caps_bits or l.bits in caps_bits else \
            min((b for b in caps_bits if b > l.bits), default=max(caps_bits))  # lossy when narrower
        label = all_sym if fmt == "auto_awq" else l.sym  # AWQ has one zero_point flag per model
        layers.append(dataclasses.replace(l, bits=bits, label_sym=label))
    zeros = _ZEROS.get((fmt, variant))
    layout = variant if fmt == "auto_awq" else "marlin" if (fmt, variant) == ("marlin", "checkpoint") else None
    return Profile(fmt, variant, tuple(layers), zeros, zeros, layout,
                   any(l.act_order for l in p.layers))
