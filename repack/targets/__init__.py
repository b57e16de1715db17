"""``repack inspect --target ENGINE``: will this folder load in an inference engine, with which
kernel, and if not, which exact ``repack convert`` makes it load.

Each engine's rules live in their own module and see a :class:`Profile` (data plus config labels).
A fix is proposed only when a conversion is exact for every layer (inspect's target table) and
the converted profile passes the same rules.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from typing import Callable

from .. import formats
from ..errors import FormatError
from ..inspect import Inspection, inspect
from ..source import Source, open_source
from . import llamacpp, lmdeploy, transformers, vllm
from .profile import Layer, Profile, converted, profile_of
from .verdict import Failure, Verdict

ENGINES: dict[str, Callable[[Profile], Verdict]] = {
    "vllm": vllm.check, "transformers": transformers.check, "lmdeploy": lmdeploy.check, "llama.cpp": llamacpp.check}

# conversions worth proposing, most natural first (the source's own format is tried before these)
_CANDIDATES = {
    "vllm": [("auto_gptq", "v1"), ("auto_awq", "gemm"), ("auto_round", "gptq"), ("auto_round", "awq"),
             ("compressed_tensors", "pack-quantized"), ("auto_gptq", "v2")],
    "transformers": [("auto_gptq", "v1"), ("auto_gptq", "v2"), ("auto_awq", "gemm"), ("auto_awq", "gemv"),
                     ("auto_round", "gptq"), ("auto_round", "gptqmodel"), ("auto_round", "native"),
                     ("auto_round", "awq"), ("compressed_tensors", "pack-quantized")],
    "lmdeploy": [("auto_awq", "gemm"), ("auto_gptq", "v1")],
    "llama.cpp": [],  # filled at call time from the gguf format, if registered
}


@dataclass
class TargetReport:
    engine: str
    loads: bool
    kernel: str | None
    failures: list[Failure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    fix: str | None = None  # the exact `repack convert` command that makes it load
    no_fix: str | None = None  # why there is none, when it does not load

    def to_dict(self) -> dict:
        return {"engine": self.engine, "loads": self.loads, "kernel": self.kernel,
                "failures": [{"rule": f.rule, "module": f.module, "reason": f.reason} for f in self.failures],
                "notes": self.notes, "fix": self.fix, "no_fix": self.no_fix}


def _candidates(engine: str, p: Profile) -> list[tuple[str, str]]:
    if engine == "llama.cpp":
        try:
            gguf = formats.get("gguf")
        except FormatError:
            return []
        return [("gguf", v) for v in gguf.variants]
    own = [(p.format, v) for v in _registered_variants(p.format)]
    return own + [c for c in _CANDIDATES[engine] if c not in own]


def _registered_variants(name: str) -> tuple[str, ...]:
    try:
        return formats.get(name).variants
    except FormatError:
        return ()


def command(src: str, fmt: str, variant: str) -> str:
    out = f"{str(src).rstrip('/')}-{fmt}" + (f"-{variant}" if variant != formats.get(fmt).default_variant else "")
    cmd = f"repack convert {shlex.quote(str(src))} {shlex.quote(out)} --to {fmt}"
    return cmd + (f" --variant {variant}" if len(formats.get(fmt).variants) > 1 else "")


def check(engine: str, p: Profile, reachable: dict[str, str], src: str, config: dict | None = None) -> TargetReport:
    """``reachable``: inspect's ``format/variant -> exact|lossy|unsupported`` for this checkpoint."""
    rules = ENGINES[engine]
    v = rules(p)
    if engine == "lmdeploy" and p.format != "turbomind":
        note = lmdeploy.workspace_note(src, reachable, config or {})
        if note:
            v.note(note)
    report = TargetReport(engine, not v.failures, v.kernel, v.failures, v.notes)
    if report.loads:
        return report
    lossy = None
    for fmt, variant in _candidates(engine, p):
        status = reachable.get(f"{fmt}/{variant}")
        if status not in ("exact", "lossy") or rules(converted(p, fmt, variant)).failures:
            continue
        if status == "exact":
            report.fix = command(src, fmt, variant)
            return report
        lossy = lossy or command(src, fmt, variant)
    if engine == "llama.cpp" and not _candidates(engine, p):
        report.no_fix = ("no gguf writer in this repack build yet; once the gguf format lands: "
                         f"repack convert {shlex.quote(str(src))} OUT --to gguf")
    elif lossy:
        report.no_fix = f"no exact conversion makes it load; `{lossy} --allow-lossy` would, re-quantizing some layers"
    else:
        report.no_fix = "no conversion repack can write makes it load"
    return report


def inspect_targets(src: str | os.PathLike | Source, engines: list[str],
                    progress: bool = False) -> tuple[Inspection, list[TargetReport]]:
    source = src if isinstance(src, Source) else open_source(src)
    info = inspect(source, progress=progress)
    p = profile_of(source, info)
    shown = str(src) if not isinstance(src, Source) else str(source.path)
    return info, [check(e, p, info.targets, shown, source.ckpt.config) for e in engines]


__all__ = ["ENGINES", "Failure", "Layer", "Profile", "TargetReport", "check", "converted", "inspect_targets",
           "profile_of"]
