"""Conversion throughput on a 7B-shaped checkpoint: time and peak RSS against `cp -r` of the same bytes.

Synthesises a Llama-2-7B-shaped GPTQ v1 4-bit g128 checkpoint (32 layers, hidden 4096,
intermediate 11008, vocab 32000: ~3.9 GB in 5 GB shards), written tensor by tensor and never
held whole, then in one run times `cp -r` of the folder and each `repack convert` (a fresh
subprocess each, its peak RSS from /proc VmHWM), each bracketed by `cp -r` runs just before and
just after it, in --repeat rounds, and prints the median of the ratios to the bracketing cp mean.
The page cache holds the input of each timed run and the programs (see settle, warm_tools), so
`cp` is a copy of cached bytes.

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
import resource
# the write pass's forked workers (repack/parallel_write.py): the largest one's peak (ru_maxrss, KiB);
# their pages shared with this process (torch, numpy) count in both
workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
print(json.dumps({"seconds": time.perf_counter() - t, "peak_rss": hwm, "worker_rss": workers}))
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


def settle(*warm: Path) -> None:
    """Start every timed run from the same state: dirty pages flushed, and (as root) the page cache
    dropped and then holding only the run's input, read back in. Without that the VM's page-cache
    write speed depends on what earlier runs left behind: cp of the same 3.9 GB took 2.1-12.2 s
    across one benchmark run, and slowest after the largest outputs."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        pass  # not root: flushed, not dropped
    for folder in warm:
        for f in sorted(folder.iterdir()):
            with open(f, "rb") as fh:
                while fh.read(1 << 24):
                    pass
    time.sleep(1)


