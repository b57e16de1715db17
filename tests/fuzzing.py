"""Mutation fuzzing of every reader: valid small checkpoints, damaged at random, must give either a
clean ``repack.errors`` exception or a result — never another exception type, a hang or a crash.

Used by tests/test_fuzz.py (a CI-sized sample, driven by hypothesis) and benchmarks/fuzz.py
(10,000 inputs per reader). Each case is reproducible from (reader, seed).
"""

from __future__ import annotations

import json
import random
import shutil
import signal
import struct
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from fixtures.checkpoints import (random_layer, write_auto_round, write_awq, write_compressed, write_folder, write_gguf,
                                  write_gptq, write_marlin, base_config, float_tensors)
from repack.errors import RepackError
from repack.source import open_source

MODULES = ("model.layers.0.self_attn.q_proj", "model.layers.0.mlp.down_proj")


def _layers(bits=4, gs=32, act=False, sym=False):
    rng = np.random.default_rng(7)
    return {m: random_layer(rng, 128, 64, bits, gs, sym=sym, act_order=act) for m in MODULES}


def _dense(path):
    import torch
    t = float_tensors() | {f"{m}.weight": torch.randn(64, 128).half() for m in MODULES}
    return write_folder(path, t, base_config())


SEEDS = {
    "auto_gptq": lambda p: write_gptq(p, _layers(act=True), "v1", act_order=True, shards=2),
    "auto_gptq_3bit": lambda p: write_gptq(p, _layers(bits=3), "v2"),
    "auto_awq_gemm": lambda p: write_awq(p, _layers(), "gemm"),
    "auto_awq_gemv": lambda p: write_awq(p, _layers(), "gemv"),
    "auto_round": lambda p: write_auto_round(p, _layers(), "gptq", extra_config={MODULES[1]: {"bits": 4}}),
    "compressed_tensors": lambda p: write_compressed(p, _layers()),
    "dense": _dense,
    "gguf_q4_0": lambda p: write_gguf(p, {m: random_layer(np.random.default_rng(7), 128, 64, 4, 32, sym=True)
                                         for m in MODULES}, "q4_0", config={"num_hidden_layers": 1}),
    "gguf_q5_1": lambda p: write_gguf(p, _layers(), "q5_1", config={"num_hidden_layers": 1}),
    "marlin_gptq": lambda p: write_marlin(p, _layers(gs=32, act=True, sym=True), "gptq", act_order=True, shards=2),
    "marlin_awq": lambda p: write_marlin(p, _layers(), "awq"),
    "marlin_checkpoint": lambda p: write_marlin(p, {m: random_layer(np.random.default_rng(7), 128, 256, 4, 128, sym=True)
                                                   for m in MODULES}, "checkpoint"),
}


def _turbomind(path):
    """A w4 workspace, tp=2 (written by repack: a seed only needs to be valid, it is no oracle)."""
    from repack.convert import convert
    rng = np.random.default_rng(7)
    shapes = {"self_attn.q_proj": (256, 256), "self_attn.k_proj": (256, 256), "self_attn.v_proj": (256, 256),
              "self_attn.o_proj": (256, 256), "mlp.gate_proj": (256, 256), "mlp.up_proj": (256, 256),
              "mlp.down_proj": (256, 256)}
    awq = write_awq(path.parent / f"{path.name}-awq", {f"model.layers.0.{m}": random_layer(rng, K, N, 4, 128)
                                                       for m, (K, N) in shapes.items()})
    import json as _json
    cfg = _json.loads((awq / "config.json").read_text())
    cfg |= {"hidden_size": 256, "intermediate_size": 256, "num_hidden_layers": 1, "num_attention_heads": 2,
            "num_key_value_heads": 2}
    (awq / "config.json").write_text(_json.dumps(cfg))
    from safetensors.torch import load_file, save_file
    t = load_file(str(awq / "model.safetensors"))
    t = {n: v for n, v in t.items() if not n.startswith("model.layers.1.")}
    import torch
    g = torch.Generator().manual_seed(7)
    t |= {n: torch.randn(v.shape[0], 256, generator=g).half() if v.dim() == 2 else torch.randn(256, generator=g).half()
          for n, v in t.items() if v.is_floating_point() and not n.endswith(".scales")}
    save_file(t, str(awq / "model.safetensors"), metadata={"format": "pt"})
    return convert(awq, path, "turbomind", "w4", tp=2)


SEEDS["turbomind_w4"] = _turbomind


class Hang(Exception):
    pass


@contextmanager
def time_limit(seconds: int):
    def fire(signum, frame):
        raise Hang(f"no answer in {seconds} s")
    old = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


# ---- mutators: each takes (folder, rng) and damages one file in place ------------------------------

def _weights(folder: Path) -> list[Path]:
    ws = folder / "triton_models" / "weights"  # a TurboMind workspace: raw files, config.ini
    return sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.gguf")) + sorted(ws.glob("*"))


GGUF_HEADER_GUESS = 4096  # a GGUF's metadata and tensor infos: the first few KiB of the seeds


def flip_bits(folder, rng):
    f = rng.choice(_weights(folder))
    data = bytearray(f.read_bytes())
    header_end = GGUF_HEADER_GUESS if data[:4] == b"GGUF" else 8 + struct.unpack("<Q", data[:8])[0]
    for _ in range(rng.randint(1, 8)):  # mostly in the header, where parsing decisions are made
        pos = rng.randrange(min(header_end, len(data))) if rng.random() < 0.7 else rng.randrange(len(data))
        data[pos] ^= 1 << rng.randrange(8)
    f.write_bytes(bytes(data))


