"""quantize: a float model to a quantized checkpoint in any format, one decoder block at a time.

The calibration batch is embedded once; then for each block: its weights are read (fp32, on the
device), the block is run on the batch while its linears' inputs are captured (one Hessian per
input, and for AWQ the inputs themselves), its linears are quantized, and the block is run again
with the quantized weights to give the next block its inputs. Only one block's weights and
activations are alive at a time, besides the calibration batch. The QuantTensors go through
:func:`repack.convert.convert`, so every format's writer, checks and atomic output apply.
"""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch

from ..dtypes import to_torch, torch_dtype
from .. import formats
from ..checkpoint import check_target
from . import METHODS
from ..errors import InputError, UnsupportedError
from ..packing import SUPPORTED_BITS
from ..progress import progress_bar
from ..source import open_source
from ..tensor import QuantTensor
from . import awq, fold
from .calib import from_model, from_text
from .gptq import Hessian, gptq_quantize
from .model import Spec, block_forward, block_tensors, embed
from .output import QuantizedSource
from .rtn import clip_groups, fake_quantize, rtn_quantize
from .weights import ModelWeights

CHUNK = 8  # calibration samples per forward call: bounds the attention matrix, not the result
AWQ_SCALE_TOKENS = 8192  # input rows the AWQ scale search sees (evenly spaced over the batch)
AWQ_CLIP_TOKENS = 512


@dataclass
class LayerError:
    module: str
    rel: float  # ||X W^T - X Q^T|| / ||X W^T|| over the calibration inputs X, this method
    rtn_rel: float  # the same for round-to-nearest of the same weight


@dataclass
class BlockReport:
    index: int
    seconds: float
    held_bytes: int  # tensors the driver held at its peak in this block (activations, weights, Hessians)
    layers: list[LayerError]


@dataclass
class QuantizeReport:
    model: str
    out: str
    method: str
    bits: int
    group_size: int
    sym: bool
    act_order: bool
    calib: str
    tokenizer: str
    nsamples: int
    seqlen: int
    device: str
    format: str
    variant: str
    seconds: float = 0.0
    peak_rss_bytes: int = 0
    blocks: list[BlockReport] = field(default_factory=list)
    static_groups: bool = False

    def layers(self) -> list[LayerError]:
        return [l for b in self.blocks for l in b.layers]

    def to_dict(self) -> dict:
        return asdict(self)


def pick_device(device: str) -> torch.device:
    """"auto" (CUDA when there is one), "cuda" or "cpu"; a one-line error for anything else."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise UnsupportedError("--device cuda: no CUDA device is available")
    if device not in ("cpu", "cuda"):
        raise UnsupportedError(f"device must be auto, cuda or cpu, not {device!r}")
    return torch.device(device)


def _rel(w: torch.Tensor, q: torch.Tensor, h: torch.Tensor) -> float:
    """sqrt(tr(D H D^T) / tr(W H W^T)), D = W - Q: the relative output error on the inputs of H."""
    w, d = w.double(), (w - q).double()
    den = float(((w @ h) * w).sum())
    return (max(float(((d @ h) * d).sum()), 0.0) / den) ** 0.5 if den > 0 else 0.0


def _nbytes(*tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


def _spread(x: torch.Tensor, n: int) -> torch.Tensor:
    """At most n rows of x, evenly spaced (deterministic)."""
    return x if x.shape[0] <= n else x[torch.linspace(0, x.shape[0] - 1, n).long().to(x.device)]


class _Block:
    """One block's fp32 tensors on the device, and its forward pass with capture."""

    def __init__(self, spec: Spec, i: int, weights: ModelWeights, dev: torch.device):
        self.spec, self.i, self.prefix = spec, i, spec.arch.prefix(i)
        self.awq_scales: dict[str, tuple[torch.Tensor | None, torch.Tensor | None]] = {}  # module -> (columns, rows)
        self.t = {n: t.to(dev) for n, t in block_tensors(spec, i, weights.get, weights.bias).items()}

    def w(self, module: str) -> torch.Tensor:
        return self.t[self.prefix + module + ".weight"]

    def run(self, x: torch.Tensor, capture: Callable[[str, torch.Tensor], None] | None = None) -> torch.Tensor:
        def linear(name: str, h: torch.Tensor) -> torch.Tensor:
            if capture is not None:
                capture(name[len(self.prefix):], h)
            return torch.nn.functional.linear(h, self.t[name + ".weight"], self.t.get(name + ".bias"))
        with torch.no_grad():
            return torch.cat([block_forward(self.spec, self.i, x[b:b + CHUNK], self.t.__getitem__, linear)
                              for b in range(0, x.shape[0], CHUNK)])

    def capture(self, x: torch.Tensor, stages, keep_inputs: bool) -> tuple[dict[str, Hessian], dict[str, torch.Tensor]]:
        """Run the block; per stage (keyed by its first linear): the input Hessian and, if asked, the inputs."""
        first = {s.linears[0]: s for s in stages}
        hessians = {m: Hessian(self.w(m).shape[1], x.device) for m in first}
        kept: dict[str, list[torch.Tensor]] = {m: [] for m in first}

        def grab(module: str, h: torch.Tensor) -> None:
            if module in first:
                hessians[module].add(h)
                if keep_inputs:
                    kept[module].append(h.reshape(-1, h.shape[-1]))
        self.run(x, grab)
        return hessians, {m: torch.cat(v) for m, v in kept.items() if v}


