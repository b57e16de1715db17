"""Hand-made attack folders: each builder damages a valid checkpoint in one hostile way and returns
(folder, the words the one-line refusal must contain)."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

from fixtures.checkpoints import random_model, set_index_entry, write_gguf, write_gptq


def _valid(tmp: Path, shards: int = 1) -> Path:
    return write_gptq(tmp / "src", random_model(seed=90), "v1", shards=shards)


def path_traversal(tmp: Path):
    src = _valid(tmp, shards=2)
    (tmp / "outside.safetensors").write_bytes((src / "model-00001-of-00002.safetensors").read_bytes())
    set_index_entry(src, "model.norm.weight", "../outside.safetensors")
    return src, "is not a plain file name inside the folder"


def absolute_path(tmp: Path):
    src = _valid(tmp, shards=2)
    set_index_entry(src, "model.norm.weight", "/etc/passwd")
    return src, "is not a plain file name inside the folder"


def shard_symlink_escape(tmp: Path):
    src = _valid(tmp, shards=2)
    shard = src / "model-00002-of-00002.safetensors"
    outside = tmp / "elsewhere.safetensors"
    outside.write_bytes(shard.read_bytes())
    shard.unlink()
    os.symlink(outside, shard)
    return src, "symlink that leaves the model folder"


def declared_2_to_40_bytes(tmp: Path):
    """A tensor that claims 2^40 bytes in a small file: refused before any allocation."""
    src = tmp / "src"
    src.mkdir()
    header = json.dumps({"model.embed_tokens.weight": {"dtype": "U8", "shape": [2**40], "data_offsets": [0, 2**40]}})
    header += " " * (-len(header) % 8)
    (src / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header.encode() + b"\0" * 64)
    (src / "config.json").write_text(json.dumps({"model_type": "llama"}))
    return src, "truncated"


def header_bomb(tmp: Path):
    """8-byte length field claiming a 1 TiB header."""
    src = _valid(tmp)
    f = src / "model.safetensors"
    f.write_bytes(struct.pack("<Q", 2**40) + f.read_bytes()[8:])
    return src, "declares 1099511627776 header bytes"


def nested_header(tmp: Path):
    """A header of 200,000 nested arrays: a recursion bomb for naive JSON parsers."""
    src = _valid(tmp)
    body = ("[" * 200_000 + "]" * 200_000).encode()
    body += b" " * (-len(body) % 8)
    (src / "model.safetensors").write_bytes(struct.pack("<Q", len(body)) + body)
    return src, "nested too deeply"


def nested_config(tmp: Path):
    src = _valid(tmp)
    (src / "config.json").write_text("[" * 200_000 + "]" * 200_000)
    return src, "nested too deeply"


def huge_config(tmp: Path):
    src = _valid(tmp)
    with open(src / "config.json", "r+b") as f:  # sparse: 100 MB apparent size, no disk used
        f.truncate(100 * 2**20)
    return src, "too large for a JSON file"


def absurd_config_types(tmp: Path):
    src = _valid(tmp)
    cfg = json.loads((src / "config.json").read_text())
    cfg["quantization_config"]["dynamic"] = ["not", "a", "mapping"]
    (src / "config.json").write_text(json.dumps(cfg))
    return src, "quantization_config.dynamic"


def _gguf(tmp: Path) -> Path:
    return write_gguf(tmp / "src", random_model(seed=92, sym=True, group_size=32,
                                                shapes={"model.layers.0.mlp.up_proj": (64, 32)}), "q4_0",
                      config={"num_hidden_layers": 1})


def gguf_array_bomb(tmp: Path):
    """A metadata array claiming 2^60 items: gguf-py alone would loop over empty reads for ever."""
    import gguf
    src = tmp / "src"
    src.mkdir()
    w = gguf.GGUFWriter(src / "model.gguf", "llama")
    w.add_token_list(["a", "b", "c"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    f = src / "model.gguf"
    field = gguf.GGUFReader(f).fields["tokenizer.ggml.tokens"]
    at = field.offset + 8 + len(field.name) + 4 + 4  # key length, key, value type, item type -> item count
    data = bytearray(f.read_bytes())
    data[at:at + 8] = struct.pack("<Q", 2**60)
    f.write_bytes(bytes(data))
    return src, "metadata array of 1152921504606846976 items"


def gguf_data_past_the_end(tmp: Path):
    src = _gguf(tmp)
    f = src / "model.gguf"
    f.write_bytes(f.read_bytes()[:-64])
    return src, "lies outside the file"


def gguf_symlink_escape(tmp: Path):
    src = _gguf(tmp)
    outside = tmp / "elsewhere.gguf"
    os.rename(src / "model.gguf", outside)
    os.symlink(outside, src / "model.gguf")
    return src, "symlink that leaves the model folder"


ATTACKS = [path_traversal, absolute_path, shard_symlink_escape, declared_2_to_40_bytes, header_bomb, nested_header,
           nested_config, huge_config, absurd_config_types, gguf_array_bomb, gguf_data_past_the_end, gguf_symlink_escape]
