"""The demo: a tiny float Llama, quantized (RTN), converted through every format and back."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from .dtypes import to_torch, torch_dtype
from . import formats
from .checkpoint import Checkpoint
from .convert import convert
from .errors import UnsupportedError
from .source import RtnSource, open_source


@dataclass
class DemoRow:
    format: str
    variant: str
    bytes: int
    exact: bool
    max_abs_diff: float


def _weights(path: Path) -> dict[str, torch.Tensor]:
    """module -> dequantized fp32 weight, for any readable folder."""
    src = open_source(path)
    if src.modules():
        return {m: to_torch(src.read(m).dequantize(torch.float32)) for m in src.modules()}
    return {n[:-7]: to_torch(src.ckpt.get(n)).to(torch.float32) for n in src.ckpt.names() if n.endswith(".weight")}


def got_dtype(path: Path) -> torch.dtype:
    ckpt = Checkpoint.open(path)
    return next(torch_dtype(ckpt.get(n).dtype) for n in ckpt.names() if n.endswith("q_proj.weight"))


def _size(path: Path) -> int:
    files = [p for pattern in ("*.safetensors", "*.gguf") for p in path.glob(pattern)]
    files += [p for p in (path / "triton_models" / "weights").glob("*") if not p.name.startswith("config.")]
    return sum(p.stat().st_size for p in files)


def _holds_exactly(base: Path, out: Path, fmt: str, variant: str) -> bool:
    try:
        return convert(base, out, fmt, variant, dry_run=True).exact
    except UnsupportedError:
        return False


def run_demo(workdir: str | os.PathLike | None = None, bits: int = 4, group_size: int = 64, sym: bool = False) -> list[DemoRow]:
    from .synthetic import write_float_model

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(workdir) if workdir else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        base = work / "base-auto_gptq-v1"
        if not base.exists():
            float_dir = write_float_model(work / "float")
            convert(RtnSource(Checkpoint.open(float_dir), bits, group_size, sym), base, "auto_gptq", "v1")
        reference = _weights(base)
        rows = []
        for fmt in formats.all_formats():
            for variant in fmt.variants:
                out = work / f"{fmt.name}-{variant}"
                if not _holds_exactly(base, out, fmt.name, variant):
                    continue  # e.g. gguf q4_0 or marlin gptq for asymmetric zeros, marlin checkpoint for narrow layers, turbomind outside group 128
                there = convert(base, out, fmt.name, variant, force=True)
                exact = there.exact
                check = out
                if fmt.quantized:
                    back = work / f"{fmt.name}-{variant}-back"
                    exact &= convert(out, back, "auto_gptq", "v1", force=True).exact
                    check = back
                got = _weights(check)
                # a dense copy is exact when it equals the dequantized weight rounded once to its dtype
                dtype = None if fmt.quantized else got_dtype(out)
                diff = max(float((got[m] - (reference[m] if dtype is None else reference[m].to(dtype).float())).abs().max())
                           for m in reference)
                rows.append(DemoRow(fmt.name, variant, _size(out), exact and diff == 0.0, diff))
        return rows


def format_table(rows: list[DemoRow]) -> str:
    fw = max([len("format")] + [len(r.format) for r in rows])
    vw = max([len("variant")] + [len(r.variant) for r in rows])
    lines = [f"{'format':<{fw}} {'variant':<{vw}} {'bytes':>10}  {'exact?':<7} max abs diff"]
    for r in rows:
        lines.append(f"{r.format:<{fw}} {r.variant:<{vw}} {r.bytes:>10}  {'yes' if r.exact else 'NO':<7} {r.max_abs_diff:.3g}")
    return "\n".join(lines)
