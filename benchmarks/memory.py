"""Peak RSS of `repack convert` on a checkpoint whose one quantized tensor is 1 GiB.

Writes a synthetic 4-bit GPTQ checkpoint (qweight int32 [K/8, N] = 1 GiB by default) in a temp
folder, then converts it in a fresh subprocess per target and reads that process's peak RSS. The
baseline in the same run is the RSS of a process that only imports repack and reads the tensor's
bytes once, so the ratio shows what conversion adds. Acceptance: peak < 3x the tensor's bytes.

    python benchmarks/memory.py [--gib 1.0] [--targets auto_awq,auto_gptq:v2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CHILD = r"""
import sys, json, time
t = time.perf_counter()
from repack.convert import convert
if sys.argv[1] == "read":
    from repack.checkpoint import Checkpoint
    ck = Checkpoint.open(sys.argv[2]); int(ck.get(sys.argv[3]).max())  # touch every byte (large tensors are mapped)
else:
    to, _, variant = sys.argv[3].partition(":")
    convert(sys.argv[1], sys.argv[2], to, variant or None)
# VmHWM, not getrusage: Linux carries ru_maxrss over fork + exec, so a child would report the parent's
hwm = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) * 1024
import resource
# the write processes (repack/parallel_write.py) pack and write the tensor: the largest one's peak
workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
print(json.dumps({"seconds": time.perf_counter() - t, "peak_rss": max(hwm, workers), "main_rss": hwm}))
"""


def write_source(folder: Path, gib: float) -> tuple[int, str]:
    """A GPTQ v1 4-bit g128 folder with one big linear, written in row chunks (never all in memory)."""
    from repack.checkpoint import CheckpointWriter, TensorSpec
    import torch

    N = 65536
    words = int(gib * 2**30) // 4
    K = words // N * 8 // 128 * 128
    G = K // 128
    name = "model.layers.0.mlp.down_proj"
    specs = [TensorSpec(f"{name}.g_idx", "I32", (K,)), TensorSpec(f"{name}.qweight", "I32", (K // 8, N)),
             TensorSpec(f"{name}.qzeros", "I32", (G, N // 8)), TensorSpec(f"{name}.scales", "F16", (G, N))]
    rng = np.random.default_rng(0)

    def chunks():
        rows = K // 8
        for r0 in range(0, rows, 256):
            yield rng.integers(-2**31, 2**31, size=(min(256, rows - r0), N), dtype=np.int64).astype(np.int32).tobytes()

    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama",
              "quantization_config": {"quant_method": "gptq", "bits": 4, "group_size": 128, "sym": True,
                                      "desc_act": False, "checkpoint_format": "gptq"}}
    with CheckpointWriter(folder, specs, force=True) as w:
        w.write(f"{name}.g_idx", torch.arange(K, dtype=torch.int32) // 128)
        w.write(f"{name}.qweight", chunks())
        w.write(f"{name}.qzeros", torch.full((G, N // 8), 0x77777777, dtype=torch.int32))
        w.write(f"{name}.scales", torch.full((G, N), 0.01, dtype=torch.float16))
        w.finish(config)
    return (K // 8) * N * 4, f"{name}.qweight"


def child(*args) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gib", type=float, default=1.0)
    ap.add_argument("--targets", default="auto_awq:gemm,auto_gptq:v2,auto_awq:gemv")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=os.environ.get("REPACK_BENCH_DIR")) as tmp:
        src = Path(tmp) / "src"
        t = time.perf_counter()
        nbytes, tensor = write_source(src, args.gib)
        print(f"source: one {nbytes / 2**30:.2f} GiB qweight, written in {time.perf_counter() - t:.1f} s")
        base = child("read", str(src), tensor)
        print(f"{'baseline (read the tensor once)':<34} peak RSS {base['peak_rss'] / 2**30:6.2f} GiB  "
              f"= {base['peak_rss'] / nbytes:.2f}x tensor  {base['seconds']:.1f} s")
        for target in args.targets.split(","):
            r = child(str(src), str(Path(tmp) / target.replace(":", "-")), target)
            print(f"{'convert -> ' + target:<34} peak RSS {r['peak_rss'] / 2**30:6.2f} GiB  "  # largest process
                  f"= {r['peak_rss'] / nbytes:.2f}x tensor  {r['seconds']:.1f} s  "
                  f"({r['seconds'] / max(base['seconds'], 1e-9):.1f}x baseline time)")


if __name__ == "__main__":
    main()
