"""Conversion throughput on a 7B-shaped checkpoint: time and peak RSS against `cp -r` of the same bytes.

Synthesises a Llama-2-7B-shaped GPTQ v1 4-bit g128 checkpoint (32 layers, hidden 4096,
intermediate 11008, vocab 32000: ~3.9 GB in 5 GB shards), written tensor by tensor and never
held whole, then in one run times `cp -r` of the folder and each `repack convert` (a fresh
subprocess each, its peak RSS from /proc VmHWM), and prints the time ratio to `cp`. The page cache
is warm for all of them (the source was just written), so `cp` is a copy of cached bytes.

    python benchmarks/convert.py [--layers 32] [--targets auto_awq,auto_gptq:v2,gguf,marlin:awq] [--dir /tmp]

(the source has asymmetric zeros, so Marlin takes its `awq` variant: `gptq` has the zero 8 built in)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from repack.checkpoint import CheckpointWriter, TensorSpec  # noqa: E402
from repack.synthetic import SIDE_FILES, llama_config  # noqa: E402

CHILD = r"""
import sys, json, time
t = time.perf_counter()
from repack.allocator import keep_freed_memory
keep_freed_memory()  # as the CLI does
from repack.convert import convert
to, _, variant = sys.argv[3].partition(":")
convert(sys.argv[1], sys.argv[2], to, variant or None)
# VmHWM, not getrusage: Linux carries ru_maxrss over fork + exec, so a child would report the parent's
hwm = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) * 1024
print(json.dumps({"seconds": time.perf_counter() - t, "peak_rss": hwm}))
"""
GROUP = 128


def shapes(layers: int, hidden: int = 4096, inter: int = 11008) -> dict[str, tuple[int, int]]:
    out = {}
    for i in range(layers):
        p = f"model.layers.{i}."
        for m, kn in (("self_attn.q_proj", (hidden, hidden)), ("self_attn.k_proj", (hidden, hidden)),
                      ("self_attn.v_proj", (hidden, hidden)), ("self_attn.o_proj", (hidden, hidden)),
                      ("mlp.gate_proj", (hidden, inter)), ("mlp.up_proj", (hidden, inter)), ("mlp.down_proj", (inter, hidden))):
            out[p + m] = kn
    return out


def synthesize(folder: Path, layers: int, seed: int = 0) -> int:
    """Write the checkpoint; returns its size in bytes. Codes are random words; zeros 1..15, stored
    as z - 1 (v1); scales small positive fp16 — enough for every converter to do its real work."""
    config = llama_config(hidden=4096, intermediate=11008, layers=layers, heads=32, kv_heads=32, vocab=32000)
    config["quantization_config"] = {"quant_method": "gptq", "bits": 4, "group_size": GROUP, "sym": False,
                                     "desc_act": False, "checkpoint_format": "gptq"}
    rng = np.random.default_rng(seed)
    mods = shapes(layers)
    specs = [TensorSpec("model.embed_tokens.weight", "F16", (32000, 4096)), TensorSpec("lm_head.weight", "F16", (32000, 4096)),
             TensorSpec("model.norm.weight", "F16", (4096,))]
    for i in range(layers):
        for n in ("input_layernorm", "post_attention_layernorm"):
            specs.append(TensorSpec(f"model.layers.{i}.{n}.weight", "F16", (4096,)))
    for m, (K, N) in mods.items():
        G = K // GROUP
        specs += [TensorSpec(f"{m}.qweight", "I32", (K // 8, N)), TensorSpec(f"{m}.qzeros", "I32", (G, N // 8)),
                  TensorSpec(f"{m}.scales", "F16", (G, N)), TensorSpec(f"{m}.g_idx", "I32", (K,))]

    def words(rows: int, cols: int):
        for r0 in range(0, rows, 512):
            yield rng.integers(0, 2**32, size=(min(512, rows - r0), cols), dtype=np.uint32).view(np.int32).tobytes()

    def zeros_v1(G: int, N: int) -> torch.Tensor:
        z = rng.integers(0, 15, size=(G, N // 8, 8), dtype=np.uint32)  # stored z - 1 for z in 1..15
        return torch.from_numpy((z << (4 * np.arange(8, dtype=np.uint32))).sum(-1, dtype=np.uint32).view(np.int32))

    with CheckpointWriter(folder, specs, force=True) as w:
        for name in ("model.embed_tokens.weight", "lm_head.weight"):
            w.write(name, torch.from_numpy((rng.standard_normal((32000, 4096), dtype=np.float32) * 0.02).astype(np.float16)))
        w.write("model.norm.weight", torch.ones(4096, dtype=torch.float16))
        for i in range(layers):
            for n in ("input_layernorm", "post_attention_layernorm"):
                w.write(f"model.layers.{i}.{n}.weight", torch.ones(4096, dtype=torch.float16))
        for m, (K, N) in mods.items():
            G = K // GROUP
            w.write(f"{m}.qweight", words(K // 8, N))
            w.write(f"{m}.qzeros", zeros_v1(G, N))
            w.write(f"{m}.scales", torch.from_numpy((rng.random((G, N), dtype=np.float32) * 0.01 + 0.001).astype(np.float16)))
            w.write(f"{m}.g_idx", torch.arange(K, dtype=torch.int32) // GROUP)
        w.finish(config)
    for name, data in SIDE_FILES.items():
        (folder / name).write_text(json.dumps(data))
    return sum(f.stat().st_size for f in folder.iterdir())


def settle() -> None:
    """Flush dirty pages first, so no run pays for the previous one's writeback."""
    os.sync()
    time.sleep(1)


