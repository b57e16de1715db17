"""Marlin layouts (:mod:`repack.formats.marlin_layout`), variants ``gptq``, ``awq`` and ``checkpoint``.

Per quantized linear ``<m>`` (K inputs, N outputs, G groups, b bits; every word order in
marlin_layout's docstring):

gptq — what vLLM's GPTQ-Marlin holds after ``gptq_marlin_repack`` (symmetric, ``W = s*(q - 2^(b-1))``):
- ``<m>.qweight`` int32 ``[K/16, N*16*b/32]``: the tile layout of the codes, rows in act-order
  order (Marlin row k' holds input row ``perm[k']``);
- ``<m>.scales`` ``[G, N]`` in group order, columns permuted (``marlin_permute_scales``);
- with act-order only: ``<m>.g_idx`` int32 ``[K]`` = g_idx sorted, ``<m>.g_idx_sort_indices``
  int32 ``[K]`` = perm (a stable argsort when repack writes it; any permutation is read).
awq — what vLLM's AWQ-Marlin holds after ``awq_marlin_repack`` (``W = s*(q - z)``):
- ``<m>.qweight`` as above (no act-order), ``<m>.scales`` as above, ``<m>.qzeros`` int32
  ``[G, N*b/32]`` (``marlin_zero_points``).
Neither layout exists on disk anywhere else: vLLM repacks GPTQ/AWQ checkpoints on the GPU at load
(kernels.md §1.2). repack writes them with its own label, ``quant_method: "repack-marlin"`` and
``marlin_variant``, so that no loader mistakes them for a format it knows; they exist to be
inspected, verified and converted back.
checkpoint — the serialized Marlin checkpoint (IST-DASLab ``Layer``, AutoGPTQ
``checkpoint_format: "marlin"`` QuantLinear, vLLM's ``marlin`` method; kernels.md §1.3):
- ``<m>.B`` int32 ``[K/16, 2N]``, ``<m>.s`` fp16 ``[G, N]``; 4-bit, symmetric (q - 8), group 128
  or -1, no act-order, K % 128 == 0, N % 256 == 0; ``<m>.bias`` passes through unpermuted.
- config: AutoGPTQ's (``quant_method: gptq``, ``checkpoint_format: marlin``) + quantize_config.json.
AutoAWQ ``version: "marlin"`` checkpoints (``WQLinear_Marlin``: ``qweight``/``scales``, the same
original layout) are read as the ``gptq`` variant.
"""

from __future__ import annotations

import numpy as np

from ..checkpoint import Checkpoint, TensorSpec
from ..dtypes import F16, is_float
from ..errors import InputError
from ..fit import cast_scales
from ..safetensors_header import st_dtype
from ..tensor import QuantTensor, num_groups
from . import marlin_layout as layout
from .base import Capabilities, Detection, Format, Scheme, quant_config

LABEL = "repack-marlin"
GROUPS = (-1, 32, 64, 128)  # vLLM MARLIN_SUPPORTED_GROUP_SIZES
CHECKPOINT_GROUPS = (-1, 128)  # marlin Layer.__init__, AutoGPTQ _validate_marlin_compatibility
NAMES = {"gptq": ("qweight", "scales"), "awq": ("qweight", "scales"), "checkpoint": ("B", "s")}


def _shape_problem(variant: str):
    groups, n_align = (CHECKPOINT_GROUPS, 256) if variant == "checkpoint" else (GROUPS, 64)

    def problem(K: int, N: int, bits: int, group_size: int) -> str | None:
        if group_size not in groups:
            return f"group_size {group_size} is not one Marlin ({variant}) takes: {', '.join(map(str, groups))}"
        if K % 128:
            return f"in_features {K} is not a multiple of 128 (Marlin thread_k)"
        if N % n_align:
            return f"out_features {N} is not a multiple of {n_align} (Marlin {'thread_n' if n_align == 256 else 'min_thread_n'})"
        return None
    return problem


