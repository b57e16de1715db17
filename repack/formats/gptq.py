"""AutoGPTQ / GPTQModel checkpoints (``quant_method: gptq``), variants ``v1`` and ``v2``.

Per quantized linear ``<m>`` (K inputs, N outputs, G = ceil(K / group_size)):

- ``<m>.qweight`` int32 ``[K*b/32, N]``: codes packed along K, field j of word r = code of input
  row ``r*(32/b) + j`` (3-bit: 32 rows in 3 words); exactly the canonical layout, so it is copied.
- ``<m>.qzeros`` int32 ``[G, N*b/32]``: zero points packed the same way but along N.
  v1 (``checkpoint_format: gptq``, nearly every checkpoint on the hub) stores ``z - 1``: AutoGPTQ's
  ``QuantLinear.pack`` does ``zeros -= 1`` and its kernels add 1 back; a true zero of 0 cannot be
  stored (it wraps to 2^b - 1, read back as 2^b). v2 (``gptq_v2``, GPTQModel) stores z itself.
  Symmetric 4-bit v1 words are therefore 0x77777777, v2 words 0x88888888.
- ``<m>.scales`` ``[G, N]``; ``<m>.g_idx`` int32 ``[K]``, the group of each input row (a
  permutation-derived map with ``desc_act``), always written.
Source: AutoGPTQ ``nn_modules/qlinear/qlinear_cuda_old.py`` (pack), GPTQModel
``utils/model.py`` (convert_gptq_v1_to_v2_format); ../shared/formats/hf.md §1.
"""

from __future__ import annotations

import numpy as np

from ..checkpoint import Checkpoint, TensorSpec
from ..dtypes import is_float
from ..errors import InputError
from ..packing import SUPPORTED_BITS, pack_cols, packed_rows, unpack_cols, unpack_rows, values_per_block
from ..safetensors_header import st_dtype
from ..tensor import QuantTensor, int_bounds, num_groups
from .base import Capabilities, Detection, Format, Scheme, quant_config, settings_from_overrides
from .overrides import gptq_dynamic, gptq_lookup, gptq_rules

VERSION = "repack 0.1.0"
SUFFIXES = ("qweight", "qzeros", "scales", "g_idx")


def _gptq_shape_problem(K: int, N: int, bits: int, group_size: int) -> str | None:
    per, _ = values_per_block(bits)
    if K % per:
        return f"in_features {K} is not a multiple of {per} ({bits}-bit qweight packs {per} rows per block)"
    if N % per:
        return f"out_features {N} is not a multiple of {per} ({bits}-bit qzeros pack {per} columns per block)"
    return None


