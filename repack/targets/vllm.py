"""vLLM: which quantization method and linear kernel a checkpoint gets, per module.

Sources: kernels.md §1.2 and vllm-project/vllm ``layers/quantization/gptq_marlin.py``
(``is_gptq_marlin_compatible``, ``TYPE_MAP``), ``utils/marlin_utils.py``
(``query_marlin_supported_quant_types``, ``MARLIN_SUPPORTED_GROUP_SIZES``,
``verify_marlin_supports_shape``), ``kernels/linear/mixed_precision/exllama.py``
(``can_implement``), ``layers/quantization/awq_marlin.py`` (per-layer fallback to AWQ),
``layers/quantization/auto_round.py`` (``SUPPORTED_FORMATS``, per-layer GPTQ/AWQ choice),
``layers/quantization/gptq.py`` (``create_weights`` shape checks); for the ``B``/``s`` Marlin
checkpoint kernels.md §1.3 and vllm PR #23204 (its removal); hf.md §5.1-5.2.
Shapes are checked for tensor parallel size 1; each TP shard must pass the same checks.
"""

from __future__ import annotations

from .profile import Layer, Profile
from .verdict import Verdict

MARLIN_GROUPS = (-1, 32, 64, 128)
GPTQ_BITS = (2, 3, 4, 8)
AUTO_ROUND_PACKINGS = ("gptq", "awq")  # auto_round:auto_gptq / auto_round:auto_awq only


def _marlin_shape(l: Layer) -> str | None:
    """marlin_utils.verify_marlin_supports_shape (min_thread_n 64, min_thread_k 128)."""
    if l.N % 64:
        return f"out_features {l.N} is not a multiple of 64 (Marlin min_thread_n)"
    if l.K % 128:
        return f"in_features {l.K} is not a multiple of 128 (Marlin min_thread_k)"
    if l.group_size != -1 and l.group_size < l.K and l.K % l.group_size:
        return f"in_features {l.K} is not a multiple of group_size {l.group_size}"
    return None


