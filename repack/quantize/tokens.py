"""Text to token ids for calibration and eval: the model's own ``tokenizer.json`` when the
``tokenizers`` package is installed, else UTF-8 bytes (id = byte mod vocab) — enough for tiny test
models, which ship no tokenizer; a real model's perplexity needs its tokenizer."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import InputError


def read_text(path: str | Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read text: {e}") from None


def tokenize(text: str, folder: Path, vocab: int) -> tuple[torch.Tensor, str]:
    """(int64 ids [T], tokenizer name)."""
    tj = folder / "tokenizer.json"
    if tj.is_file():
        try:
            from tokenizers import Tokenizer
        except ImportError:
            Tokenizer = None
        if Tokenizer is not None:
            ids = Tokenizer.from_file(str(tj)).encode(text, add_special_tokens=False).ids
            return torch.tensor(ids, dtype=torch.int64), "tokenizer.json"
    data = torch.frombuffer(bytearray(text.encode("utf-8")), dtype=torch.uint8).to(torch.int64)
    return data % vocab, "bytes"


def decode(ids: list[int], folder: Path, tokenizer: str) -> str:
    """Text of token ids from :func:`tokenize`'s tokenizer; with bytes, ids past 255 become U+FFFD."""
    if tokenizer == "tokenizer.json":
        from tokenizers import Tokenizer
        return Tokenizer.from_file(str(folder / "tokenizer.json")).decode(ids)
    out = []
    for i in ids:
        out.append(bytes([i]).decode("latin-1") if i < 256 else "\ufffd")
    return "".join(out)
