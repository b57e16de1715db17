"""llm-compressor / vLLM ``compressed-tensors`` checkpoints, format ``pack-quantized`` (2/4/8-bit).

Per quantized Linear (W is ``[N, K]``, the PyTorch orientation; hf.md §4, checked against an
auto-round ``llm_compressor`` export in hf-observed.md):
- ``weight_packed`` int32 ``[N, ceil(K / (32/b))]``: field i (LSB first) of word ``[n, c]`` holds
  the code of input ``(32/b)*c + i`` as the unsigned value ``signed code + 2^(b-1)`` — which is the
  canonical unsigned code; so for b in {2, 4, 8} these words are the canonical words transposed.
- ``weight_scale`` ``[N, G]`` (channel strategy: ``[N, 1]``).
- ``weight_zero_point`` int32 ``[ceil(N / (32/b)), G]``, asymmetric only: field i of word ``[r, g]``
  is the zero of output ``(32/b)*r + i`` (``signed zero + 2^(b-1)`` = the true unsigned zero).
  Symmetric layers store none (zero 2^(b-1)).
- ``weight_shape`` ``[2]`` = ``[N, K]`` (int64 in the exports we read), ``weight_g_idx`` ``[K]``
  with act-order.
Source: neuralmagic/compressed-tensors ``compressors/quantized_compressors/pack_quantized.py``
(pack_to_int32 / unpack_from_int32). 3-bit packs 10 values per word there (not GPTQ's 32-in-96):
not supported yet.
"""

from __future__ import annotations

import numpy as np

from ..checkpoint import Checkpoint, TensorSpec
from ..dtypes import is_float
from ..errors import FormatError, InputError, UnsupportedError
from ..packing import pack_rows, packed_rows, unpack_rows
from ..safetensors_header import st_dtype
from ..tensor import QuantTensor, num_groups
from .base import Capabilities, Detection, Format, Scheme, any_shape, quant_config, settings_from_overrides
from .overrides import clean_settings, ct_targets_match

BITS = (2, 4, 8)


def _args_settings(args: dict) -> dict:
    strategy = args.get("strategy")
    gs = args.get("group_size") if strategy == "group" else -1 if strategy == "channel" else None
    return clean_settings({"bits": args.get("num_bits"), "group_size": gs, "sym": args.get("symmetric")},
                          f"weights {args!r}")


def weight_args(bits: int, group_size: int, sym: bool, act_order: bool) -> dict:
    return {"num_bits": bits, "type": "int", "symmetric": sym,
            "strategy": "channel" if group_size == -1 else "group",
            "group_size": None if group_size == -1 else group_size,
            "actorder": "group" if act_order else None, "block_structure": None,
            "dynamic": False, "observer": "minmax"}


