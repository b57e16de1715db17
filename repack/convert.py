"""convert: any readable checkpoint to any registered format, exact or refused before writing.

Two passes over the source, one module in memory at a time. The plan pass reads every quantized
module, fits it into the target (:mod:`repack.fit`), measures any loss and declares every output
tensor; nothing is written unless every layer is exact (or ``allow_lossy``). The write pass reads
each module again, packs it and streams the bytes into their precomputed place in the shards.
"""

from __future__ import annotations

import contextlib
import copy
from collections import Counter
import os
from dataclasses import dataclass, field
from pathlib import Path

from . import formats
from . import parallel_write
from .checkpoint import DEFAULT_SHARD_SIZE, TensorSpec, check_target
from .dtypes import NAMES as DTYPE_NAMES
from .dtypes import name as dtype_name
from .errors import LossyConversionError, UnsupportedError
from .fit import Fit, fit
from .formats.base import Scheme
from .pipeline import ahead_map, torch_single_threaded
from .progress import progress_bar
from .source import Source, open_source


@dataclass
class LayerReport:
    module: str
    source: str
    status: str  # exact | lossy | unsupported
    reasons: list[str]
    max_abs_err: float = 0.0


@dataclass
class Plan:
    source: str
    source_format: str
    source_variant: str
    target: str
    target_format: str
    target_variant: str
    layers: list[LayerReport] = field(default_factory=list)
    passthrough: int = 0
    output_bytes: int = 0
    notes: list[str] = field(default_factory=list)
    written: bool = False

    @property
    def exact(self) -> bool:
        return all(layer.status == "exact" for layer in self.layers)

    def by_status(self, status: str) -> list[LayerReport]:
        return [layer for layer in self.layers if layer.status == status]

    def table(self, only_problems: bool = False) -> str:
        rows = [l for l in self.layers if not only_problems or l.status != "exact"]
        width = max([len(l.module) for l in rows] + [6])
        lines = [f"{'layer':<{width}}  {'status':<11}  {'max abs err':>11}  reason"]
        for l in rows:
            err = f"{l.max_abs_err:.4g}" if l.status == "lossy" else "-"
            lines.append(f"{l.module:<{width}}  {l.status:<11}  {err:>11}  {'; '.join(l.reasons) or '-'}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"source": self.source, "source_format": self.source_format, "source_variant": self.source_variant,
                "target": self.target, "target_format": self.target_format, "target_variant": self.target_variant,
                "exact": self.exact, "written": self.written, "passthrough_tensors": self.passthrough,
                "output_bytes": self.output_bytes, "notes": self.notes,
                "layers": [vars(l) for l in self.layers]}


