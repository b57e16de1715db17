"""llama.cpp reads GGUF files only (gguf.md §1, §6): a safetensors folder never loads."""

from __future__ import annotations

from .profile import Profile
from .verdict import Verdict


def check(p: Profile) -> Verdict:
    v = Verdict()
    if p.format == "gguf":
        v.kernels[f"ggml {p.variant}"] = len(p.layers) or 1
    else:
        v.fail("gguf-only", None, f"{p.format} safetensors: llama.cpp loads GGUF files only")
    return v