def truncate(folder, rng):
    f = rng.choice(_weights(folder))
    data = f.read_bytes()
    f.write_bytes(data[: rng.randrange(len(data))])


def append(folder, rng):
    f = rng.choice(_weights(folder))
    f.write_bytes(f.read_bytes() + bytes(rng.randrange(256) for _ in range(rng.randint(1, 64))))


WILD = [0, -1, 1, 3, 7, 2**31, 2**40, 2**63 - 1, -2**40, 1.5, "x", "", None, True, [], {}, [1, 2], [2**40, 2**40],
        "F16", "I32", "BF16", "F8_E4M3", "U64", "BOOL"]


def edit_header(folder, rng):
    f = rng.choice(_weights(folder))
    data = f.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    names = [k for k in header if k != "__metadata__"]
    name = rng.choice(names)
    what = rng.choice(["dtype", "shape", "data_offsets", "delete", "duplicate", "rename", "wild", "metadata"])
    if what == "delete":
        del header[name]
    elif what == "duplicate":  # JSON with a repeated key, written by hand
        text = json.dumps(header)
        entry = json.dumps({name: header[name]})[1:-1]
        text = text[:-1] + ", " + entry + "}"
        _rewrite(f, data, n, text.encode())
        return
    elif what == "rename":
        header[rng.choice(names) + rng.choice(["", ".x", "/../../etc"])] = header.pop(name)
    elif what == "metadata":
        header["__metadata__"] = rng.choice(WILD)
    else:
        key = what if what != "wild" else rng.choice(["dtype", "shape", "data_offsets"])
        header[name][key] = rng.choice(WILD)
    _rewrite(f, data, n, json.dumps(header).encode())


def _rewrite(f: Path, data: bytes, n: int, header: bytes):
    header += b" " * (-len(header) % 8)
    f.write_bytes(struct.pack("<Q", len(header)) + header + data[8 + n:])


def edit_ini(f: Path, rng):
    lines = f.read_text().splitlines()
    i = rng.randrange(1, len(lines))
    key = lines[i].split(" = ")[0]
    lines[i] = rng.choice(["", f"{key} = {rng.choice(WILD)}", f"{key} = {rng.choice([0, -128, 2**40, 64, 1e30])}"])
    f.write_text("\n".join(lines))


def edit_config(folder, rng):
    f = folder / "config.json"
    ini = folder / "triton_models" / "weights" / "config.ini"
    if not f.exists() and ini.exists():
        return edit_ini(ini, rng)
    if not f.exists():  # a GGUF folder: its metadata is in the file
        return flip_bits(folder, rng)
    config = json.loads(f.read_text())
    qc = config.get("quantization_config")
    target = qc if isinstance(qc, dict) and rng.random() < 0.8 else config
    key = rng.choice(sorted(target) + ["extra_config", "dynamic", "config_groups", "group_size", "bits"])
    target[key] = rng.choice(WILD + [{"model.layers.0.mlp.down_proj": {"bits": 8}}, {"-:.*": {}}, {"+:(": {}},
                                     {"group_0": {"targets": ["Linear"], "weights": {"num_bits": 3}}}])
    f.write_text(json.dumps(config))


def edit_index(folder, rng):
    f = folder / "model.safetensors.index.json"
    if not f.exists():
        return edit_config(folder, rng)
    index = json.loads(f.read_text())
    wm = index.get("weight_map", {})
    if wm and rng.random() < 0.7:
        k = rng.choice(sorted(wm))
        wm[k] = rng.choice(["../x.safetensors", "/etc/passwd", "nope.safetensors", "", 3, None,
                            "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"])
    else:
        index[rng.choice(["weight_map", "metadata"])] = rng.choice(WILD)
    f.write_text(json.dumps(index))


def replace_file(folder, rng):
    f = rng.choice(_weights(folder) + [folder / "config.json"])
    f.write_bytes(rng.choice([b"", b"\x00" * 8, b"{}", struct.pack("<Q", 2**40), struct.pack("<Q", 2) + b"{}"]))


MUTATORS = [flip_bits, flip_bits, truncate, append, edit_header, edit_header, edit_config, edit_index, replace_file]


def exercise(path: Path) -> None:
    """What a conversion does with a folder: detect, read every module, read every other tensor."""
    source = open_source(path)
    for m in source.modules():
        qt = source.read(m)
        qt.dequantize()
        source.packed(m)
    for n in source.passthrough():
        for _ in source.ckpt.iter_raw(n):
            pass


def run_case(reader: str, seed: int, seed_dir: Path, work: Path) -> str:
    """``ok`` or ``error: <message>`` for a clean refusal; raises on anything else."""
    rng = random.Random(seed)
    case = work / f"{reader}-{seed}"
    shutil.rmtree(case, ignore_errors=True)
    shutil.copytree(seed_dir, case)
    try:
        for _ in range(rng.choice([1, 1, 1, 2, 3])):
            try:
                rng.choice(MUTATORS)(case, rng)
            except (ValueError, KeyError, TypeError, IndexError, struct.error, UnicodeDecodeError, AttributeError):
                pass  # an earlier mutation left nothing this mutator can parse: the damage stands as is
        with time_limit(20):
            try:
                exercise(case)
                return "ok"
            except RepackError as e:
                message = str(e)
                assert "\n" not in message, f"multi-line error: {message!r}"
                return f"error: {message}"
    finally:
        shutil.rmtree(case, ignore_errors=True)


def make_seeds(root: Path) -> dict[str, Path]:
    out = {}
    for name, build in SEEDS.items():
        path = root / f"seed-{name}"
        if not path.exists():
            build(path)
        exercise(path)  # the seed itself must be valid
        out[name] = path
    return out
