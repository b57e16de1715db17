"""Intel AutoRound checkpoints (``quant_method: auto-round``), one variant per ``packing_format``.

AutoRound writes the tensors of an existing layout and says which in ``packing_format``
(auto-round export_to_autoround/export.py ``dynamic_import_quant_linear_for_packing``; hf.md §3.2,
checked against real exports in hf-observed.md):

| variant     | packing_format          | layout                                   | zeros stored |
|-------------|-------------------------|------------------------------------------|--------------|
| ``gptq``    | ``auto_round:auto_gptq``| GPTQ (qweight [K*b/32, N]), no g_idx     | z - 1 (v1)   |
| ``awq``     | ``auto_round:auto_awq`` | AutoAWQ gemm, 4-bit                      | z            |
| ``gptqmodel``| ``auto_round:gptqmodel``| GPTQ with g_idx                         | z (v2)       |
| ``native``  | ``auto_round``          | GPTQ, no g_idx                           | z (v2)       |

Older exports say ``intel/auto-round`` and name the packing ``backend``; both are read. Per-module
settings live in ``extra_config`` (see overrides.py).
"""

from __future__ import annotations

import re


from ..checkpoint import Checkpoint, TensorSpec
from ..errors import FormatError
from ..tensor import QuantTensor
from .awq import AwqFormat
from .base import Capabilities, Detection, Format, Scheme, quant_config
from .gptq import GptqFormat
from .overrides import SKIP, clean_settings, round_lookup

PACKING = {"gptq": "auto_round:auto_gptq", "awq": "auto_round:auto_awq", "gptqmodel": "auto_round:gptqmodel",
           "native": "auto_round"}
_INNER = {"gptq": "v1", "gptqmodel": "v2", "native": "v2", "awq": "gemm"}


def variant_of_packing(packing: str) -> str:
    p = packing.lower()
    if "awq" in p:
        return "awq"
    if "gptqmodel" in p:
        return "gptqmodel"
    if "gptq" in p:
        return "gptq"
    return "native"


def block_prefix(modules) -> str | None:
    """The repeated-block prefix, e.g. ``model.layers`` for ``model.layers.3.mlp.up_proj``."""
    for m in modules:
        hit = re.match(r"^(.*?)\.\d+\.", m)
        if hit:
            return hit[1]
    return None


