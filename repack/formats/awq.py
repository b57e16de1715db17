"""AutoAWQ checkpoints (``quant_method: awq``), 4-bit, variants ``gemm`` and ``gemv``.

Zero points are stored as they are (no GPTQ ``-1``), 0..15; ``zero_point: false`` checkpoints
still carry qzeros (all 8). Groups are always ``k // group_size``: AWQ has no act-order.

gemm (the default, what vLLM and transformers run), G = K / group_size:
- ``qweight`` int32 ``[K, N/8]`` packed along N: nibble i of word ``[k, c]`` holds the code of
  output ``8c + AWQ_ORDER[i]``; ``qzeros`` int32 ``[G, N/8]`` with the same interleave;
  ``scales`` ``[G, N]``.
gemv:
- ``qweight`` int32 ``[N, K/8]``: nibble i of ``[n, c]`` = code of input ``8c + i`` (sequential);
- ``qzeros`` int32 ``[N, W]``: nibble i of ``[n, c]`` = zero of group ``8c + i``, 0 past G;
- ``scales`` ``[N, 8W]``, zero past G; ``W = zeros_width(K, group_size)``.
Source: AutoAWQ ``awq/modules/linear/gemm.py`` and ``gemv.py`` (from_linear, calculate_zeros_width),
``awq/utils/packing_utils.py``; checked bit for bit on auto-round exports (../shared/formats/hf-observed.md).
"""

from __future__ import annotations

import numpy as np

from ..checkpoint import Checkpoint, TensorSpec
from ..dtypes import is_float
from ..errors import InputError, UnsupportedError
from ..packing import pack_cols, packed_rows, unpack_cols, words_along_k, words_along_n
from ..safetensors_header import st_dtype
from ..tensor import Deferred, QuantTensor
from .base import Capabilities, Detection, Format, Scheme, quant_config


def _awq_order() -> np.ndarray:
    """Nibble i of an AWQ-GEMM word holds output column ``8c + ORDER[i]``: [0, 2, 4, 6, 1, 3, 5, 7].
    The order exists because AutoAWQ's GEMM kernel dequantizes eight nibbles with a few shift/mask
    ops into fp16x2 pairs (0,1), (2,3) ... and this interleave puts each pair in one register."""
    return np.array([0, 2, 4, 6, 1, 3, 5, 7])


AWQ_ORDER = _awq_order()
AWQ_REVERSE_ORDER = np.argsort(AWQ_ORDER)  # output column j lives in nibble AWQ_REVERSE_ORDER[j]