def quantize(model: str | os.PathLike, out: str | os.PathLike, method: str = "gptq", bits: int = 4,
             group_size: int = 128, sym: bool = True, act_order: bool | None = None, *, static_groups: bool | None = None,
             true_sequential: bool = True, damp: float = 0.01, clip_search: bool = True, calib: str = "self", nsamples: int = 128,
             seqlen: int = 512, to: str = "auto_gptq", variant: str | None = None, seed: int = 0,
             device: str = "auto", force: bool = False, progress: bool = False,
             on_block: Callable[[BlockReport], None] | None = None) -> QuantizeReport:
    """Quantize the float model ``model`` (a folder, hub id, or any checkpoint repack reads) with
    ``method`` and write it to ``out`` as format ``to``. ``calib``: ``"self"`` (token ids sampled from
    the model, seeded), a text file, or a hub dataset file ``hf://datasets/ORG/NAME/PATH`` (plain text,
    ``.jsonl`` with a ``text`` field, ``.parquet`` with a ``text`` column). Deterministic for a given seed on a given device.

    GPTQ column order: ``act_order`` (decreasing Hessian diagonal) with ``static_groups`` (each
    group's range fixed from the float weights, groups sequential on disk, no ``g_idx``) unless
    told otherwise; ``None`` means that default. Act-order with static groups removed 47 % of RTN's
    perplexity increase on SmolLM2-135M where natural order removed 27 % (benchmarks/NOTES-quantize.md),
    and its layout is the plain one every kernel and format reads. ``static_groups=False`` with
    act-order writes a reordering ``g_idx`` (the best perplexity; formats with ``g_idx`` only)."""
    start = time.perf_counter()
    if method not in METHODS:
        raise UnsupportedError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    if bits not in SUPPORTED_BITS:
        raise UnsupportedError(f"bits must be one of {', '.join(map(str, SUPPORTED_BITS))}, got {bits}")
    if group_size != -1 and group_size <= 0:
        raise UnsupportedError(f"group size must be -1 or positive, got {group_size}")
    if nsamples < 1 or seqlen < 2:
        raise UnsupportedError(f"need nsamples >= 1 and seqlen >= 2, got {nsamples} and {seqlen}")
    if method != "gptq" and (act_order or static_groups):
        raise UnsupportedError("act-order and static groups apply to gptq only")
    act_order = method == "gptq" if act_order is None else act_order
    static_groups = act_order if static_groups is None else static_groups
    target = formats.get(to)
    variant = formats.resolve_variant(target, variant)
    if not target.quantized:
        raise UnsupportedError(f"{to!r} is not a quantized format; quantize to one and `repack convert` it")
    caps = target.capabilities(variant)
    if bits not in caps.bits:
        raise UnsupportedError(f"{to}/{variant} cannot hold {bits}-bit weights (it holds {caps.bits})")
    if act_order and not static_groups and not caps.act_order:
        raise UnsupportedError(f"{to}/{variant} cannot hold act-order groups; add static groups or choose auto_gptq")
    out = Path(out)
    check_target(out, force)
    dev = pick_device(device)
    src = open_source(model)
    where = str(src.path)
    spec = Spec.from_config(src.ckpt.config, where)
    weights = ModelWeights(src)
    for i in range(spec.layers):
        for m in spec.arch.linears:
            name = spec.arch.prefix(i) + m + ".weight"
            if not weights.has(name):
                raise InputError(f"{where}: tensor '{name}' not found")
    for m in spec.arch.linears:  # refuse shapes the target cannot hold before any work
        qt = weights.quant(spec.arch.prefix(0) + m)
        N, K = qt.shape if qt is not None else tuple(src.ckpt.info(spec.arch.prefix(0) + m + ".weight").shape)
        why = caps.shape_problem(K, N, bits, group_size)
        if why:
            raise UnsupportedError(f"{where}: layer '{spec.arch.prefix(0) + m}' cannot be written as {to}/{variant}: {why}")
    zero_range = None if sym else caps.zero_range(bits)
    if zero_range is not None:
        zero_range = (max(zero_range[0], 0), min(zero_range[1], 2**bits - 1))
        if zero_range[0] >= zero_range[1]:
            raise UnsupportedError(f"{to}/{variant} holds symmetric {bits}-bit weights only; quantize with --sym")
    embed_dtype = weights.dtype(spec.arch.embed) if spec.arch.embed in src.ckpt else torch.float16
    scale_dtype = torch.bfloat16 if embed_dtype == torch.bfloat16 else torch.float16
    q = dict(bits=bits, group_size=group_size, sym=sym, scale_dtype=scale_dtype)

    if calib == "self":
        bos = src.ckpt.config.get("bos_token_id")
        ids = from_model(spec, weights.get, weights.bias, nsamples, seqlen, seed, bos if isinstance(bos, int) else 0)
        tokenizer = "model samples"
    else:
        ids, tokenizer = from_text(calib, src.path, spec.vocab, nsamples, seqlen, seed)
    report = QuantizeReport(where, str(out), method, bits, group_size, sym, act_order, calib, tokenizer, nsamples,
                            seqlen, dev.type, to, variant, static_groups=static_groups)
    x = embed(spec, ids, weights.get).to(dev)
    quantized: dict[str, QuantTensor] = {}
    replaced: dict[str, torch.Tensor] = {}
    for i in progress_bar(range(spec.layers), "quantize", progress):
        t0 = time.perf_counter()
        block = _Block(spec, i, weights, dev)
        originals = {m: block.w(m).clone() for m in spec.arch.linears}
        if method == "gptq":
            held, hessians = _gptq_block(block, x, quantized, q, act_order, static_groups, true_sequential, damp, zero_range,
                                          clip_search)
        else:
            held, hessians = _rtn_awq_block(block, x, quantized, replaced, q, method == "awq", zero_range, src)
        layers = []
        for stage in spec.stages:
            h = hessians[stage.linears[0]].h
            for m in stage.linears:
                name = block.prefix + m
                w = originals[m]
                rtn = fake_quantize(w, bits, group_size, sym, scale_dtype, zero_range=zero_range)
                layers.append(LayerError(name, _rel(w, _effective(block, m, quantized[name]), h), _rel(w, rtn, h)))
        held += _nbytes(*originals.values())
        x_next = block.run(x)
        held += _nbytes(x, x_next)
        x = x_next
        del block, originals, hessians
        br = BlockReport(i, time.perf_counter() - t0, held, layers)
        report.blocks.append(br)
        if on_block is not None:
            on_block(br)
    del x
    from ..convert import convert
    label = f"{method} {bits}-bit g{group_size} {'sym' if sym else 'asym'}{(' act-order, static groups' if static_groups else ' act-order') if act_order else ''}"
    convert(QuantizedSource(src, quantized, replaced, label), out, to, variant, force=force, progress=progress)
    report.seconds = time.perf_counter() - start
    report.peak_rss_bytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return report


