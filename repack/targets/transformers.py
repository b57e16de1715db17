"""transformers: which HfQuantizer reads the checkpoint, and whether it reads the zeros right.

Sources: hf.md §5.3 (quant_method -> quantizer), §1.6 (optimum/GPTQModel convert v1 zeros only
when checkpoint_format is "gptq"); huggingface/transformers ``quantizers/quantizer_gptq.py``
(optimum + gptqmodel or auto-gptq), ``quantizers/quantizer_awq.py`` (autoawq; the module class is
picked by ``version``; GEMM needs CUDA, else IPEX).
"""

from __future__ import annotations

from .profile import Profile
from .verdict import Verdict

QUANTIZER = {"auto_gptq": "gptq (optimum + gptqmodel/auto-gptq)", "auto_awq": "awq (autoawq {variant})",
             "auto_round": "auto-round (auto-round package)", "compressed_tensors": "compressed-tensors",
             "dense": "no quantizer (float weights)"}


def check(p: Profile) -> Verdict:
    v = Verdict()
    if p.format not in QUANTIZER:
        v.fail("quant-method", None, f"{p.format}: no transformers quantizer reads this format")
        return v
    if p.zeros is not None and p.label_zeros is not None and p.zeros != p.label_zeros:
        v.fail("zero-convention-label", None, f"the config implies {p.label_zeros} zeros but they are stored "
               f"{p.zeros}-style; the quantizer follows the config and reads every zero off by one")
    if p.format == "auto_awq" and p.label_layout != p.variant:
        v.fail("awq-version-label", None, f"config says version {p.label_layout!r} but the tensors are in the "
               f"{p.variant} layout; autoawq builds {p.label_layout} modules")
    if not v.failures:
        v.kernels[QUANTIZER[p.format].format(variant=p.variant)] = len(p.layers) or 1
    if p.format == "auto_awq":
        v.note("autoawq GEMM/GEMV kernels need CUDA; on CPU transformers switches to the IPEX version")
    return v
