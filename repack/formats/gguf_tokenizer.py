"""Tokenizers between Hugging Face folders and GGUF metadata.

HF -> GGUF (:func:`read_tokenizer`): ``tokenizer.json`` as llama.cpp's loader expects it
(gguf.md §4.3, llama.cpp ``llama-vocab.cpp``): ``tokenizer.ggml.model`` "gpt2" for byte-level BPE
(tokens + merges) or "llama" for SentencePiece-style BPE with byte fallback (tokens + scores +
types); special ids and flags from ``tokenizer_config.json`` / config.json; the chat template.
Scores for "llama" are ``-id`` (SentencePiece stores piece scores that fall with the id; llama.cpp
merges the highest-scoring pair first). The pre-tokenizer cannot be identified without running
it, so "gpt2" files get ``tokenizer.ggml.pre = "default"`` and the plan says so.

GGUF -> HF (:func:`hf_tokenizer_files`): through transformers (optional), which builds a fast
tokenizer from ``tokenizer.ggml.*``.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..checkpoint import load_json
from ..errors import InputError

_BYTE = re.compile(r"^<0x[0-9A-Fa-f]{2}>$")
# gguf.GGUFValueType / gguf.TokenType values (gguf.md §1, §3.2)
UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY = 4, 5, 6, 7, 8, 9
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


def read_tokenizer(folder: Path, config: dict | None = None) -> tuple[list[tuple], str | None]:
    """(metadata entries ``(key, value, value type, array item type)``, a note when something is left out)."""
    path = folder / "tokenizer.json"
    if not path.is_file():
        return [], "no tokenizer.json: the GGUF file gets no tokenizer (llama.cpp needs one to run it)"
    data = load_json(path)
    model = data.get("model") if isinstance(data, dict) else None
    vocab = model.get("vocab") if isinstance(model, dict) else None
    if not isinstance(model, dict) or model.get("type") != "BPE" or not isinstance(vocab, dict) or not vocab:
        kind = model.get("type") if isinstance(model, dict) else None
        return [], f"tokenizer.json model {kind!r} without a BPE vocabulary is not converted: the GGUF file gets no tokenizer"
    spm = bool(model.get("byte_fallback"))
    ids: dict[int, str] = {}
    for token, i in vocab.items():
        if isinstance(i, int) and not isinstance(i, bool) and 0 <= i < 10**7:
            ids[i] = token
    special: dict[int, bool] = {}
    for added in data.get("added_tokens") or []:
        if isinstance(added, dict) and isinstance(added.get("id"), int) and isinstance(added.get("content"), str):
            if 0 <= added["id"] < 10**7:
                ids[added["id"]] = added["content"]
                special[added["id"]] = bool(added.get("special"))
    n = max(ids) + 1
    if config and isinstance(config.get("vocab_size"), int):
        n = max(n, config["vocab_size"])
    tokens, types = [], []
    tcfg = _json_if(folder / "tokenizer_config.json")
    unk = _token_id(tcfg.get("unk_token"), vocab, ids) if spm else None
    for i in range(n):
        tok = ids.get(i)
        if tok is None:
            tokens.append(f"[PAD{i}]")
            types.append(UNUSED)
        else:
            tokens.append(tok)
            types.append(CONTROL if special.get(i) else USER_DEFINED if i in special else
                         UNKNOWN if i == unk else BYTE if spm and _BYTE.match(tok) else NORMAL)
    out: list[tuple] = [("tokenizer.ggml.model", "llama" if spm else "gpt2", STRING, None),
                        ("tokenizer.ggml.tokens", tokens, ARRAY, STRING),
                        ("tokenizer.ggml.token_type", types, ARRAY, INT32)]
    note = None
    if spm:
        out.append(("tokenizer.ggml.scores", [0.0 if i in special else -float(i) for i in range(n)], ARRAY, FLOAT32))
    else:
        merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges") or []
                  if isinstance(m, str) or (isinstance(m, list) and len(m) == 2 and all(isinstance(x, str) for x in m))]
        out.append(("tokenizer.ggml.pre", "default", STRING, None))
        note = ("tokenizer: byte-level BPE written with tokenizer.ggml.pre = 'default' (GPT-2 pre-tokenizer); "
                "llama.cpp may split digits/whitespace differently from this model's own pre-tokenizer")
        if merges:
            out.append(("tokenizer.ggml.merges", merges, ARRAY, STRING))
        else:  # GGUF cannot store an empty array, and llama.cpp refuses a "gpt2" vocabulary without merges
            note += "; tokenizer.json has no merges, which llama.cpp requires for byte-level BPE"

    cfg = config or {}
    for key in ("bos", "eos", "unk", "pad"):
        i = _token_id(tcfg.get(f"{key}_token"), vocab, ids)
        if i is None and isinstance(cfg.get(f"{key}_token_id"), int):
            i = cfg[f"{key}_token_id"]
        if i is not None and 0 <= i < n:
            out.append((f"tokenizer.ggml.{key}_token_id", i, UINT32, None))
    for flag in ("add_bos_token", "add_eos_token"):
        if isinstance(tcfg.get(flag), bool):
            out.append((f"tokenizer.ggml.{flag}", tcfg[flag], BOOL, None))
    if isinstance(tcfg.get("chat_template"), str) and tcfg["chat_template"]:
        out.append(("tokenizer.chat_template", tcfg["chat_template"], STRING, None))
    return out, note


def _json_if(path: Path) -> dict:
    if not path.is_file():
        return {}
    data = load_json(path)
    return data if isinstance(data, dict) else {}


def _token_id(token, vocab: dict, ids: dict[int, str]) -> int | None:
    if isinstance(token, dict):
        token = token.get("content")
    if not isinstance(token, str):
        return None
    if isinstance(vocab.get(token), int):
        return vocab[token]
    return next((i for i, t in ids.items() if t == token), None)


def hf_tokenizer_files(gguf_file: Path, out_dir: Path) -> None:
    """Save a Hugging Face tokenizer built from the GGUF's metadata into ``out_dir`` (needs transformers)."""
    from transformers import AutoTokenizer  # ImportError: the caller notes that it is optional
    try:
        tok = AutoTokenizer.from_pretrained(str(gguf_file.parent), gguf_file=gguf_file.name)
        tok.save_pretrained(str(out_dir))
    except Exception as e:  # noqa: BLE001 - any failure inside transformers becomes one line
        raise InputError(f"{gguf_file}: transformers could not build a tokenizer from the metadata ({type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''})") from None