def _effective(block: _Block, module: str, qt: QuantTensor) -> torch.Tensor:
    """The quantized weight in the float model's coordinates (AWQ's folded scales undone)."""
    w = to_torch(qt.dequantize(torch.float32)).to(block.w(module).device)
    col, row = block.awq_scales.get(module, (None, None))
    if col is not None:
        w = w / col
    if row is not None:
        w = w * row[:, None]
    return w


def _store(block: _Block, module: str, qt: QuantTensor, quantized: dict[str, QuantTensor]) -> None:
    """Keep the QuantTensor; the block computes with its dequantized weight from now on."""
    quantized[block.prefix + module] = qt
    block.t[block.prefix + module + ".weight"] = to_torch(qt.dequantize(torch.float32)).to(block.w(module).device)


def _gptq_block(block: _Block, x, quantized, q, act_order, static_groups, true_sequential, damp, zero_range,
                clip_search=False):
    stages = block.spec.stages
    hessians: dict[str, Hessian] = {}
    held = 0
    groups = [[s] for s in stages] if true_sequential else [list(stages)]
    for group in groups:  # true-sequential: each stage sees the inputs of the already-quantized ones
        hs, _ = block.capture(x, group, keep_inputs=False)
        hessians |= hs
        held = max(held, _nbytes(*block.t.values()) + sum(_nbytes(h.h) for h in hessians.values()))
        for stage in group:
            for m in stage.linears:
                qt = gptq_quantize(block.w(m), hs[stage.linears[0]].h, act_order=act_order, static_groups=static_groups,
                                   damp=damp, zero_range=zero_range, clip_search=clip_search, **q)
                _store(block, m, qt, quantized)
    return held, hessians


