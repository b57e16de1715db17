"""LMDeploy TurboMind: 4-bit AWQ (gemm) or GPTQ (symmetric, no act-order), group size 128.

Sources: kernels.md §2.2 and InternLM/lmdeploy ``lmdeploy/turbomind/deploy/converter.py``
``get_tm_model`` (quant_method awq or gptq only; awq needs version gemm; gptq needs desc_act false
and sym true; group_size must be 128; weight_type int4) and ``deploy/policy.py`` ``process_gptq``
(adds 1 to every stored zero: GPTQ v1 zeros). The TurboMind engine only; the PyTorch engine is
not covered.
"""

from __future__ import annotations

from .profile import Profile
from .verdict import Verdict


def check(p: Profile) -> Verdict:
    v = Verdict()
    if p.format == "dense":
        v.kernels["turbomind fp16/bf16"] = len(p.layers) or 1
        return v
    if p.format not in ("auto_awq", "auto_gptq"):
        v.fail("quant-method", None, f"{p.format} checkpoints: TurboMind's converter takes quant_method awq or gptq only")
        return v
    if p.format == "auto_awq":
        if p.variant != "gemm" or p.label_layout != "gemm":
            v.fail("awq-version", None, f"AWQ version {p.label_layout!r} ({p.variant} layout): TurboMind takes gemm only")
        kernel = "turbomind awq w4a16"
    else:
        if p.label_desc_act or any(l.act_order for l in p.layers):
            v.fail("gptq-act-order", None, "act-order (desc_act / a permuted g_idx): TurboMind takes GPTQ without it")
        if p.zeros != "v1":
            v.fail("gptq-zero-convention", None, f"zeros are stored {p.zeros}-style; TurboMind adds 1 to every "
                   "stored zero (GPTQ v1)")
        kernel = "turbomind gptq w4a16"
    for l in p.layers:
        if p.format == "auto_gptq" and l.label_sym is False:
            v.fail("gptq-sym", l.module, "config says sym=false: TurboMind takes symmetric GPTQ only")
        elif l.bits != 4:
            v.fail("bits", l.module, f"{l.bits}-bit: TurboMind's quantized weight type is int4")
        elif l.group_size != 128:
            v.fail("group-size", l.module, f"group_size {l.group_size}: TurboMind takes 128 only")
        else:
            v.kernels[kernel] += 1
    v.note("with tensor parallelism each rank's slice must hold whole groups (checked by TurboMind at load)")
    return v