def zeros_width(K: int, group_size: int) -> int:
    """Words per row of GEMV qzeros (AutoAWQ calculate_zeros_width)."""
    gs = K if group_size == -1 else group_size
    if gs < 128 and gs not in (32, 64):
        raise ValueError(f"group_size {gs} is not supported by AWQ gemv (32, 64 or >= 128)")
    mult = 1 if gs >= 128 else {64: 2, 32: 4}[gs]
    base = -(-(K // gs) // 8)
    return -(-base // mult) * mult


def _to_awq_columns(q: np.ndarray) -> np.ndarray:
    """[R, N] values in natural column order -> the order AWQ packs them in (per block of 8)."""
    R, N = q.shape
    return q.reshape(R, N // 8, 8)[:, :, AWQ_ORDER].reshape(R, N)


def _from_awq_columns(u: np.ndarray) -> np.ndarray:
    R, N = u.shape
    return u.reshape(R, N // 8, 8)[:, :, AWQ_REVERSE_ORDER].reshape(R, N)


def _shape_problem(variant: str):
    def problem(K: int, N: int, bits: int, group_size: int) -> str | None:
        gs = K if group_size == -1 else group_size
        if K % gs:
            return f"in_features {K} is not a multiple of group_size {gs} (AWQ needs whole groups)"
        if N % 8:
            return f"out_features {N} is not a multiple of 8 (AWQ packs 8 outputs per word)"
        if variant == "gemv":
            if K % 8:
                return f"in_features {K} is not a multiple of 8 (AWQ gemv packs 8 inputs per word)"
            if gs < 128 and gs not in (32, 64):
                return f"group_size {gs} is not supported by AWQ gemv (32, 64 or >= 128)"
        return None
    return problem


class AwqFormat(Format):
    name = "auto_awq"
    labels = ("awq",)
    variants = ("gemm", "gemv")
    description = "AutoAWQ 4-bit: gemm packs along N with nibble order 0,2,4,6,1,3,5,7; gemv along K"

    def capabilities(self, variant: str) -> Capabilities:
        return Capabilities(bits=(4,), zero_range=lambda b: (0, 15), act_order=False,
                            shape_problem=_shape_problem(variant))

    # -- reading ------------------------------------------------------------------------------
    def detect(self, ckpt: Checkpoint) -> Detection | None:
        modules = self._find_modules(ckpt)
        if not modules:
            return None
        m = modules[0]
        qw, sc, qz = (ckpt.info(f"{m}.{s}").shape for s in ("qweight", "scales", "qzeros"))
        if len(qw) != 2 or len(sc) != 2 or len(qz) != 2:
            return None
        fits = [v for v, ok in (("gemm", sc[1] == 8 * qw[1] and qz[1] == qw[1]),
                                ("gemv", sc[0] == qw[0] and qz[0] == qw[0] and sc[1] == 8 * qz[1])) if ok]
        if not fits:
            return None
        qc = quant_config(ckpt)
        label = str(qc.get("version", "gemm")).lower()
        variant = label if label in fits else fits[0]  # tiny layers can fit both shapes: the label decides
        det = Detection(self.name, variant, bits=4)
        method = str(qc.get("quant_method", "")).lower()
        if method and method != "awq":
            det.notes.append(f"config says quant_method {method!r}, tensors are in the AWQ {variant} layout")
        if method == "awq" and label != variant:
            det.notes.append(f"config says version {label!r}, tensors are {variant}; reading as {variant}")
        bits = qc.get("bits", qc.get("w_bit", 4))
        if bits != 4:
            raise InputError(f"{ckpt.root / 'config.json'}: AWQ checkpoint says bits={bits}; AWQ layouts are 4-bit only")
        gs = qc.get("group_size", qc.get("q_group_size"))
        det.group_size = gs if isinstance(gs, int) and not isinstance(gs, bool) else None
        if det.group_size is not None and det.group_size != -1 and det.group_size <= 0:
            raise InputError(f"{ckpt.root / 'config.json'}: quantization_config group_size {gs} is neither -1 nor positive")
        zp = qc.get("zero_point")
        det.sym = (not zp) if isinstance(zp, bool) else None
        return det

    def _find_modules(self, ckpt: Checkpoint) -> list[str]:
        return [n[:-8] for n in ckpt.names()
                if n.endswith(".qweight") and f"{n[:-8]}.qzeros" in ckpt and f"{n[:-8]}.scales" in ckpt]

    def modules(self, ckpt: Checkpoint, det: Detection) -> list[str]:
        return self._find_modules(ckpt)

    def module_tensors(self, ckpt: Checkpoint, det: Detection, module: str) -> list[str]:
        return [f"{module}.{s}" for s in ("qweight", "qzeros", "scales")]

    def read(self, ckpt: Checkpoint, det: Detection, module: str) -> QuantTensor:
        qweight, qzeros, scales = (ckpt.get(f"{module}.{s}") for s in ("qweight", "qzeros", "scales"))

        def bad(tensor: str, problem: str) -> InputError:
            return InputError(f"{ckpt.info(f'{module}.{tensor}').file}: tensor '{module}.{tensor}': {problem}")

        for name, t in (("qweight", qweight), ("qzeros", qzeros)):
            if t.dtype != np.int32 or t.ndim != 2:
                raise bad(name, f"expected a 2-D int32 tensor, got {t.dtype} {list(t.shape)}")
        if scales.ndim != 2 or not is_float(scales.dtype):
            raise bad("scales", f"expected a 2-D float tensor, got {scales.dtype} {list(scales.shape)}")
        if det.variant == "gemm":
            K, N = qweight.shape[0], qweight.shape[1] * 8
            G = scales.shape[0]
            gs = det.group_size if det.group_size is not None else (-1 if G == 1 else K // G)
            eff = K if gs == -1 else gs
            if K % eff or G != K // eff or tuple(scales.shape) != (G, N):
                raise bad("scales", f"shape {list(scales.shape)} contradicts K={K}, N={N}, group_size {gs}")
            if tuple(qzeros.shape) != (G, N // 8):
                raise bad("qzeros", f"shape {list(qzeros.shape)}, expected [{G}, {N // 8}]")
            zeros = _from_awq_columns(unpack_cols(qzeros, 4, N))
            canon = Deferred((packed_rows(K, 4), N), lambda: _gemm_to_canonical(qweight, K, N))
            s = scales
        else:
            N, K = qweight.shape[0], qweight.shape[1] * 8
            W = qzeros.shape[1]
            gs = det.group_size
            if gs is None:
                raise bad("qzeros", "AWQ gemv needs group_size in config.json to tell padding from groups")
            eff = K if gs == -1 else gs
            G = K // eff
            try:
                width = zeros_width(K, gs)
            except ValueError as e:
                raise bad("qzeros", str(e)) from None
            if K % eff or width != W or tuple(scales.shape) != (N, 8 * W):
                raise bad("scales", f"shape {list(scales.shape)} contradicts K={K}, group_size {gs} (expected [{N}, {8 * zeros_width(K, gs)}])")
            zeros = unpack_cols(qzeros, 4, 8 * W)[:, :G].T
            # gemv packs 8 consecutive inputs per word in order, as the canonical layout does, so
            # its [N, K/8] words are the canonical [K/8, N] words transposed
            canon = Deferred((K // 8, N), lambda: np.ascontiguousarray(qweight.T))
            s = np.ascontiguousarray(scales[:, :G].T)
        z = np.ascontiguousarray(zeros).astype(np.int16)
        sym = bool((z == 8).all()) and det.sym is not False
        try:
            return QuantTensor(canon, s, z, 4, gs, K, None, sym)
        except ValueError as e:
            raise bad("qweight", str(e)) from None

    def packed(self, ckpt: Checkpoint, det: Detection, module: str, qt: QuantTensor | None = None):
        from ..kernels.packed import CODES_ALONG_K, CODES_ALONG_N_AWQ, ZEROS_ALONG_G, ZEROS_ALONG_N_AWQ, PackedWeight

        qt = qt if qt is not None else self.read(ckpt, det, module)  # read() validates every shape
        qweight, qzeros, scales = (ckpt.get(f"{module}.{s}") for s in ("qweight", "qzeros", "scales"))
        args = (4, qt.in_features, qt.out_features, qt.group_size)
        if det.variant == "gemm":
            return PackedWeight(CODES_ALONG_N_AWQ, ZEROS_ALONG_N_AWQ, *args, qweight, scales, qzeros,
                                source=f"{self.name}/gemm")
        # gemv: [N, K/8] words are the codes-along-K words transposed; scales [N, 8W] padded past G
        return PackedWeight(CODES_ALONG_K, ZEROS_ALONG_G, *args, qweight.T, scales[:, :qt.num_groups].T, qzeros,
                            source=f"{self.name}/gemv")

    # -- writing ------------------------------------------------------------------------------
    def specs(self, module: str, qt: QuantTensor, variant: str) -> list[TensorSpec]:
        N, K, G = qt.out_features, qt.in_features, qt.num_groups
        sd = st_dtype(qt.scales.dtype)
        if variant == "gemm":
            return [TensorSpec(f"{module}.qweight", "I32", (K, N // 8)),
                    TensorSpec(f"{module}.qzeros", "I32", (G, N // 8)),
                    TensorSpec(f"{module}.scales", sd, (G, N))]
        W = zeros_width(K, qt.group_size)
        return [TensorSpec(f"{module}.qweight", "I32", (N, K // 8)),
                TensorSpec(f"{module}.qzeros", "I32", (N, W)),
                TensorSpec(f"{module}.scales", sd, (N, 8 * W))]

    def pack(self, module: str, qt: QuantTensor, variant: str) -> dict[str, np.ndarray]:
        N, K, G = qt.out_features, qt.in_features, qt.num_groups
        z = qt.zeros
        if variant == "gemm":
            return {f"{module}.qweight": _canonical_to_gemm(qt.qweight, K, N),
                    f"{module}.qzeros": pack_cols(_to_awq_columns(z), 4),
                    f"{module}.scales": qt.scales}
        W = zeros_width(K, qt.group_size)
        zp = np.zeros((N, 8 * W), np.int64)
        zp[:, :G] = z.T
        sp = np.zeros((N, 8 * W), dtype=qt.scales.dtype)
        sp[:, :G] = qt.scales.T
        return {f"{module}.qweight": np.ascontiguousarray(qt.qweight.T),  # see read(): the canonical words, transposed
                f"{module}.qzeros": pack_cols(zp, 4),
                f"{module}.scales": sp}

    def quantization_config(self, scheme: Scheme, variant: str) -> dict:
        # one bit width and group size for the whole model; symmetric layers fit zero_point: true
        offending = [m for m, (b, g, _) in scheme.overrides if b != scheme.bits or g != scheme.group_size]
        if offending:
            raise UnsupportedError(f"auto_awq has one bits/group_size per model; these modules differ from "
                                   f"{scheme.bits}-bit group {scheme.group_size}: {', '.join(offending)}")
        all_sym = scheme.sym and all(s for _, (_, _, s) in scheme.overrides)
        return {"quant_method": "awq", "bits": 4, "group_size": scheme.group_size, "zero_point": not all_sym,
                "version": variant, "modules_to_not_convert": list(scheme.unquantized_linears) or None}


# GPTQ-order words [K/8, N] hold 8 consecutive inputs of one output; AWQ-GEMM words [K, N/8] hold 8
# outputs of one input in AWQ_ORDER. Per 8x8 tile that is a nibble transpose, done on whole words.
def _canonical_to_gemm(canon: np.ndarray, K: int, N: int) -> np.ndarray:
    return words_along_n(canon, K, N, AWQ_ORDER)


def _gemm_to_canonical(qweight: np.ndarray, K: int, N: int) -> np.ndarray:
    return words_along_k(qweight, K, N, AWQ_ORDER)