class CompressedTensorsFormat(Format):
    name = "compressed_tensors"
    labels = ("compressed-tensors",)
    variants = ("pack-quantized",)
    description = "llm-compressor compressed-tensors pack-quantized: weight_packed [N, K*b/32], signed codes +2^(b-1)"

    def capabilities(self, variant: str) -> Capabilities:
        return Capabilities(bits=BITS, zero_range=lambda b: (0, 2**b - 1), act_order=True, shape_problem=any_shape)

    # -- reading ------------------------------------------------------------------------------
    def detect(self, ckpt: Checkpoint) -> Detection | None:
        modules = self._find_modules(ckpt)
        if not modules:
            return None
        qc = quant_config(ckpt)
        fmt = qc.get("format", "pack-quantized")
        if not isinstance(fmt, str):
            raise FormatError(f"{ckpt.root / 'config.json'}: quantization_config.format must be a string, got {fmt!r}")
        groups = qc.get("config_groups") or {}
        if not isinstance(groups, dict):
            raise FormatError(f"{ckpt.root / 'config.json'}: config_groups must be an object")
        formats_used = {fmt} | {str(g.get("format")) for g in groups.values() if isinstance(g, dict) and g.get("format")}
        if formats_used - {"pack-quantized"}:
            raise FormatError(f"{ckpt.root / 'config.json'}: compressed-tensors format "
                              f"{sorted(formats_used - {'pack-quantized'})[0]!r} is not supported (only pack-quantized)")
        try:
            labels = self._labels(groups, modules, ckpt)
        except ValueError as e:
            raise FormatError(f"{ckpt.root / 'config.json'}: quantization_config.config_groups: {e}") from None
        base = next(iter(labels.values())) if labels else {"bits": None, "group_size": None, "sym": None}
        det = Detection(self.name, "pack-quantized", base["bits"], base["group_size"], base["sym"])
        det.options["module_labels"] = labels
        return det

    def _labels(self, groups: dict, modules: list[str], ckpt: Checkpoint) -> dict:
        labels = {}
        for m in modules:
            best, args = 0, None
            for g in groups.values():
                if not isinstance(g, dict) or not isinstance(g.get("weights"), dict):
                    continue
                score = ct_targets_match(g.get("targets"), m)
                if score > best:
                    best, args = score, g["weights"]
            if args is not None:
                if args.get("type", "int") != "int":
                    raise UnsupportedError(f"{ckpt.root / 'config.json'}: weights of type {args.get('type')!r} are not integer")
                labels[m] = _args_settings(args)
        return labels

    def _find_modules(self, ckpt: Checkpoint) -> list[str]:
        return [n[: -len(".weight_packed")] for n in ckpt.names()
                if n.endswith(".weight_packed") and f"{n[:-14]}.weight_scale" in ckpt]

    def modules(self, ckpt: Checkpoint, det: Detection) -> list[str]:
        return self._find_modules(ckpt)

    def module_tensors(self, ckpt: Checkpoint, det: Detection, module: str) -> list[str]:
        return [f"{module}.{s}" for s in ("weight_packed", "weight_scale", "weight_zero_point", "weight_shape",
                                           "weight_g_idx") if f"{module}.{s}" in ckpt]

    def read(self, ckpt: Checkpoint, det: Detection, module: str) -> QuantTensor:
        def bad(tensor: str, problem: str) -> InputError:
            return InputError(f"{ckpt.info(f'{module}.{tensor}').file}: tensor '{module}.{tensor}': {problem}")

        labels = settings_from_overrides({"bits": None, "group_size": None, "sym": None},
                                         det.options.get("module_labels", {}).get(module))
        packed, scale = ckpt.get(f"{module}.weight_packed"), ckpt.get(f"{module}.weight_scale")
        if packed.dtype != np.int32 or packed.ndim != 2:
            raise bad("weight_packed", f"expected a 2-D int32 tensor, got {packed.dtype} {list(packed.shape)}")
        if scale.ndim != 2 or not is_float(scale.dtype):
            raise bad("weight_scale", f"expected a 2-D float tensor, got {scale.dtype} {list(scale.shape)}")
        N, cols = packed.shape
        if f"{module}.weight_shape" in ckpt:
            shape = ckpt.get(f"{module}.weight_shape")
            if shape.ndim != 1 or shape.size != 2 or shape.dtype not in (np.int32, np.int64):
                raise bad("weight_shape", f"expected 2 integers, got {shape.dtype} {list(shape.shape)}")
            n, K = (int(v) for v in shape.tolist())
            if n != N:
                raise bad("weight_shape", f"says {n} outputs, weight_packed has {N} rows")
        else:
            K = None
        bits = labels["bits"]
        if bits is None:
            if K is None:
                raise bad("weight_packed", "no weight_shape and no num_bits in config: the bit width is unknown")
            bits = next((b for b in BITS if packed_rows(K, b) == cols), None)
        if bits == 3:
            raise UnsupportedError(f"{ckpt.info(f'{module}.weight_packed').file}: tensor '{module}.weight_packed': "
                                   "3-bit pack-quantized (10 codes per word) is not supported yet")
        if bits not in BITS:
            raise bad("weight_packed", f"{cols} words per row fit no supported bit width for {K} inputs")
        per = 32 // bits
        if K is None:
            K = cols * per
        if packed_rows(K, bits) != cols:
            raise bad("weight_packed", f"{cols} words per row, expected {packed_rows(K, bits)} for {K} {bits}-bit inputs")
        G = scale.shape[1]
        if scale.shape[0] != N:
            raise bad("weight_scale", f"shape {list(scale.shape)}, expected [{N}, G]")
        gs = labels["group_size"] if labels["group_size"] is not None else (-1 if G == 1 else K // G)
        if num_groups(K, gs) != G:
            raise bad("weight_scale", f"{G} groups contradict group_size {gs} for {K} inputs")
        if f"{module}.weight_zero_point" in ckpt:
            zp = ckpt.get(f"{module}.weight_zero_point")
            if zp.dtype != np.int32 or tuple(zp.shape) != (packed_rows(N, bits), G):
                raise bad("weight_zero_point", f"expected int32 [{packed_rows(N, bits)}, {G}], got {zp.dtype} {list(zp.shape)}")
            zeros = np.ascontiguousarray(unpack_rows(zp, bits, N).T).astype(np.int16)
            sym = False
        else:
            if labels["sym"] is False:
                raise bad("weight_packed", "config says asymmetric but there is no weight_zero_point")
            zeros = np.full((G, N), 2 ** (bits - 1), dtype=np.int16)
            sym = True
        g_idx = ckpt.get(f"{module}.weight_g_idx") if f"{module}.weight_g_idx" in ckpt else None
        if g_idx is not None:
            if g_idx.ndim != 1 or g_idx.shape[0] != K or g_idx.dtype not in (np.int32, np.int64):
                raise bad("weight_g_idx", f"expected int32 [{K}], got {g_idx.dtype} {list(g_idx.shape)}")
            if K and (int(g_idx.min()) < 0 or int(g_idx.max()) >= G):
                raise bad("weight_g_idx", f"group indices outside 0..{G - 1}")
        # field i of word [n, c] is the code of input per*c + i: the canonical words, transposed
        qweight = np.ascontiguousarray(packed.T)
        try:
            return QuantTensor(qweight, np.ascontiguousarray(scale.T), zeros, bits, gs, K, g_idx, sym)
        except ValueError as e:
            raise bad("weight_packed", str(e)) from None

    # -- writing ------------------------------------------------------------------------------
    def specs(self, module: str, qt: QuantTensor, variant: str) -> list[TensorSpec]:
        N, K, G, b = qt.out_features, qt.in_features, qt.num_groups, qt.bits
        out = [TensorSpec(f"{module}.weight_packed", "I32", (N, packed_rows(K, b))),
               TensorSpec(f"{module}.weight_scale", st_dtype(qt.scales.dtype), (N, G))]
        if not qt.sym:
            out.append(TensorSpec(f"{module}.weight_zero_point", "I32", (packed_rows(N, b), G)))
        if qt.act_order:
            out.append(TensorSpec(f"{module}.weight_g_idx", "I32", (K,)))
        out.append(TensorSpec(f"{module}.weight_shape", "I64", (2,)))
        return out

    def pack(self, module: str, qt: QuantTensor, variant: str) -> dict[str, np.ndarray]:
        out = {f"{module}.weight_packed": np.ascontiguousarray(qt.qweight.T),
               f"{module}.weight_scale": np.ascontiguousarray(qt.scales.T)}
        if not qt.sym:
            out[f"{module}.weight_zero_point"] = pack_rows(qt.zeros.T, qt.bits)
        if qt.act_order:
            out[f"{module}.weight_g_idx"] = qt.g_idx.astype(np.int32)
        out[f"{module}.weight_shape"] = np.array([qt.out_features, qt.in_features], dtype=np.int64)
        return out

    def quantization_config(self, scheme: Scheme, variant: str) -> dict:
        groups = {"group_0": {"targets": ["Linear"], "weights": weight_args(scheme.bits, scheme.group_size, scheme.sym,
                                                                             scheme.act_order),
                              "input_activations": None, "output_activations": None, "format": "pack-quantized"}}
        by_setting: dict[tuple, list[str]] = {}
        for m, setting in scheme.overrides:
            by_setting.setdefault(setting, []).append(m)
        for i, ((b, g, s), mods) in enumerate(sorted(by_setting.items(), key=str), start=1):
            groups[f"group_{i}"] = {"targets": sorted(mods), "weights": weight_args(b, g, s, scheme.act_order),
                                    "input_activations": None, "output_activations": None, "format": "pack-quantized"}
        return {"quant_method": "compressed-tensors", "format": "pack-quantized", "quantization_status": "compressed",
                "global_compression_ratio": None, "config_groups": groups,
                "ignore": sorted(scheme.unquantized_linears), "kv_cache_scheme": None, "sparsity_config": {}}


__all__ = ["CompressedTensorsFormat"]
