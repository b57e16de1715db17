"""Calibration token ids: windows of a text (a file or a hub dataset file, :mod:`.corpus`), or text
sampled from the model itself."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from ..errors import InputError
from .model import Spec, block_forward, embed, logits, plain_linear
from .corpus import read_corpus
from .tokens import tokenize


def from_text(path: str | Path, folder: Path, vocab: int, nsamples: int, seqlen: int, seed: int) -> tuple[torch.Tensor, str]:
    """``nsamples`` windows of ``seqlen`` tokens at seeded random offsets; (ids [n, L], tokenizer)."""
    ids, tok = tokenize(read_corpus(path), folder, vocab)
    if ids.numel() < seqlen:
        raise InputError(f"{path}: {ids.numel()} tokens ({tok}), fewer than one window of --seqlen {seqlen}")
    g = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, ids.numel() - seqlen + 1, (nsamples,), generator=g)
    return torch.stack([ids[s:s + seqlen] for s in starts.tolist()]), tok


def from_model(spec: Spec, get: Callable[[str], torch.Tensor], bias: Callable[[str], torch.Tensor | None],
               nsamples: int, seqlen: int, seed: int, bos: int) -> torch.Tensor:
    """Sample ``nsamples`` sequences of ``seqlen`` tokens from the model (temperature 1, seeded),
    each starting at ``bos``, with a KV cache. The whole float model is read once into memory for this."""
    g = torch.Generator().manual_seed(seed)
    cache: dict[str, torch.Tensor] = {}

    def cached(name: str) -> torch.Tensor:
        if name not in cache:
            cache[name] = get(name)
        return cache[name]

    biases = {m: bias(m) for i in range(spec.layers) for m in (spec.arch.prefix(i) + n for n in spec.arch.linears)}
    linear = plain_linear(cached, biases.get)
    ids = torch.full((nsamples, 1), bos, dtype=torch.int64)
    kv: dict = {}
    with torch.no_grad():
        for _ in range(seqlen - 1):
            x = embed(spec, ids[:, -1:], cached, ids.shape[1] - 1)
            for i in range(spec.layers):
                x = block_forward(spec, i, x, cached, linear, kv)
            p = torch.softmax(logits(spec, x, cached)[:, 0].double(), -1)
            ids = torch.cat([ids, torch.multinomial(p, 1, generator=g)], 1)
    return ids