def _exllama_problem(l: Layer) -> str | None:
    """ExllamaLinearKernel.can_implement, for the symmetric types it takes (uint4b8, uint8b128)."""
    if l.bits not in (4, 8):
        return f"{l.bits}-bit is not an Exllama type"
    if l.group_size <= 0:
        return "Exllama has no channelwise (group_size -1) support"
    if l.K % l.group_size:
        return f"group_size {l.group_size} does not divide in_features {l.K}"
    if l.N % (32 // l.bits):
        return f"out_features {l.N} is not a multiple of {32 // l.bits}"
    return None


def _mp_kernel(v: Verdict, l: Layer, marlin: str, zero_points: bool) -> None:
    """vLLM's mixed-precision kernel chooser on CUDA before Hopper: Marlin, else Exllama."""
    problem = _marlin_shape(l)
    if problem is None:
        v.kernels[marlin] += 1
        return
    exl = "Exllama does not take zero points" if zero_points else _exllama_problem(l)
    if exl is None:
        v.kernels["exllama"] += 1
        v.note(f"{l.module} and similar: {problem}, so the Exllama kernel runs it (fp16 activations only)")
    else:
        v.fail("marlin-shape", l.module, f"{problem}; no fallback kernel: {exl}")


def _gptq_layers(p: Profile, v: Verdict, expected_zeros: str) -> None:
    # is_gptq_marlin_compatible wants bits, group_size, sym and desc_act all stated in the config
    stated = p.format != "auto_gptq" or p.label_desc_act is not None
    for l in p.layers:
        if stated and (l.bits, l.label_sym) in ((4, True), (8, True)) and l.group_size in MARLIN_GROUPS:
            if not l.sym:
                # uint4b8 / uint8b128 have the zero built in; GPTQ-Marlin drops qzeros (kernels.md §1.2)
                v.fail("marlin-sym-label", l.module, "config says sym=true but the stored zeros are not all "
                       f"{2 ** (l.bits - 1)}; gptq_marlin ignores qzeros and would compute wrong weights")
                continue
            _mp_kernel(v, l, "gptq_marlin", zero_points=False)
            continue
        # the plain gptq method: asymmetric, 2/3-bit or a group size Marlin lacks
        if l.bits not in GPTQ_BITS:
            v.fail("gptq-bits", l.module, f"{l.bits}-bit: vLLM's gptq method takes 2, 3, 4 or 8 bits")
            continue
        pack = 32 if l.bits == 3 else 32 // l.bits
        if l.group_size != -1 and l.K % l.group_size:
            v.fail("gptq-shape", l.module, f"in_features {l.K} is not a multiple of group_size {l.group_size}")
        elif l.N % pack:
            v.fail("gptq-shape", l.module, f"out_features {l.N} is not a multiple of the pack factor {pack}")
        elif p.zeros is not None and p.zeros != expected_zeros:
            # gptq_gemm adds 1 to stored zeros unless told the checkpoint is v2 (hf.md §1.6, §5.2)
            v.fail("gptq-zero-convention", l.module, f"zeros are stored {p.zeros}-style but vLLM reads them "
                   f"{expected_zeros}-style (off by one)")
        else:
            v.kernels["gptq"] += 1
            v.note("the gptq method runs fp16 activations only")


def _awq_layers(p: Profile, v: Verdict) -> None:
    for l in p.layers:
        zero_point = l.label_sym is False  # AWQ-Marlin needs zero_point stated (hf.md §5.2)
        # AWQ-Marlin: uint4 with runtime zero points only (query_marlin_supported_quant_types(has_zp=True))
        if l.bits == 4 and zero_point and l.group_size in MARLIN_GROUPS:
            if _marlin_shape(l) is None:
                v.kernels["awq_marlin"] += 1
            else:
                v.kernels["awq"] += 1
                v.note(f"{l.module} and similar: {_marlin_shape(l)}; vLLM falls back to the unoptimized AWQ kernel")
        else:
            v.kernels["awq"] += 1


def _ct_layers(p: Profile, v: Verdict) -> None:
    for l in p.layers:
        if l.bits not in (4, 8):
            v.fail("wna16-bits", l.module, f"{l.bits}-bit: compressed-tensors WNA16 takes 4 or 8 bits")
        elif not l.sym and l.bits != 4:
            v.fail("wna16-zero-points", l.module, "8-bit with zero points: Marlin takes zero points with 4-bit "
                   "only and Exllama none (Machete on Hopper may)")
        elif l.group_size not in MARLIN_GROUPS and not l.sym:
            v.fail("wna16-group", l.module, f"group_size {l.group_size} with zero points: Marlin takes "
                   f"{MARLIN_GROUPS}, Exllama no zero points")
        elif l.group_size not in MARLIN_GROUPS:
            exl = _exllama_problem(l)
            if exl:
                v.fail("wna16-group", l.module, f"group_size {l.group_size} not in Marlin's {MARLIN_GROUPS}; {exl}")
            else:
                v.kernels["compressed-tensors WNA16 exllama"] += 1
        else:
            _mp_kernel(v, l, "compressed-tensors WNA16 marlin", zero_points=not l.sym)


def _marlin_layers(p: Profile, v: Verdict) -> None:
    if p.variant != "checkpoint":
        # vLLM builds this layout in GPU memory from a GPTQ/AWQ checkpoint; it reads it from no file
        v.fail("marlin-repacked", None, f"marlin/{p.variant} is the layout vLLM repacks GPTQ/AWQ weights to at "
               "load time (gptq_marlin_repack / awq_marlin_repack); vLLM loads it from no checkpoint")
        return
    # vllm-project/vllm PR #23204 (merged 2025-08-19) removed quantization/marlin.py, the method that
    # loaded B/s checkpoints (checkpoint_format "marlin"); older releases took 4-bit sym g128/-1
    v.fail("marlin-checkpoint-removed", None, "vLLM no longer loads serialized Marlin (B/s) checkpoints: its "
           "`marlin` method was removed in Aug 2025 (PR #23204); the same weights as GPTQ run on gptq_marlin")
    if p.label_layout != "marlin":
        v.note("config.json says neither checkpoint_format 'marlin' nor is_marlin_format: even vLLM releases "
               "with the marlin method would have read it as plain GPTQ and found no qweight")


def check(p: Profile) -> Verdict:
    v = Verdict()
    if p.format == "dense":
        v.kernels["unquantized"] = len(p.layers) or 1
        return v
    if p.format == "auto_round" and p.variant not in AUTO_ROUND_PACKINGS:
        v.fail("auto-round-packing", None, f"auto-round packing {p.variant!r}: vLLM reads only "
               "auto_round:auto_gptq and auto_round:auto_awq")
        return v
    if p.format == "auto_awq" and p.variant != "gemm":
        v.fail("awq-layout", None, f"AWQ {p.variant} layout: vLLM's AWQ kernels read the GEMM layout only")
        return v
    if p.format in ("auto_gptq", "auto_round") and p.variant != "awq":
        # auto-round's GPTQ route builds GPTQConfig without checkpoint_format: v1 zeros
        _gptq_layers(p, v, p.label_zeros if p.format == "auto_gptq" else "v1")
    elif p.format in ("auto_awq", "auto_round"):
        _awq_layers(p, v)
    elif p.format == "compressed_tensors":
        _ct_layers(p, v)
    elif p.format == "marlin":
        _marlin_layers(p, v)
        return v
    else:
        v.fail("format", None, f"{p.format}: no vLLM quantization method reads this format")
        return v
    if any(k != "unquantized" for k in v.kernels):
        v.note("on Hopper (SM90) vLLM tries Machete before Marlin for the same layers")
    return v