def run_convert(src: Path, dst: Path, target: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = subprocess.run([sys.executable, "-c", CHILD, str(src), str(dst), target], capture_output=True, text=True, env=env)
    if out.returncode:
        return {"error": (out.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--targets", default="auto_awq,auto_gptq:v2,gguf,marlin:awq")
    ap.add_argument("--dir", default=os.environ.get("REPACK_BENCH_DIR"))
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        tmp = Path(tmp)
        src = tmp / "gptq"
        t = time.perf_counter()
        size = synthesize(src, args.layers)
        print(f"source: {args.layers}-layer 7B-shaped GPTQ 4-bit g128, {size / 1e9:.2f} GB, written in {time.perf_counter() - t:.1f} s",
              flush=True)
        cp_runs = []
        for _ in range(3):  # the median of three: writeback of earlier dirty pages makes single runs vary
            settle()
            t = time.perf_counter()
            subprocess.run(["cp", "-r", str(src), str(tmp / "cp")], check=True)
            cp_runs.append(time.perf_counter() - t)
            shutil.rmtree(tmp / "cp")
        cp_s = sorted(cp_runs)[1]
        print(f"{'cp -r':<26} {cp_s:7.1f} s   1.00x cp   (runs: {', '.join(f'{r:.1f}' for r in cp_runs)})", flush=True)
        srcs = {"auto_gptq": src}
        for target in args.targets.split(","):
            fmt = target.partition(":")[0]
            from_ = src
            if fmt == "auto_gptq":  # awq -> gptq: convert from the AWQ output made above
                from_ = srcs.get("auto_awq", src)
            dst = tmp / target.replace(":", "-")
            settle()
            r = run_convert(from_, dst, target)
            label = f"{'awq' if from_ != src else 'gptq'} -> {target}"
            if "error" in r:
                print(f"{label:<26} failed: {r['error']}", flush=True)
                continue
            srcs.setdefault(fmt, dst)
            rows.append({"conversion": label, **r, "cp_seconds": cp_s, "ratio": r["seconds"] / cp_s, "bytes": size})
            print(f"{label:<26} {r['seconds']:7.1f} s   {r['seconds'] / cp_s:.2f}x cp   peak RSS {r['peak_rss'] / 2**20:7.0f} MiB",
                  flush=True)
            if fmt not in ("auto_awq",):
                shutil.rmtree(dst, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