def _env() -> dict:
    """The conversions' environment: this checkout's repack, and Python's bytecode cache as an
    installed program has it (PYTHONDONTWRITEBYTECODE in a developer's shell made every timed run
    compile repack's sources again: importing the CLI 0.15 s instead of 0.10 s)."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def warm_tools() -> None:
    """After settle: the programs themselves back in the page cache, as for anyone who ran them
    before. Dropping the cache also drops python's, numpy's and repack's files, and a cold import
    cost a conversion 0.3 s more than a warm one (0.51-0.53 vs 0.21-0.23 s) where cp's binary is
    a few pages."""
    env = _env()
    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(root / "repack"), str(root / "cli")], check=True,
                   env=env, stdout=subprocess.DEVNULL)  # every module a conversion imports, lazily too
    # gguf_jit: numba and llvmlite (~200 MB of libraries) and the compiled GGUF encoder's cache
    subprocess.run([sys.executable, "-c", "import cli.main, repack.convert, gguf; from repack.formats import gguf_jit; "
                    "gguf_jit.load()"], check=True, env=env)
    subprocess.run(["cp", "--version"], check=True, stdout=subprocess.DEVNULL)


def run_convert(src: Path, dst: Path, target: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(src), str(dst), target], capture_output=True, text=True, env=_env())
    if out.returncode:
        return {"error": (out.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--targets", default="auto_awq,auto_gptq:v2,gguf,marlin:awq")
    ap.add_argument("--dir", default=os.environ.get("REPACK_BENCH_DIR"))
    ap.add_argument("--json", default=None)
    ap.add_argument("--repeat", type=int, default=3, help="interleaved rounds of cp and every conversion; medians reported")
    ap.add_argument("--source", default=None, help="a source this script synthesised before (--layers as then), used "
                    "instead of a new one (on the same file system as --dir, so cp copies within it)")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        tmp = Path(tmp)
        if args.source:
            src = Path(args.source)
            size = sum(f.stat().st_size for f in src.iterdir())
            print(f"source: {src}, {size / 1e9:.2f} GB", flush=True)
        else:
            src = tmp / "gptq"
            t = time.perf_counter()
            size = synthesize(src, args.layers)
            print(f"source: {args.layers}-layer 7B-shaped GPTQ 4-bit g128, {size / 1e9:.2f} GB, written in "
                  f"{time.perf_counter() - t:.1f} s", flush=True)
        # Each conversion is bracketed by cp runs, one just before and one just after it (the after
        # of one conversion is the before of the next), and its ratio is to their mean, over
        # --repeat rounds (medians reported). Page-cache write speed on the 2-core VM drifts 2-5x
        # within minutes (dd of 4 GB in 256 KB writes: 0.6-4 GB/s; cp of this folder 2.6-5.8 s
        # within one run), so a cp timed once at the start says little about a conversion a minute
        # later, and even the one just before can be a different phase.
        times: dict[str, list[float]] = {}
        cps: dict[str, list[float]] = {}
        peaks: dict[str, list[int]] = {}
        worker_peaks: dict[str, list[int]] = {}
        labels: dict[str, str] = {}

        def timed_cp() -> float:
            settle(src)
            warm_tools()
            t = time.perf_counter()
            subprocess.run(["cp", "-r", str(src), str(tmp / "cp")], check=True)
            took = time.perf_counter() - t
            shutil.rmtree(tmp / "cp")
            return took

        last_cp = None
        for rnd in range(args.repeat):
            srcs = {"auto_gptq": src}
            for target in args.targets.split(","):
                fmt = target.partition(":")[0]
                from_ = src
                if fmt == "auto_gptq":  # awq -> gptq: convert from the AWQ output made above
                    from_ = srcs.get("auto_awq", src)
                dst = tmp / target.replace(":", "-")
                before = last_cp if last_cp is not None else timed_cp()
                settle(from_)
                warm_tools()
                r = run_convert(from_, dst, target)
                last_cp = timed_cp()
                cp_s = (before + last_cp) / 2
                labels[target] = f"{'awq' if from_ != src else 'gptq'} -> {target}"
                if "error" in r:
                    print(f"{labels[target]:<26} failed: {r['error']}", flush=True)
                    continue
                srcs.setdefault(fmt, dst)
                if fmt != "auto_awq":
                    shutil.rmtree(dst, ignore_errors=True)
                times.setdefault(target, []).append(r["seconds"])
                cps.setdefault(target, []).append(cp_s)
                peaks.setdefault(target, []).append(r["peak_rss"])
                worker_peaks.setdefault(target, []).append(r.get("worker_rss", 0))
                print(f"  round {rnd + 1}: {labels[target]:<26} {r['seconds']:6.1f} s, cp before/after {before:.1f}/{last_cp:.1f} s: "
                      f"{r['seconds'] / cp_s:.2f}x", flush=True)
            for target in args.targets.split(","):
                shutil.rmtree(tmp / target.replace(":", "-"), ignore_errors=True)

        def median(v):
            return sorted(v)[len(v) // 2]
        all_cp = [c for v in cps.values() for c in v]
        print(f"{'cp -r':<26} {median(all_cp):7.1f} s   (all {len(all_cp)} runs: {min(all_cp):.1f}-{max(all_cp):.1f} s)", flush=True)
        for target, label in labels.items():
            if target not in times:
                continue
            ratios = [t / c for t, c in zip(times[target], cps[target])]
            sec, peak, wpeak = median(times[target]), max(peaks[target]), max(worker_peaks[target])
            rows.append({"conversion": label, "seconds": sec, "runs": times[target], "cp_runs": cps[target],
                         "ratio": median(ratios), "ratios": ratios, "peak_rss": peak, "worker_rss": wpeak, "bytes": size})
            print(f"{label:<26} {sec:7.1f} s   {median(ratios):.2f}x cp (median of paired ratios "
                  f"{', '.join(f'{r:.2f}' for r in ratios)})   peak RSS {peak / 2**20:5.0f} MiB"
                  + (f", largest child process {wpeak / 2**20:.0f} MiB" if wpeak else ""), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