def _check(variant: str):
    def check(t: QuantTensor, fit) -> QuantTensor:
        mid = 2 ** (t.bits - 1)
        if variant != "awq" and bool((t.zeros != mid).any()):
            fit.unsupported.append(f"asymmetric zeros: Marlin {variant} has the zero {mid} built in "
                                   "(uint4b8/uint8b128); the awq variant takes zero points")
            return t
        if variant == "checkpoint":
            t = cast_scales(t, F16, fit, "scales -> fp16 (exact; the Marlin checkpoint is fp16 only)",
                            "scales rounded to fp16 (the Marlin checkpoint is fp16 only)")
        return t.replace(sym=True) if variant != "awq" else t
    return check


class MarlinFormat(Format):
    name = "marlin"
    labels = ("marlin", LABEL)
    variants = ("gptq", "awq", "checkpoint")
    description = "Marlin tile layout: vLLM GPTQ-Marlin / AWQ-Marlin repacks, the B/s Marlin checkpoint"

    def capabilities(self, variant: str) -> Capabilities:
        bits = (4,) if variant == "checkpoint" else layout.MARLIN_BITS
        zero_range = (lambda b: (0, 2**b - 1)) if variant == "awq" else (lambda b: (0, 2**b))
        return Capabilities(bits=bits, zero_range=zero_range, act_order=variant == "gptq",
                            shape_problem=_shape_problem(variant), check=_check(variant))

    # -- reading ------------------------------------------------------------------------------
    def detect(self, ckpt: Checkpoint) -> Detection | None:
        qc = quant_config(ckpt)
        method = str(qc.get("quant_method", "")).lower()
        label = str(qc.get("checkpoint_format", "")).lower()
        if self._find(ckpt, "checkpoint"):
            det = Detection(self.name, "checkpoint", bits=4, sym=True, group_size=self._group_label(qc))
            if not (label == "marlin" or qc.get("is_marlin_format") is True or method == "marlin"):
                det.notes.append("config does not say checkpoint_format 'marlin', tensors are Marlin B/s")
            return det
        if method == LABEL:
            variant = str(qc.get("marlin_variant", "")).lower()
            if variant not in ("gptq", "awq"):
                raise InputError(f"{ckpt.root / 'config.json'}: quantization_config.marlin_variant {variant!r} "
                                 "is neither 'gptq' nor 'awq'")
        elif method == "awq" and str(qc.get("version", "")).lower() == "marlin":
            variant = "gptq"  # AutoAWQ WQLinear_Marlin: the original symmetric layout, AutoAWQ's names
        else:
            return None
        if not self._find(ckpt, variant):
            return None
        det = Detection(self.name, variant, group_size=self._group_label(qc))
        bits = qc.get("bits")
        det.bits = bits if isinstance(bits, int) and not isinstance(bits, bool) else None
        if method == "awq":
            det.notes.append("AutoAWQ version 'marlin': read as the symmetric Marlin layout (q - 8)")
        return det

    @staticmethod
    def _group_label(qc: dict) -> int | None:
        gs = qc.get("group_size")
        return gs if isinstance(gs, int) and not isinstance(gs, bool) else None

    def _find(self, ckpt: Checkpoint, variant: str) -> list[str]:
        w, s = NAMES[variant]
        found = []
        for n in ckpt.names():
            if not n.endswith(f".{w}"):
                continue
            m = n[: -len(w) - 1]
            if f"{m}.{s}" not in ckpt or (f"{m}.qzeros" in ckpt) != (variant == "awq"):
                continue
            qw, sc = ckpt.info(n).shape, ckpt.info(f"{m}.{s}").shape
            if len(qw) == 2 and len(sc) == 2 and qw[1] in (2 * sc[1], 4 * sc[1]):
                found.append(m)
        return found

    def modules(self, ckpt: Checkpoint, det: Detection) -> list[str]:
        return self._find(ckpt, det.variant)

    def module_tensors(self, ckpt: Checkpoint, det: Detection, module: str) -> list[str]:
        extra = {"gptq": ("g_idx", "g_idx_sort_indices"), "awq": ("qzeros",), "checkpoint": ()}[det.variant]
        return [f"{module}.{s}" for s in NAMES[det.variant] + extra if f"{module}.{s}" in ckpt]

    def read(self, ckpt: Checkpoint, det: Detection, module: str) -> QuantTensor:
        wname, sname = NAMES[det.variant]
        B, s = ckpt.get(f"{module}.{wname}"), ckpt.get(f"{module}.{sname}")

        def bad(tensor: str, problem: str) -> InputError:
            return InputError(f"{ckpt.info(f'{module}.{tensor}').file}: tensor '{module}.{tensor}': {problem}")

        if B.dtype != np.int32 or B.ndim != 2:
            raise bad(wname, f"expected int32 [K/16, N*16*b/32], got {B.dtype} {list(B.shape)}")
        if s.ndim != 2 or not is_float(s.dtype):
            raise bad(sname, f"expected float [G, N], got {s.dtype} {list(s.shape)}")
        G, N = s.shape
        bits = {2 * N: 4, 4 * N: 8}.get(B.shape[1])
        if bits is None or (det.variant == "checkpoint" and bits != 4):
            raise bad(wname, f"width {B.shape[1]} is not 2*N (4-bit) or 4*N (8-bit) for N={N}")
        K = B.shape[0] * layout.TILE
        if N % layout.BLOCK_N or K == 0:
            raise bad(sname, f"N={N} is not a positive multiple of {layout.BLOCK_N}")
        gs = det.group_size
        if gs is None or gs == 0 or num_groups(K, gs) != G or (gs != -1 and K % gs):
            if G == 0 or K % G:
                raise bad(sname, f"{G} groups do not divide K={K}")
            gs = -1 if G == 1 else K // G
        codes = layout.unpack_weight(B, bits, K, N)
        g_idx = None
        if f"{module}.g_idx_sort_indices" in ckpt:
            codes, g_idx = self._undo_act_order(ckpt, module, codes, G, bad)
        scales = np.ascontiguousarray(layout.unpermute_scales(s, G))
        mid = 2 ** (bits - 1)
        if det.variant == "awq":
            qz = ckpt.get(f"{module}.qzeros")
            if qz.dtype != np.int32 or tuple(qz.shape) != (G, N * bits // 32):
                raise bad("qzeros", f"expected int32 [{G}, {N * bits // 32}], got {qz.dtype} {list(qz.shape)}")
            zeros = layout.unpack_zeros(qz, bits, N)
        else:
            zeros = np.full((G, N), mid)
        sym = bool((zeros == mid).all())
        try:
            return QuantTensor.from_codes(codes, scales, zeros, bits, gs, g_idx, sym=sym)
        except ValueError as e:
            raise bad(wname, str(e)) from None

    @staticmethod
    def _undo_act_order(ckpt: Checkpoint, module: str, codes: np.ndarray, G: int, bad):
        """Marlin row k' holds input row perm[k'] with group g_sorted[k']: scatter both back."""
        K = codes.shape[0]
        perm = ckpt.get(f"{module}.g_idx_sort_indices")
        if f"{module}.g_idx" not in ckpt:
            raise bad("g_idx_sort_indices", "has no g_idx beside it")
        g_sorted = ckpt.get(f"{module}.g_idx")
        for name, t in (("g_idx_sort_indices", perm), ("g_idx", g_sorted)):
            if t.dtype not in (np.int32, np.int64) or tuple(t.shape) != (K,):
                raise bad(name, f"expected int32 [{K}], got {t.dtype} {list(t.shape)}")
        p = perm.astype(np.int64)
        if not np.array_equal(np.sort(p), np.arange(K)):
            raise bad("g_idx_sort_indices", f"is not a permutation of 0..{K - 1}")
        gs = g_sorted.astype(np.int64)
        if K and (gs.min() < 0 or gs.max() >= G):
            raise bad("g_idx", f"group indices {gs.min()}..{gs.max()} outside 0..{G - 1}")
        out = np.empty_like(codes)
        out[p] = codes
        g_idx = np.empty(K, np.int32)
        g_idx[p] = gs
        return out, g_idx

    def packed(self, ckpt: Checkpoint, det: Detection, module: str, qt: QuantTensor | None = None):
        """The stored tensors, for the Triton kernel's Marlin path: codes and scales as they lie;
        symmetric variants have no zero tensor (a stride-0 view of 0, the zero 2^(b-1) as offset);
        act-order hands over the sorted g_idx and the sort indices the activations are gathered by."""
        from ..kernels.packed import CODES_MARLIN, SCALES_MARLIN, ZEROS_INT, ZEROS_MARLIN, PackedWeight

        qt = qt if qt is not None else self.read(ckpt, det, module)  # read() validates every shape
        wname, sname = NAMES[det.variant]
        B, s = ckpt.get(f"{module}.{wname}"), ckpt.get(f"{module}.{sname}")
        G, N = s.shape
        if det.variant == "awq":
            zeros, zlayout, offset = ckpt.get(f"{module}.qzeros"), ZEROS_MARLIN, 0
        else:
            import torch  # packed() feeds the kernels, which run in torch

            zeros, zlayout, offset = torch.zeros(1, 1, dtype=torch.int32).expand(G, N), ZEROS_INT, 2 ** (qt.bits - 1)
        g_sorted = perm = None
        if f"{module}.g_idx_sort_indices" in ckpt:
            g_sorted = ckpt.get(f"{module}.g_idx").astype(np.int32)
            perm = ckpt.get(f"{module}.g_idx_sort_indices").astype(np.int32)
        return PackedWeight(CODES_MARLIN, zlayout, qt.bits, qt.in_features, N, qt.group_size, B, s, zeros, offset,
                            g_sorted, f"{self.name}/{det.variant}", scales_layout=SCALES_MARLIN, x_perm=perm)

    # -- writing ------------------------------------------------------------------------------
    def specs(self, module: str, qt: QuantTensor, variant: str) -> list[TensorSpec]:
        N, K, G, b = qt.out_features, qt.in_features, qt.num_groups, qt.bits
        wname, sname = NAMES[variant]
        out = [TensorSpec(f"{module}.{wname}", "I32", (K // layout.TILE, N * layout.TILE * b // 32)),
               TensorSpec(f"{module}.{sname}", st_dtype(qt.scales.dtype), (G, N))]
        if variant == "awq":
            out.append(TensorSpec(f"{module}.qzeros", "I32", (G, N * b // 32)))
        if variant == "gptq" and qt.act_order:
            out += [TensorSpec(f"{module}.g_idx", "I32", (K,)), TensorSpec(f"{module}.g_idx_sort_indices", "I32", (K,))]
        return out

    def pack(self, module: str, qt: QuantTensor, variant: str) -> dict[str, np.ndarray]:
        wname, sname = NAMES[variant]
        perm = None
        if qt.act_order:  # only the gptq variant declares act-order; fit() re-quantizes for the others
            # a stable sort: rows of one group keep their order (vLLM's torch.argsort is unstable
            # in principle; any permutation that sorts g_idx is read back the same way)
            perm = np.argsort(qt.g_idx, kind="stable").astype(np.int32)
            weight = layout.pack_weight(qt.codes()[perm], qt.bits)
        elif qt.bits == 4:  # rows in order: straight from the packed words, no code unpacked
            weight = layout.pack_weight_words(qt.qweight, qt.in_features, qt.out_features)
        else:
            weight = layout.pack_weight(qt.codes(), qt.bits)
        out = {f"{module}.{wname}": weight,
               f"{module}.{sname}": np.ascontiguousarray(layout.permute_scales(qt.scales, qt.num_groups))}
        if variant == "awq":
            out[f"{module}.qzeros"] = layout.pack_zeros(qt.zeros, qt.bits)
        if perm is not None:
            out[f"{module}.g_idx"] = np.ascontiguousarray(qt.g_idx[perm])
            out[f"{module}.g_idx_sort_indices"] = perm
        return out

    def quantization_config(self, scheme: Scheme, variant: str) -> dict:
        if variant == "checkpoint":
            return {"quant_method": "gptq", "bits": 4, "group_size": scheme.group_size, "desc_act": False,
                    "sym": True, "static_groups": False, "true_sequential": True, "damp_percent": 0.01,
                    "checkpoint_format": "marlin", "lm_head": "lm_head" in scheme.quantized}
        return {"quant_method": LABEL, "marlin_variant": variant, "bits": scheme.bits,
                "group_size": scheme.group_size, "sym": variant == "gptq" or scheme.sym,
                "desc_act": scheme.act_order,
                "modules_not_quantized": list(scheme.unquantized_linears) or None}

    def extra_files(self, scheme: Scheme, variant: str) -> dict[str, dict]:
        if variant == "checkpoint":  # AutoGPTQ reads quantize_config.json before config.json
            return {"quantize_config.json": self.quantization_config(scheme, variant)}
        return {}