@torch_single_threaded()
def convert(src: str | os.PathLike | Source, dst: str | os.PathLike, to: str, variant: str | None = None, *,
            force: bool = False, dry_run: bool = False, allow_lossy: bool = False,
            scale_dtype: str | None = None, shard_size: int = DEFAULT_SHARD_SIZE,
            source_format: str | None = None, progress: bool = False, tp: int = 1) -> Plan:
    """Convert ``src`` into format ``to`` at ``dst``; returns the plan (with ``written``).

    Raises UnsupportedError if a layer cannot be held by the target at all, LossyConversionError
    if some layer would change and ``allow_lossy`` is false, OutputError if ``dst`` exists
    without ``force``. ``dry_run`` plans and measures without writing. ``tp``: tensor-parallel
    ranks, for formats whose files are pre-split per rank (turbomind).
    """
    source = src if isinstance(src, Source) else open_source(src, source_format)
    target = formats.get(to)
    variant = formats.resolve_variant(target, variant)
    sdt = DTYPE_NAMES[scale_dtype] if scale_dtype else None
    dst = Path(dst)
    if not dry_run:
        check_target(dst, force)
    if target.quantized and not source.modules():
        raise UnsupportedError(f"{source.path}: is a float model with no quantized layers; "
                               f"use `repack quantize` to make a {to} checkpoint from it")
    if tp != 1 and not target.tensor_parallel:
        raise UnsupportedError(f"format {to!r} has no tensor-parallel layout; --tp applies to turbomind only")
    if tp < 1:
        raise UnsupportedError(f"tp must be at least 1, got {tp}")
    caps = target.capabilities(variant)
    plan = Plan(str(source.path), source.detection.format, source.detection.variant, str(dst), to, variant,
                notes=list(source.detection.notes) + target.output_notes(source))

    # -- plan pass ---------------------------------------------------------------------------
    items: list[tuple[str, str]] = [(m, "module") for m in source.modules()]
    items += [(n, "tensor") for n in source.passthrough()]
    items.sort()
    specs: list[TensorSpec] = []
    settings: dict[str, tuple] = {}

    def fitted_item(item):
        name, kind = item
        if kind != "module":
            return name, kind, None, None
        qt = source.read(name)
        return name, kind, qt, fit(qt, caps, sdt)

    # modules are read and fitted on two threads a few steps ahead (pipeline.py), in order
    for name, kind, qt, f in progress_bar(ahead_map(fitted_item, items), "plan", progress, total=len(items)):
        if kind == "tensor":
            info = source.ckpt.info(name)
            specs.append(TensorSpec(name, info.dtype, info.shape))
            continue
        plan.layers.append(LayerReport(name, qt.describe(), f.status, f.unsupported + f.lossy + f.exact_notes, f.max_abs_err))
        if f.unsupported:
            continue
        t = f.tensor
        settings[name] = (t.bits, t.group_size, t.sym, t.act_order, t.scales.dtype)
        specs += target.specs(name, t, variant)
    qt = f = t = None  # drop the last module before the write pass: one module in memory at a time
    plan.passthrough = sum(1 for _, k in items if k == "tensor")
    plan.output_bytes = sum(s.nbytes for s in specs)
    unsupported = plan.by_status("unsupported")
    if unsupported:
        l = unsupported[0]
        raise UnsupportedError(f"{source.path}: layer '{l.module}' cannot be written as {to}/{variant}: {l.reasons[0]}"
                               + (f" (and {len(unsupported) - 1} more layers)" if len(unsupported) > 1 else ""))
    lossy = plan.by_status("lossy")
    scheme = _scheme(source, settings, to)
    if scheme is not None:
        target.quantization_config(scheme, variant)  # a target that cannot express the mix refuses now
    config = _config(source, target, scheme, variant, specs)
    target.layout_problem(specs, config, variant, tp, str(source.path))
    if dry_run:
        return plan
    if lossy and not allow_lossy:
        worst = max(lossy, key=lambda l: l.max_abs_err)
        raise LossyConversionError(
            f"{source.path}: {len(lossy)} of {len(plan.layers)} layers cannot be written exactly as {to}/{variant} "
            f"(worst: '{worst.module}', max abs err {worst.max_abs_err:.4g}: {worst.reasons[0]}; "
            f"layers: {', '.join(l.module for l in lossy[:8])}{', ...' if len(lossy) > 8 else ''}); "
            "run with --dry-run for the table, or --allow-lossy to accept", plan)

    # -- write pass --------------------------------------------------------------------------
    whole_reads = getattr(source.ckpt, "whole_reads", contextlib.nullcontext)  # every tensor read is read whole
    with whole_reads(), target.writer(dst, specs, force=force, shard_size=shard_size, source=source, config=config,
                                      variant=variant, **({"tp": tp} if target.tensor_parallel else {})) as writer:
        slices = getattr(writer, "accepts_raw_slices", False) and hasattr(source.ckpt, "raw_slice")
        own_layout = getattr(writer, "pack_module", None)  # a writer that lays out modules itself

        def packed_item(item):
            name, kind = item
            if kind == "tensor":
                return [(name, source.ckpt.raw_slice(name) if slices else source.ckpt.iter_raw(name))]
            f: Fit = fit(source.read(name), caps, sdt, measure=False)
            own = own_layout(name, f.tensor) if own_layout else None
            return own if own is not None else list(target.pack(name, f.tensor, variant).items())

        # two forked processes pack modules and write them at their planned offsets, or take whole
        # layers each (TurboMind): numpy's short calls serialize on the GIL in threads (parallel_write.py)
        in_processes = (parallel_write.write_all if getattr(writer, "fills_in_any_order", False) else
                        parallel_write.write_groups if getattr(writer, "writes_groups", False) else None)
        if in_processes is not None and parallel_write.available():
            for _ in progress_bar(in_processes(writer, items, packed_item), "write", progress, total=len(items)):
                pass
        else:
            # modules are read and packed on two threads a few steps ahead of the writes, in order
            for tensors in progress_bar(ahead_map(packed_item, items), "write", progress, total=len(items)):
                for tname, tensor in tensors:
                    writer.write(tname, tensor)
        writer.finish(config, source.ckpt.side_files(),
                      target.extra_files(scheme, variant) if scheme else {})
    plan.written = True
    return plan


def _scheme(source: Source, settings: dict[str, tuple], to: str) -> Scheme | None:
    """Model-wide settings are the most common (bits, group size, sym); other modules are overrides.
    act-order is per layer by nature: under desc_act a one-group layer has a sequential g_idx."""
    if not settings:
        return None
    counts = Counter(s[:3] for s in settings.values())
    bits, gs, sym = max(counts, key=lambda k: (counts[k], str(k)))
    overrides = tuple((m, s[:3]) for m, s in settings.items() if s[:3] != (bits, gs, sym))
    act = any(s[3] for s in settings.values())
    return Scheme(bits, gs, sym, act, tuple(settings), tuple(source.linear_modules()),
                  next(iter(settings.values()))[4], overrides)


def _config(source: Source, target, scheme: Scheme | None, variant: str, specs: list[TensorSpec]) -> dict:
    config = copy.deepcopy(source.ckpt.config)
    config.pop("quantization_config", None)
    qc = target.quantization_config(scheme, variant) if scheme else None
    if qc:
        config["quantization_config"] = qc
    elif not target.quantized and scheme:
        dtype = scheme.scale_dtype if variant == "auto" else DTYPE_NAMES[variant]
        key = "dtype" if "dtype" in config and "torch_dtype" not in config else "torch_dtype"
        config[key] = {"fp16": "float16", "bf16": "bfloat16", "fp32": "float32"}[dtype_name(dtype)]
    return config
