"""eval: perplexity of any readable checkpoint on a text file, over non-overlapping windows.

The model runs one block at a time over all windows (the same plain-torch decoder the quantizer
uses); a quantized linear computes with the reference kernel's math (dequantize in fp32, matmul),
so two checkpoints holding the same integers give the same perplexity whatever their format.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass

import torch

from .errors import InputError
from .progress import progress_bar
from .quantize.model import Spec, block_forward, block_tensors, embed, logits, plain_linear
from .quantize.corpus import read_corpus
from .quantize.tokens import decode, tokenize
from .quantize.weights import ModelWeights
from .source import open_source

CHUNK = 8  # windows per forward call


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

    def to_dict(self) -> dict:
        return asdict(self)


def evaluate(checkpoint: str | os.PathLike, text: str | os.PathLike, seqlen: int = 512, max_windows: int | None = None,
             progress: bool = False) -> EvalResult:
    """Perplexity of ``checkpoint`` on the text ``text`` (a file or ``hf://datasets/...``, as for
    calibration; :mod:`repack.quantize.corpus`): the tokens are cut into windows of
    ``seqlen`` (the tail that does not fill one is dropped) and each window predicts its tokens 2..L."""
    if seqlen < 2:
        raise InputError(f"seqlen must be at least 2, got {seqlen}")
    src = open_source(checkpoint)
    spec = Spec.from_config(src.ckpt.config, str(src.path))
    weights = ModelWeights(src)
    ids, tok = tokenize(read_corpus(text), src.path, spec.vocab)
    n = ids.numel() // seqlen
    if max_windows is not None:
        n = min(n, max_windows)
    if n == 0:
        raise InputError(f"{text}: {ids.numel()} tokens ({tok}), fewer than one window of --seqlen {seqlen}")
    windows = ids[: n * seqlen].view(n, seqlen)
    with torch.no_grad():
        x = embed(spec, windows, weights.get)
        for i in progress_bar(range(spec.layers), "eval", progress):
            t = block_tensors(spec, i, weights.get, weights.bias)

            def linear(name: str, h: torch.Tensor) -> torch.Tensor:
                return torch.nn.functional.linear(h, t[name + ".weight"], t.get(name + ".bias"))
            x = torch.cat([block_forward(spec, i, x[b:b + CHUNK], t.__getitem__, linear) for b in range(0, n, CHUNK)])
        total = 0.0
        head = {n: weights.get(n) for n in (*spec.arch.norm_tensors(spec.arch.final_norm), spec.lm_head)}
        for b in range(0, n, CHUNK):
            lg = logits(spec, x[b:b + CHUNK, :-1], head.__getitem__).double()
            total += float(torch.nn.functional.cross_entropy(lg.reshape(-1, lg.shape[-1]),
                                                             windows[b:b + CHUNK, 1:].reshape(-1), reduction="sum"))
    count = n * (seqlen - 1)
    nll = total / count
    return EvalResult(str(src.path), f"{src.detection.format}/{src.detection.variant}", math.exp(nll), nll, count, n,
                      seqlen, tok)


@dataclass
class Generation:
    checkpoint: str
    prompt: str
    text: str  # the continuation only
    ids: list[int]  # the continuation's token ids
    tokenizer: str


def generate(checkpoint: str | os.PathLike, prompt: str, max_new_tokens: int = 32) -> Generation:
    """Greedy continuation of ``prompt`` with a KV cache. The whole model is read once (dequantized,
    fp32): meant for a quick look at a model's output, not for serving."""
    src = open_source(checkpoint)
    spec = Spec.from_config(src.ckpt.config, str(src.path))
    weights = ModelWeights(src)
    ids, tok = tokenize(prompt, src.path, spec.vocab)
    if ids.numel() == 0:
        raise InputError("the prompt is empty")
    cache: dict[str, torch.Tensor] = {}

    def get(name: str) -> torch.Tensor:
        if name not in cache:
            cache[name] = weights.get(name)
        return cache[name]
    linear = plain_linear(get, weights.bias)
    seq, step = ids[None], ids[None]
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