def _rtn_awq_block(block: _Block, x, quantized, replaced, q, use_awq: bool, zero_range, src):
    stages = block.spec.stages
    hessians, inputs = block.capture(x, stages, keep_inputs=use_awq)
    held = _nbytes(*block.t.values(), *inputs.values()) + sum(_nbytes(h.h) for h in hessians.values())
    if use_awq:
        for stage in stages:
            first, stop = fold.prev_rows(block.t, block.prefix, stage)
            if stop - first != block.w(stage.linears[0]).shape[1]:
                continue  # e.g. v_proj -> o_proj under grouped KV heads: no channel-for-channel fold
            xs = _spread(inputs[stage.linears[0]], AWQ_SCALE_TOKENS)
            s, _ = awq.search_scales(xs, [block.w(m) for m in stage.linears], zero_range=zero_range, **q)
            for m in stage.linears:
                block.awq_scales[m] = (s, block.awq_scales.get(m, (None, None))[1])
            for name in fold.fold(block.t, block.prefix, stage, s, block.spec.arch.norm):
                # stored as they are (norms, biases): the block goes on with them as they will be stored
                replaced[name] = block.t[name].to(torch_dtype(src.ckpt.get(name).dtype)).cpu()
                block.t[name] = replaced[name].to(block.t[name])
            if not stage.prev_is_norm:
                col, _ = block.awq_scales.get(stage.prev, (None, None))
                block.awq_scales[stage.prev] = (col, fold.row_scales(block.t, block.prefix, stage, s))
        for stage in stages:
            s = block.awq_scales.get(stage.linears[0], (None, None))[0]
            xs = _spread(inputs[stage.linears[0]], AWQ_CLIP_TOKENS)
            xs = xs / s if s is not None else xs  # the inputs the scaled linears now see
            for m in stage.linears:
                if m in block.spec.arch.no_clip:
                    continue  # their error passes through the softmax; clipping on the linear's error misleads (as in AWQ)
                ratio = awq.search_clip(xs, block.w(m), zero_range=zero_range, **q)
                block.t[block.prefix + m + ".weight"] = clip_groups(block.w(m), ratio, q["group_size"], q["sym"])
    for m in block.spec.arch.linears:
        _store(block, m, rtn_quantize(block.w(m).cpu(), zero_range=zero_range, **q), quantized)
    return held, hessians
