"""Do two checkpoints compute the same function? Checked layer by layer at three levels.

1. integers: after canonicalisation, are codes, scales, zeros and the effective group map equal
   (counts of differing elements);
2. GEMM: the same seeded random activations through each checkpoint's own packed layout (Triton
   on CUDA, the torch reference on CPU); max abs and relative difference of the outputs;
3. with a float model (``against``), each side's quantization error: relative error and SQNR.

A layer passes when its dequantized weights are equal (max |ΔW| <= ``weight_atol``, default 0:
the same function) and the GEMM outputs agree within ``rtol`` (default: the kernel's documented
tolerance for the activation dtype). Non-quantized tensors must be equal too.
"""

from __future__ import annotations

import math
import os
import zlib
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from .dtypes import to_torch
from .errors import InputError
from .kernels import TOLERANCE, gemm, resolve_backend
from .progress import progress_bar
from .source import Source, open_source
from .checkpoint import Checkpoint
from .tensor import QuantTensor

DEFAULT_MS = (1, 16, 128)
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


@dataclass
class GemmDiff:
    m: int
    max_abs: float
    rel: float


@dataclass
class QuantError:
    rel: float
    sqnr_db: float


@dataclass
class LayerCheck:
    module: str
    shape: tuple[int, int]
    differing: dict[str, int]  # codes / scales / zeros / groups -> elements that differ
    weight_max_abs: float
    gemm: list[GemmDiff] = field(default_factory=list)
    against_a: QuantError | None = None
    against_b: QuantError | None = None
    ok: bool = True
    problem: str = ""

    @property
    def integers_equal(self) -> bool:
        return not any(self.differing.values())

    @property
    def worst_rel(self) -> float:
        return max((g.rel for g in self.gemm), default=0.0)

    @property
    def worst_abs(self) -> float:
        return max((g.max_abs for g in self.gemm), default=0.0)


@dataclass
class Verification:
    a: str
    b: str
    a_format: str
    b_format: str
    backend: str
    dtype: str
    rtol: float
    weight_atol: float
    layers: list[LayerCheck]
    only_in_a: list[str]
    only_in_b: list[str]
    tensors_differing: list[str]
    tensors_compared: int
    tensors_only_in_one: list[str] = field(default_factory=list)

    @property
    def failures(self) -> list[str]:
        out = [f"layer '{l.module}': {l.problem}" for l in self.layers if not l.ok]
        out += [f"layer '{m}' is quantized only in {self.a}" for m in self.only_in_a]
        out += [f"layer '{m}' is quantized only in {self.b}" for m in self.only_in_b]
        out += [f"tensor '{t}' differs" for t in self.tensors_differing]
        out += [f"tensor '{t}' is in only one checkpoint" for t in self.tensors_only_in_one]
        return out

    @property
    def ok(self) -> bool:
        return not self.failures

    def verdict(self) -> str:
        n = len(self.layers)
        if self.ok:
            return (f"OK: {n} layers compute the same function (max GEMM rel diff "
                    f"{max((l.worst_rel for l in self.layers), default=0):.2e} <= {self.rtol:.1e}); "
                    f"{self.tensors_compared} other tensors identical")
        f = self.failures
        return f"MISMATCH: {f[0]}" + (f" (and {len(f) - 1} more)" if len(f) > 1 else "")

    def table(self) -> str:
        against = any(l.against_a for l in self.layers)
        head = f"{'layer':<44} {'integers':<26} {'max|dW|':>9} {'gemm rel':>9} {'gemm abs':>9}"
        head += f" {'SQNR A':>7} {'SQNR B':>7}" if against else ""
        lines = [head + "  ok"]
        for l in self.layers:
            ints = "equal" if l.integers_equal else ", ".join(f"{v} {k}" for k, v in l.differing.items() if v)
            row = f"{l.module[-44:]:<44} {ints[:26]:<26} {l.weight_max_abs:>9.3g} {l.worst_rel:>9.2e} {l.worst_abs:>9.3g}"
            if against:
                row += f" {_db(l.against_a):>7} {_db(l.against_b):>7}"
            lines.append(row + ("  yes" if l.ok else "  NO"))
        return "\n".join(lines)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ok"], d["verdict"], d["failures"] = self.ok, self.verdict(), self.failures
        return d


def _db(e: QuantError | None) -> str:
    return "-" if e is None else f"{e.sqnr_db:.1f}"


def _count_differing(a: np.ndarray, b: np.ndarray) -> int:
    if a.shape != b.shape:
        return max(a.size, b.size)
    return int(np.count_nonzero(a != b))


def compare_integers(qa: QuantTensor, qb: QuantTensor) -> dict[str, int]:
    return {"codes": _count_differing(qa.codes(), qb.codes()),
            "scales": _count_differing(qa.scales.astype(np.float32), qb.scales.astype(np.float32)),
            "zeros": _count_differing(qa.zeros, qb.zeros),
            "groups": _count_differing(qa.group_index(), qb.group_index())}


def _seed(seed: int, module: str, m: int) -> int:
    return (seed * 1_000_003 + zlib.crc32(module.encode()) * 31 + m) % (2**63)


