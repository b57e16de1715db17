"""LMDeploy TurboMind: 4-bit AWQ (gemm) or GPTQ (symmetric, no act-order), group size 128.

Sources: kernels.md §2.2 and InternLM/lmdeploy ``lmdeploy/turbomind/deploy/converter.py``
``get_tm_model`` (quant_method awq or gptq only; awq needs version gemm; gptq needs desc_act false
and sym true; group_size must be 128; weight_type int4) and ``deploy/policy.py`` ``process_gptq``
(adds 1 to every stored zero: GPTQ v1 zeros). The TurboMind engine only; the PyTorch engine is
not covered.

A TurboMind workspace (repack's ``turbomind`` format, what ``lmdeploy convert`` wrote up to v0.9)
is for those older releases; :func:`workspace_note` says which ``repack convert --to turbomind``
writes one exactly (kernels.md §2.1, §2.2).
"""

from __future__ import annotations

from .profile import Profile
from .verdict import Verdict


def check(p: Profile) -> Verdict:
    v = Verdict()
    if p.format == "dense":
        v.kernels["turbomind fp16/bf16"] = len(p.layers) or 1
        return v
    if p.format == "turbomind":
        era = "lmdeploy <= 0.5.3" if p.variant == "w4" else "lmdeploy 0.6-0.9"
        v.fail("turbomind-workspace", None, f"a TurboMind {p.variant} workspace: it loads in {era}; current LMDeploy "
               "(0.10+, `lmdeploy convert` removed) loads AWQ/GPTQ folders only")
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


def workspace_note(src: str, reachable: dict[str, str], config: dict) -> str | None:
    """For LMDeploy <= 0.9: the exact ``--to turbomind`` conversion, when every layer fits and the
    architecture is in the TurboMind table; tp divisibility is checked by convert, naming the tensor."""
    from ..formats.turbomind_arch import arch_for
    if reachable.get("turbomind/w4") != "exact" or arch_for(config) is None:
        return None
    out = f"{str(src).rstrip('/')}-turbomind"
    return (f"for lmdeploy <= 0.5.3, a ready workspace (what `lmdeploy convert` writes): repack convert {src} {out} "
            "--to turbomind --variant w4 [--tp N]; for 0.6-0.9: --variant v6")
