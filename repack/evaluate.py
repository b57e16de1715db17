"""eval: perplexity of any readable checkpoint on a text file, over non-overlapping windows.

The model runs one block at a time over all windows (the same plain-torch decoder the quantizer
uses). A quantized linear computes through repack's kernels: with the reference backend it is
dequantized in fp32 and multiplied in fp32, so two checkpoints holding the same integers give the
same perplexity whatever their format; with the Triton backend (CUDA) the W4A16 kernel reads the
checkpoint's own packed layout with fp16 activations (the rest of the block stays fp32), which is
what an engine computes, and layouts of the same integers then agree to the kernel's tolerance.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass

import torch

from .errors import InputError, UnsupportedError
from .kernels import gemm, resolve_backend
from .progress import progress_bar
from .quantize.model import Spec, block_forward, embed, logits
from .quantize.corpus import read_corpus
from .quantize.driver import pick_device
from .quantize.tokens import decode, tokenize
from .quantize.weights import ModelWeights
from .source import open_source

CHUNK = 8  # windows per forward call
ACT_DTYPE = torch.float16  # the kernels' activation dtype on the Triton path


@dataclass
class EvalResult:
    checkpoint: str
    format: str
    perplexity: float
    nll: float  # mean negative log-likelihood per predicted token (nats)
    tokens: int  # predicted tokens
    windows: int
    seqlen: int
    tokenizer: str
    backend: str = "reference"
    device: str = "cpu"

    def to_dict(self) -> dict:
        return asdict(self)


class BlockLinears:
    """The linears of one block on the device: fp32 weights for float layers and the reference
    backend; the canonical tensor and its packed layout for the Triton backend."""

    def __init__(self, weights: ModelWeights, names: list[str], device: torch.device, backend: str):
        self.dense: dict[str, torch.Tensor] = {}
        self.kernel: dict[str, tuple] = {}
        self.bias: dict[str, torch.Tensor] = {}
        for name in names:
            qt = weights.quant(name) if backend == "triton" else None
            if qt is not None:
                self.kernel[name] = (qt, weights.source.packed(name, qt).to(device))
            else:
                self.dense[name] = weights.get(name + ".weight").to(device)
            b = weights.bias(name)
            if b is not None:
                self.bias[name] = b.to(device)

    def __call__(self, name: str, h: torch.Tensor) -> torch.Tensor:
        if name in self.kernel:
            qt, packed = self.kernel[name]
            y = gemm(h.to(ACT_DTYPE), qt, packed, "auto").float()
            b = self.bias.get(name)
            return y + b if b is not None else y
        return torch.nn.functional.linear(h, self.dense[name], self.bias.get(name))


def _open_model(checkpoint: str | os.PathLike, device: str, backend: str) -> tuple:
    """The device, the chosen linear backend, the opened checkpoint, its model spec and its weights (read lazily)."""
    dev = pick_device(device)
    try:
        chosen = resolve_backend(backend, dev)
    except ValueError as e:
        raise UnsupportedError(str(e)) from None
    src = open_source(checkpoint)
    return dev, chosen, src, Spec.from_config(src.ckpt.config, str(src.path)), ModelWeights(src)


def evaluate(checkpoint: str | os.PathLike, text: str | os.PathLike, seqlen: int = 512, max_windows: int | None = None,
             progress: bool = False, device: str = "auto", backend: str = "auto") -> EvalResult:
    """Perplexity of ``checkpoint`` on the text ``text`` (a file or ``hf://datasets/...``, as for
    calibration; :mod:`repack.quantize.corpus`): the tokens are cut into windows of
    ``seqlen`` (the tail that does not fill one is dropped) and each window predicts its tokens 2..L.
    ``backend``: "reference" (fp32 dequantize + matmul, any device), "triton" (the W4A16 kernel on
    the checkpoint's own layout, CUDA) or "auto" (Triton on CUDA when available)."""
    if seqlen < 2:
        raise InputError(f"seqlen must be at least 2, got {seqlen}")
    dev, chosen, src, spec, weights = _open_model(checkpoint, device, backend)
    ids, tok = tokenize(read_corpus(text), src.path, spec.vocab)
    n = ids.numel() // seqlen
    if max_windows is not None:
        n = min(n, max_windows)
    if n == 0:
        raise InputError(f"{text}: {ids.numel()} tokens ({tok}), fewer than one window of --seqlen {seqlen}")
    windows = ids[: n * seqlen].view(n, seqlen).to(dev)
    with torch.no_grad():
        def get(name: str) -> torch.Tensor:
            return weights.get(name).to(dev)
        x = embed(spec, windows, get)
        for i in progress_bar(range(spec.layers), "eval", progress):
            a, p = spec.arch, spec.arch.prefix(i)
            t = {p + n: get(p + n) for w in (a.attn_norm, a.mlp_norm) for n in a.norm_tensors(w)}
            linear = BlockLinears(weights, [p + m for m in a.linears], dev, chosen)
            x = torch.cat([block_forward(spec, i, x[b:b + CHUNK], t.__getitem__, linear) for b in range(0, n, CHUNK)])
            del linear
        total = 0.0
        head = {n: get(n) for n in (*spec.arch.norm_tensors(spec.arch.final_norm), spec.lm_head)}
        for b in range(0, n, CHUNK):
            lg = logits(spec, x[b:b + CHUNK, :-1], head.__getitem__).double()
            total += float(torch.nn.functional.cross_entropy(lg.reshape(-1, lg.shape[-1]),
                                                             windows[b:b + CHUNK, 1:].reshape(-1), reduction="sum"))
    count = n * (seqlen - 1)
    nll = total / count
    return EvalResult(str(src.path), f"{src.detection.format}/{src.detection.variant}", math.exp(nll), nll, count, n,
                      seqlen, tok, chosen, dev.type)


@dataclass
class Generation:
    checkpoint: str
    prompt: str
    text: str  # the continuation only
    ids: list[int]  # the continuation's token ids
    tokenizer: str


def generate(checkpoint: str | os.PathLike, prompt: str, max_new_tokens: int = 32, device: str = "auto",
             backend: str = "auto") -> Generation:
    """Greedy continuation of ``prompt`` with a KV cache, the linears computed as in :func:`evaluate`
    (``backend``). The whole model is read once onto the device (fp32 floats; with Triton the
    quantized linears stay packed): meant for a quick look at a model's output, not for serving."""
    dev, chosen, src, spec, weights = _open_model(checkpoint, device, backend)
    ids, tok = tokenize(prompt, src.path, spec.vocab)
    if ids.numel() == 0:
        raise InputError("the prompt is empty")
    cache: dict[str, torch.Tensor] = {}

    def get(name: str) -> torch.Tensor:
        if name not in cache:
            cache[name] = weights.get(name).to(dev)
        return cache[name]
    linear = BlockLinears(weights, [spec.arch.prefix(i) + m for i in range(spec.layers) for m in spec.arch.linears],
                          dev, chosen)
    seq, step = ids[None].to(dev), ids[None].to(dev)
    kv: dict = {}
    with torch.no_grad():
        for _ in range(max_new_tokens):
            x = embed(spec, step, get, seq.shape[1] - step.shape[1])
            for i in range(spec.layers):
                x = block_forward(spec, i, x, get, linear, kv)
            step = logits(spec, x[:, -1:], get)[0, -1].argmax().view(1, 1)
            seq = torch.cat([seq, step], 1)
    new = seq[0, ids.numel():].tolist()
    return Generation(str(src.path), prompt, decode(new, src.path, tok), new, tok)