class AutoRoundFormat(Format):
    name = "auto_round"
    labels = ("auto-round", "intel/auto-round")
    variants = ("gptq", "awq", "gptqmodel", "native")
    description = "Intel AutoRound: GPTQ or AWQ tensors named by packing_format, per-layer extra_config"

    def __init__(self):
        self._gptq, self._awq = GptqFormat(), AwqFormat()

    def _inner(self, variant: str) -> Format:
        return self._awq if variant == "awq" else self._gptq

    # -- reading ------------------------------------------------------------------------------
    def detect(self, ckpt: Checkpoint) -> Detection | None:
        qc = quant_config(ckpt)
        if str(qc.get("quant_method", "")).lower() not in self.labels:
            return None  # unlabelled GPTQ/AWQ tensors belong to those formats
        packing = qc.get("packing_format") or qc.get("format") or qc.get("backend") or "auto_round:auto_gptq"
        if not isinstance(packing, str):
            raise FormatError(f"{ckpt.root / 'config.json'}: packing_format must be a string, got {packing!r}")
        if any(t in packing.lower() for t in ("fp8", "nvfp", "mxfp", "gguf", "fake")):
            raise FormatError(f"{ckpt.root / 'config.json'}: auto-round packing_format {packing!r} is not an integer layout repack reads")
        variant = variant_of_packing(packing)
        extra = qc.get("extra_config") or {}
        if not isinstance(extra, dict):
            raise FormatError(f"{ckpt.root / 'config.json'}: extra_config must be an object")
        modules = [n[:-8] for n in ckpt.names() if n.endswith(".qweight")]
        try:
            labels = {m: o for m in modules if isinstance(o := round_lookup(extra, m), dict)}
        except ValueError as e:
            raise FormatError(f"{ckpt.root / 'config.json'}: quantization_config.{e}") from None
        inner = self._gptq.detect(ckpt, labels) if variant != "awq" else self._awq.detect(ckpt)
        if inner is None:
            raise FormatError(f"{ckpt.root}: config says auto-round {packing!r} but the tensors are not in that layout")
        try:
            base = clean_settings({k: qc.get(k) for k in ("bits", "group_size", "sym")}, "bits/group_size/sym")
        except ValueError as e:
            raise FormatError(f"{ckpt.root / 'config.json'}: quantization_config {e}") from None
        det = Detection(self.name, variant, bits=base["bits"], group_size=base["group_size"], sym=base["sym"],
                        notes=[n for n in inner.notes if "quant_method" not in n])
        if variant != "awq":
            # the packing names the zero convention; the data check still speaks when it disagrees
            det.notes = [n for n in det.notes if "checkpoint_format" not in n]
            data = inner.options["data_variant"]
            if data and data != _INNER[variant]:
                det.notes.append(f"packing_format {packing!r} implies {_INNER[variant]} zeros but the stored zeros are {data}; reading as {data}")
            det.bits = inner.bits
        det.options["module_labels"] = labels
        det.options["inner"] = (data or _INNER[variant]) if variant != "awq" else "gemm"
        return det

    def _inner_det(self, det: Detection) -> Detection:
        return Detection(self._inner(det.variant).name, det.options["inner"], det.bits, det.group_size, det.sym,
                         options={"module_labels": det.options["module_labels"]})

    def modules(self, ckpt: Checkpoint, det: Detection) -> list[str]:
        return self._inner(det.variant).modules(ckpt, self._inner_det(det))

    def module_tensors(self, ckpt: Checkpoint, det: Detection, module: str) -> list[str]:
        return self._inner(det.variant).module_tensors(ckpt, self._inner_det(det), module)

    def read(self, ckpt: Checkpoint, det: Detection, module: str) -> QuantTensor:
        return self._inner(det.variant).read(ckpt, self._inner_det(det), module)

    def packed(self, ckpt: Checkpoint, det: Detection, module: str, qt: QuantTensor | None = None):
        return self._inner(det.variant).packed(ckpt, self._inner_det(det), module, qt)

    # -- writing ------------------------------------------------------------------------------
    def capabilities(self, variant: str) -> Capabilities:
        return self._inner(variant).capabilities(_INNER[variant])

    def _keep(self, variant: str, qt: QuantTensor, name: str) -> bool:
        # auto-round's own GPTQ-layout exports carry no g_idx unless the layer is act-ordered
        return not (name.endswith(".g_idx") and variant in ("gptq", "native") and not qt.act_order)

    def specs(self, module: str, qt: QuantTensor, variant: str) -> list[TensorSpec]:
        return [s for s in self._inner(variant).specs(module, qt, _INNER[variant]) if self._keep(variant, qt, s.name)]

    def pack(self, module: str, qt: QuantTensor, variant: str) -> dict:
        return {n: t for n, t in self._inner(variant).pack(module, qt, _INNER[variant]).items()
                if self._keep(variant, qt, n)}

    def quantization_config(self, scheme: Scheme, variant: str) -> dict:
        if variant == "awq":
            self._awq.quantization_config(scheme, "gemm")  # the AWQ layout's limits apply
        blocks = block_prefix(scheme.quantized)
        extra: dict[str, dict] = {}
        for m, d in scheme.override_dicts().items():
            inside = blocks is not None and m.startswith(blocks + ".")
            extra[m] = d if inside else dict(zip(("bits", "group_size", "sym"), scheme.setting(m)))
        for m in scheme.quantized:  # quantized layers outside the blocks (lm_head) get their full scheme
            if m not in extra and (blocks is None or not m.startswith(blocks + ".")):
                extra[m] = dict(zip(("bits", "group_size", "sym"), scheme.setting(m)))
        for m in scheme.unquantized_linears:  # float layers inside the blocks
            if blocks is not None and m.startswith(blocks + "."):
                extra[m] = {"bits": 16, "data_type": "float"}
        qc = {"quant_method": "auto-round", "packing_format": PACKING[variant], "bits": scheme.bits,
              "group_size": scheme.group_size, "sym": scheme.sym, "data_type": "int", "act_bits": 16}
        if blocks:
            qc["block_name_to_quantize"] = blocks
        if extra:
            qc["extra_config"] = extra
        return qc


__all__ = ["AutoRoundFormat", "PACKING", "SKIP"]