def quant_error(w: torch.Tensor, ref: torch.Tensor) -> QuantError:
    err = float((w.double() - ref.double()).norm())
    norm = float(ref.double().norm())
    rel = err / norm if norm else (0.0 if err == 0 else math.inf)
    return QuantError(rel, math.inf if err == 0 else 20 * math.log10(norm / err) if norm else -math.inf)


def _device(backend: str) -> torch.device:
    if backend != "reference" and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def check_layer(module: str, sa: Source, sb: Source, backend: str, dtype: torch.dtype, ms, seed: int,
                rtol: float, weight_atol: float, device: torch.device, against: Checkpoint | None) -> LayerCheck:
    qa, qb = sa.read(module), sb.read(module)
    if qa.shape != qb.shape:
        return LayerCheck(module, qa.shape, {}, math.inf, ok=False,
                          problem=f"shape [{qa.out_features}x{qa.in_features}] vs [{qb.out_features}x{qb.in_features}]")
    wa, wb = to_torch(qa.dequantize(torch.float32)), to_torch(qb.dequantize(torch.float32))
    check = LayerCheck(module, qa.shape, compare_integers(qa, qb), float((wa - wb).abs().max()) if wa.numel() else 0.0)
    if against is not None:
        name = f"{module}.weight"
        if name not in against:
            raise InputError(f"{against.root}: the float model has no tensor '{name}'")
        ref = to_torch(against.get(name)).float()
        if tuple(ref.shape) != tuple(wa.shape):
            raise InputError(f"{against.root}: tensor '{name}' is {list(ref.shape)}, the quantized layer is {list(wa.shape)}")
        check.against_a, check.against_b = quant_error(wa, ref), quant_error(wb, ref)
    del wa, wb
    pa, pb = sa.packed(module, qa), sb.packed(module, qb)
    for m in ms:
        g = torch.Generator().manual_seed(_seed(seed, module, m))
        x = torch.randn(m, qa.in_features, generator=g).to(dtype).to(device)
        ya = gemm(x, qa, pa, backend).float()
        yb = gemm(x, qb, pb, backend).float()
        diff = (ya - yb)
        norm = float(yb.double().norm())
        rel = float(diff.double().norm()) / norm if norm else (0.0 if not diff.any() else math.inf)
        check.gemm.append(GemmDiff(m, float(diff.abs().max()) if diff.numel() else 0.0, rel))
    if check.weight_max_abs > weight_atol:
        check.ok = False
        what = ", ".join(f"{v} {k}" for k, v in check.differing.items() if v) or "integers equal"
        check.problem = f"weights differ by up to {check.weight_max_abs:.4g} ({what})"
    elif check.worst_rel > rtol or not math.isfinite(check.worst_rel):
        check.ok = False
        worst = max(check.gemm, key=lambda d: d.rel)
        check.problem = f"GEMM outputs differ at M={worst.m}: relative {worst.rel:.3e} > {rtol:.1e}"
    return check


def _compare_tensors(sa: Source, sb: Source, names: list[str]) -> list[str]:
    differ = []
    for n in names:
        ta, tb = sa.ckpt.get(n), sb.ckpt.get(n)
        if ta.dtype != tb.dtype:
            ta, tb = ta.astype(np.float32), tb.astype(np.float32)
        if ta.shape != tb.shape or not np.array_equal(ta, tb):
            differ.append(n)
    return differ


def verify(a: str | os.PathLike, b: str | os.PathLike, against: str | os.PathLike | None = None,
           backend: str = "auto", dtype: str = "fp16", ms=DEFAULT_MS, seed: int = 0,
           rtol: float | None = None, weight_atol: float = 0.0, progress: bool = False) -> Verification:
    """Compare checkpoints ``a`` and ``b`` layer by layer; see the module docstring."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}")
    torch_dtype = DTYPES[dtype]
    device = _device(backend)
    chosen = resolve_backend(backend, device)
    sa, sb = open_source(a), open_source(b)
    for s in (sa, sb):
        if not s.modules():
            raise InputError(f"{s.path}: has no quantized layers to verify (a float model goes in --against)")
    ref = Checkpoint.open(against) if against is not None else None
    mods_a, mods_b = set(sa.modules()), set(sb.modules())
    common = sorted(mods_a & mods_b)
    tol = TOLERANCE[torch_dtype] if rtol is None else rtol
    layers = [check_layer(m, sa, sb, backend, torch_dtype, ms, seed, tol, weight_atol, device, ref)
              for m in progress_bar(common, "verify", progress)]
    pa, pb = set(sa.passthrough()), set(sb.passthrough())
    shared = sorted(pa & pb)
    return Verification(str(sa.path), str(sb.path), f"{sa.detection.format}/{sa.detection.variant}",
                        f"{sb.detection.format}/{sb.detection.variant}", chosen, dtype, tol, weight_atol, layers,
                        sorted(mods_a - mods_b), sorted(mods_b - mods_a), _compare_tensors(sa, sb, shared), len(shared),
                        sorted(pa ^ pb))