class GptqFormat(Format):
    name = "auto_gptq"
    labels = ("gptq",)
    variants = ("v1", "v2")
    description = "AutoGPTQ/GPTQModel: qweight packed along K; v1 stores zero-1, v2 the zero"

    def capabilities(self, variant: str) -> Capabilities:
        zero_range = (lambda b: (1, 2**b)) if variant == "v1" else (lambda b: (0, 2**b - 1))
        return Capabilities(bits=SUPPORTED_BITS, zero_range=zero_range, act_order=True,
                            shape_problem=_gptq_shape_problem)

    # -- reading ------------------------------------------------------------------------------
    def detect(self, ckpt: Checkpoint, module_labels: dict | None = None) -> Detection | None:
        """``module_labels`` (module -> bits/group_size/sym) replaces the config's ``dynamic`` when
        another format's config holds the per-module settings (AutoRound)."""
        modules = self._find_modules(ckpt)
        if not modules:
            return None
        qc = quant_config(ckpt)
        first = modules[0]
        qw, sc = ckpt.info(f"{first}.qweight"), ckpt.info(f"{first}.scales")
        if len(qw.shape) != 2 or len(sc.shape) != 2 or qw.shape[1] != sc.shape[1]:
            return None  # not the GPTQ layout (AWQ packs along N: qweight [K, N/8])
        det = Detection(self.name, "v1", notes=[])
        method = str(qc.get("quant_method", "")).lower()
        if method and method != "gptq":
            det.notes.append(f"config says quant_method {method!r}, tensors are in the GPTQ layout")
        gs = qc.get("group_size")
        det.group_size = gs if isinstance(gs, int) and not isinstance(gs, bool) else None
        if det.group_size is not None and det.group_size != -1 and det.group_size <= 0:
            raise InputError(f"{ckpt.root / 'config.json'}: quantization_config group_size {gs} is neither -1 nor positive")
        det.sym = qc.get("sym") if isinstance(qc.get("sym"), bool) else None
        det.bits = qc.get("bits") if isinstance(qc.get("bits"), int) else None
        if module_labels is None:
            try:
                rules = gptq_rules(qc.get("dynamic"))
            except ValueError as e:
                raise InputError(f"{ckpt.root / 'config.json'}: quantization_config.dynamic: {e}") from None
            module_labels = {m: o for m in modules if isinstance(o := gptq_lookup(rules, m), dict)}
        det.options["module_labels"] = module_labels
        first_bits = self.module_bits(ckpt, det, first)
        if det.bits is None:
            det.bits = first_bits
        label = str(qc.get("checkpoint_format", qc.get("format", "gptq"))).lower()
        label_variant = "v2" if label == "gptq_v2" else "v1"
        data_variant = self._variant_from_data(ckpt, first, first_bits)
        det.options["data_variant"] = data_variant  # what the zeros alone say (None: not decisive)
        det.variant = data_variant or label_variant
        if data_variant and data_variant != label_variant:
            det.notes.append(f"config says checkpoint_format {label!r} ({label_variant}) but the stored zeros are {data_variant}; reading as {data_variant}")
        return det

    def _find_modules(self, ckpt: Checkpoint) -> list[str]:
        return [n[: -len(".qweight")] for n in ckpt.names()
                if n.endswith(".qweight") and f"{n[:-8]}.qzeros" in ckpt and f"{n[:-8]}.scales" in ckpt]

    @staticmethod
    def module_labels(det: Detection, module: str) -> dict:
        """What the config says of one module: model-wide bits/group_size/sym, its overrides on top."""
        base = {"bits": det.bits, "group_size": det.group_size, "sym": det.sym}
        return settings_from_overrides(base, det.options.get("module_labels", {}).get(module))

    def module_bits(self, ckpt: Checkpoint, det: Detection, module: str) -> int:
        N = ckpt.info(f"{module}.scales").shape[1]
        width = ckpt.info(f"{module}.qzeros").shape[1]
        fits = [b for b in SUPPORTED_BITS if packed_rows(N, b) == width]  # narrow layers fit several
        label = self.module_labels(det, module)["bits"]
        if not fits:
            raise InputError(f"{ckpt.info(module + '.qzeros').file}: tensor '{module}.qzeros': width {width} fits no bit width for {N} outputs")
        if label in fits:
            return label
        if label is not None:
            raise InputError(f"{ckpt.info(module + '.qzeros').file}: tensor '{module}.qzeros': config says {label}-bit but the shape is {fits[0]}-bit")
        return 4 if 4 in fits else fits[0]

    def _variant_from_data(self, ckpt: Checkpoint, module: str, bits: int) -> str | None:
        """v1 stores z-1, v2 stores z. Symmetric zeros decide at once (2^(b-1)-1 vs 2^(b-1)); for
        asymmetric zeros the codes decide: weights are centred on their zero point, so the mean
        of ``q - stored`` is ~1 for v1 and ~0 for v2. None when the data is not decisive."""
        N = ckpt.info(f"{module}.scales").shape[1]
        stored = unpack_cols(ckpt.get(f"{module}.qzeros"), bits, N).astype(np.int64)
        mid = 2 ** (bits - 1)
        if (stored == mid - 1).all():
            return "v1"
        if (stored == mid).all():
            return "v2"
        per, nwords = values_per_block(bits)
        qw_rows = ckpt.info(f"{module}.qweight").shape[0]
        G = stored.shape[0]
        K = qw_rows // nwords * per
        if f"{module}.g_idx" in ckpt:
            g = ckpt.get(f"{module}.g_idx").astype(np.int64)
            K = len(g)
        else:
            g = np.minimum(np.arange(K) * G // K, G - 1)
        if len(g) == 0 or g.min() < 0 or g.max() >= G or packed_rows(K, bits) != qw_rows:
            return None
        rows = min(K, max(per, (1 << 22) // max(N, 1) // per * per))  # a bounded sample of rows
        qw = ckpt.get(f"{module}.qweight", rows=-(-rows // per) * nwords)
        codes = unpack_rows(qw, bits, rows)
        idx = g[:rows]
        if (idx[1:] < idx[:-1]).any():  # act-order: rows sorted by group, a group's rows one run
            order = np.argsort(idx, kind="stable")
            idx, codes = idx[order], codes[order]
        starts = np.flatnonzero(np.r_[True, idx[1:] != idx[:-1]])
        ends = [*starts[1:], rows]
        # integer sums, exact as the float64 ones of np.add.at were (25 ms of a 7B source's 50 ms open)
        sums = np.stack([codes[a:b].sum(axis=0, dtype=np.int64) for a, b in zip(starts, ends)])
        mean = sums / np.diff(np.r_[starts, rows])[:, None]
        z = stored[idx[starts]].astype(np.float64)  # the groups present, in order
        # Only trust the offset when the codes track the zeros, as a quantizer's output does (the code
        # of w=0 is z): on data with no such relation (random codes) the label decides.
        # Fewer than 64 (group, column) points decide nothing: on 8 random ones the correlation
        # passes by chance often enough that a correct v2 label was overruled (hypothesis found
        # K=32, N=8, seed 8737); real layers have thousands.
        if z.size < 64 or z.std() == 0 or mean.std() == 0 or np.corrcoef(mean.ravel(), z.ravel())[0, 1] < 0.5:
            return None
        d = float((mean - z).mean())
        if abs(d - 1) < 0.25:
            return "v1"
        if abs(d) < 0.25:
            return "v2"
        return None

    def modules(self, ckpt: Checkpoint, det: Detection) -> list[str]:
        return self._find_modules(ckpt)

    def module_tensors(self, ckpt: Checkpoint, det: Detection, module: str) -> list[str]:
        return [f"{module}.{s}" for s in SUFFIXES if f"{module}.{s}" in ckpt]

    def read(self, ckpt: Checkpoint, det: Detection, module: str) -> QuantTensor:
        bits = self.module_bits(ckpt, det, module)
        labels = self.module_labels(det, module)
        qweight = ckpt.get(f"{module}.qweight")
        qzeros = ckpt.get(f"{module}.qzeros")
        scales = ckpt.get(f"{module}.scales")
        g_idx = ckpt.get(f"{module}.g_idx") if f"{module}.g_idx" in ckpt else None

        def bad(tensor: str, problem: str) -> InputError:
            return InputError(f"{ckpt.info(f'{module}.{tensor}').file}: tensor '{module}.{tensor}': {problem}")

        if qweight.dtype != np.int32 or qweight.ndim != 2:
            raise bad("qweight", f"expected int32 [K*{bits}/32, N], got {qweight.dtype} {list(qweight.shape)}")
        if qzeros.dtype != np.int32 or qzeros.ndim != 2:
            raise bad("qzeros", f"expected int32 [G, N*{bits}/32], got {qzeros.dtype} {list(qzeros.shape)}")
        if scales.ndim != 2 or not is_float(scales.dtype):
            raise bad("scales", f"expected float [G, N], got {scales.dtype} {list(scales.shape)}")
        N = qweight.shape[1]
        per, nwords = values_per_block(bits)
        if qweight.shape[0] % nwords:
            raise bad("qweight", f"{qweight.shape[0]} rows is not a whole number of {bits}-bit blocks")
        K = g_idx.shape[0] if g_idx is not None else qweight.shape[0] // nwords * per
        if g_idx is not None and (g_idx.ndim != 1 or packed_rows(K, bits) != qweight.shape[0]):
            raise bad("g_idx", f"length {list(g_idx.shape)} does not match qweight's {qweight.shape[0]} rows")
        G = scales.shape[0]
        gs = labels["group_size"] if labels["group_size"] is not None else (-1 if G == 1 else K // G)
        if tuple(scales.shape) != (num_groups(K, gs), N):
            raise bad("scales", f"shape {list(scales.shape)} contradicts group_size {gs} (expected [{num_groups(K, gs)}, {N}])")
        if tuple(qzeros.shape) != (G, packed_rows(N, bits)):
            raise bad("qzeros", f"shape {list(qzeros.shape)}, expected [{G}, {packed_rows(N, bits)}]")
        zeros = unpack_cols(qzeros, bits, N).astype(np.int16)
        if det.variant == "v1":
            zeros += 1
        sym = bool((zeros == 2 ** (bits - 1)).all())
        if labels["sym"] is False:
            sym = False
        if g_idx is not None:
            if g_idx.dtype not in (np.int32, np.int64):
                raise bad("g_idx", f"expected int32, got {g_idx.dtype}")
            gmin, gmax = int_bounds(g_idx) if K else (0, 0)
            if K and (gmin < 0 or gmax >= G):
                raise bad("g_idx", f"group indices {gmin}..{gmax} outside 0..{G - 1}")
        try:
            return QuantTensor(qweight, scales, zeros, bits, gs, K, g_idx, sym)
        except ValueError as e:
            raise bad("qweight", str(e)) from None

    def packed(self, ckpt: Checkpoint, det: Detection, module: str, qt: QuantTensor | None = None):
        from ..kernels.packed import CODES_ALONG_K, ZEROS_ALONG_N, PackedWeight

        qt = qt if qt is not None else self.read(ckpt, det, module)  # read() validates every shape
        return PackedWeight(CODES_ALONG_K, ZEROS_ALONG_N, qt.bits, qt.in_features, qt.out_features, qt.group_size,
                            ckpt.get(f"{module}.qweight"), ckpt.get(f"{module}.scales"), ckpt.get(f"{module}.qzeros"),
                            1 if det.variant == "v1" else 0, qt.g_idx, f"{self.name}/{det.variant}")

    # -- writing ------------------------------------------------------------------------------
    def specs(self, module: str, qt: QuantTensor, variant: str) -> list[TensorSpec]:
        N, K, G = qt.out_features, qt.in_features, qt.num_groups
        return [TensorSpec(f"{module}.qweight", "I32", (packed_rows(K, qt.bits), N)),
                TensorSpec(f"{module}.qzeros", "I32", (G, packed_rows(N, qt.bits))),
                TensorSpec(f"{module}.scales", st_dtype(qt.scales.dtype), (G, N)),
                TensorSpec(f"{module}.g_idx", "I32", (K,))]

    def pack(self, module: str, qt: QuantTensor, variant: str) -> dict[str, np.ndarray]:
        stored = qt.zeros.astype(np.int64) - (1 if variant == "v1" else 0)
        stored &= 2**qt.bits - 1  # v1 stores z-1 in b bits (z = 2^b is stored as 2^b - 1)
        g_idx = qt.g_idx if qt.g_idx is not None else qt.sequential_g_idx()
        return {f"{module}.qweight": qt.qweight,
                f"{module}.qzeros": pack_cols(stored, qt.bits),
                f"{module}.scales": qt.scales,
                f"{module}.g_idx": g_idx}

    def quantization_config(self, scheme: Scheme, variant: str) -> dict:
        qc = self._quantization_config(scheme, variant)
        if not qc["dynamic"]:
            del qc["dynamic"]
        return qc

    def _quantization_config(self, scheme: Scheme, variant: str) -> dict:
        return {"quant_method": "gptq", "bits": scheme.bits, "group_size": scheme.group_size,
                "desc_act": scheme.act_order, "sym": scheme.sym, "static_groups": False,
                "true_sequential": True, "damp_percent": 0.01, "lm_head": "lm_head" in scheme.quantized,
                "checkpoint_format": "gptq" if variant == "v1" else "gptq_v2", "pack_dtype": "int32",
                "dynamic": gptq_dynamic(scheme.override_dicts(), _in_blocks(scheme.unquantized_linears)),
                "meta": {"quantizer": [VERSION]}}

    def extra_files(self, scheme: Scheme, variant: str) -> dict[str, dict]:
        # AutoGPTQ and older GPTQModel look for quantize_config.json before config.json
        return {"quantize_config.json": self.quantization_config(scheme, variant)}


def _in_blocks(modules) -> list[str]:
    """Unquantized linears a GPTQ loader would otherwise quantize: those inside the repeated blocks
    (lm_head and other top-level linears stay float by default)."""
    return [m for m in modules if ".layers." in m or ".h." in m or ".blocks." in m]
