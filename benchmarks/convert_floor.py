"""What gptq -> awq could cost without torch: a numpy-only streaming converter, timed against `cp`.

Issue #10's target (every conversion <= 2x the `cp` of the same bytes) is out of reach for
`repack convert` on the 2-core machine partly because the CLI imports torch (1.5-2 s, 0.6-0.8x a
`cp` of the 7B checkpoint). This script measures the floor of a torch-free design for one
conversion: the same packing code (repack.packing, numpy only), the same tile-sized transposes on
two worker threads, page-cache writes in 256 KB calls, pass-through tensors copied in the kernel.
It handles exactly what benchmarks/convert.py synthesizes (GPTQ v1, 4-bit, sequential groups, one
safetensors file) and checks its output tensor by tensor against `repack convert --to auto_awq`.

Two ways to use the 2 cores (FLOOR_MODE): ``thread`` (as repack's pipeline: two worker threads, the
main thread writes in order) and ``proc`` (default: two forked processes, each computing every other
tensor and writing it with pwrite at its planned offset). numpy's transposes are hundreds of short
calls per tensor and serialize on the GIL: two threads ran words_along_n no faster than one, two
processes each at full speed.

    python benchmarks/convert_floor.py SRC_DIR [--check REPACK_AWQ_DIR] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from repack.packing import pack_cols, unpack_cols, words_along_n  # noqa: E402 - numpy only

AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7]  # AutoAWQ's nibble order (repack/formats/awq.py)
DT = {"I32": np.int32, "F16": np.float16, "F32": np.float32, "BF16": np.uint16, "I64": np.int64}
WRITE = 256 * 1024


def header(path: Path) -> tuple[dict, int]:
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        return json.loads(f.read(n)), 8 + n


def convert(src: Path, dst: Path) -> None:
    f = src / "model.safetensors"
    hdr, base = header(f)
    hdr.pop("__metadata__", None)
    fh = open(f, "rb")
    mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)

    def arr(name):
        info = hdr[name]
        a, b = info["data_offsets"]
        return np.frombuffer(mm, DT[info["dtype"]], (b - a) // np.dtype(DT[info["dtype"]]).itemsize, base + a).reshape(info["shape"])

    modules = sorted({n[: -len(".qweight")] for n in hdr if n.endswith(".qweight")})
    out_specs = []  # (name, dtype, shape) in file order
    for name in sorted(hdr):
        m = name.rsplit(".", 1)[0]
        if m in modules:
            if name.endswith(".g_idx"):
                continue
            K8, N = hdr[f"{m}.qweight"]["shape"]
            if name.endswith(".qweight"):
                out_specs.append((name, "I32", [K8 * 8, N // 8]))
            elif name.endswith(".qzeros"):
                out_specs.append((name, "I32", hdr[name]["shape"]))
            else:
                out_specs.append((name, hdr[name]["dtype"], hdr[name]["shape"]))
        else:
            out_specs.append((name, hdr[name]["dtype"], hdr[name]["shape"]))
    pos, meta = 0, {}
    for name, dt, shape in out_specs:
        n = int(np.prod(shape)) * np.dtype(DT[dt]).itemsize
        meta[name] = {"dtype": dt, "shape": shape, "data_offsets": [pos, pos + n]}
        pos += n
    raw = json.dumps(meta, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)

    def work(name):
        m = name.rsplit(".", 1)[0]
        if m in modules and name.endswith(".qweight"):
            q = arr(name)
            return words_along_n(q, q.shape[0] * 8, q.shape[1], AWQ_ORDER)
        if m in modules and name.endswith(".qzeros"):
            z = arr(name)
            N = z.shape[1] * 8
            zz = (unpack_cols(z, 4, N).astype(np.int32) + 1).astype(np.uint8)  # v1 stores z - 1
            zz = zz.reshape(-1, N // 8, 8)[:, :, AWQ_ORDER].reshape(-1, N)
            return pack_cols(zz, 4)
        return None  # copied file to file

    dst.mkdir(parents=True)
    if os.environ.get("FLOOR_MODE", "proc") == "proc":
        _convert_in_processes(src, dst, raw, out_specs, meta, hdr, base, work)
        return
    with open(dst / "model.safetensors", "wb") as out, ThreadPoolExecutor(int(os.environ.get("FLOOR_WORKERS", "2"))) as pool:
        out.write(len(raw).to_bytes(8, "little") + raw)
        names = [s[0] for s in out_specs]
        futures = {}
        ahead = 3
        for i, name in enumerate(names):
            for j in range(i, min(len(names), i + ahead)):
                if names[j] not in futures:
                    futures[names[j]] = pool.submit(work, names[j])
            res = futures.pop(name).result()
            if res is None:
                out.flush()
                a, b = hdr[name]["data_offsets"]
                done = 0
                while done < b - a:
                    done += os.copy_file_range(fh.fileno(), out.fileno(), b - a - done, base + a + done)
            else:
                view = memoryview(np.ascontiguousarray(res)).cast("B")
                for s in range(0, len(view), WRITE):
                    out.write(view[s: s + WRITE])
    for side in src.iterdir():
        if side.name != "model.safetensors" and side.is_file():
            shutil.copy(side, dst / side.name)


_JOB = {}


def _proc_run(names):
    """In a worker process: compute each tensor and pwrite it at its place in the output file
    (offsets are known from the header), pass-through tensors file to file in the kernel."""
    j = _JOB
    fd = os.open(j["out"], os.O_WRONLY)
    src = os.open(j["src"], os.O_RDONLY)
    try:
        for name in names:
            at = j["data0"] + j["meta"][name]["data_offsets"][0]
            res = j["work"](name)
            if res is None:
                a, b = j["hdr"][name]["data_offsets"]
                done = 0
                while done < b - a:
                    done += os.copy_file_range(src, fd, b - a - done, j["base"] + a + done, at + done)
            else:
                view = memoryview(np.ascontiguousarray(res)).cast("B")
                for s in range(0, len(view), WRITE):
                    os.pwrite(fd, view[s: s + WRITE], at + s)
    finally:
        os.close(fd)
        os.close(src)
    return len(names)


def _convert_in_processes(src, dst, raw, out_specs, meta, hdr, base, work):
    """Two forked workers, each taking every other tensor: numpy's many short calls serialize on the
    GIL in threads (2 threads ran words_along_n no faster than 1; 2 processes at full speed each)."""
    import multiprocessing as mp
    out = dst / "model.safetensors"
    total = 8 + len(raw) + max((m["data_offsets"][1] for m in meta.values()), default=0)
    with open(out, "wb") as f:
        f.write(len(raw).to_bytes(8, "little") + raw)
        f.truncate(total)
    names = [s[0] for s in out_specs]
    n = int(os.environ.get("FLOOR_WORKERS", "2"))
    job = {"out": str(out), "src": str(src / "model.safetensors"), "data0": 8 + len(raw), "meta": meta, "hdr": hdr,
           "base": base, "work": work}
    _JOB.update(job)  # inherited by the forked workers: the work closure cannot be pickled
    with mp.get_context("fork").Pool(n) as pool:
        pool.map(_proc_run, [names[i::n] for i in range(n)])


def same(a: Path, b: Path) -> None:
    ha, ba = header(a / "model.safetensors")
    hb, bb = header(b / "model.safetensors")
    ha.pop("__metadata__", None)
    hb.pop("__metadata__", None)
    fa, fb = open(a / "model.safetensors", "rb"), open(b / "model.safetensors", "rb")
    for name, info in ha.items():
        other = hb[name]
        assert (info["dtype"], info["shape"]) == (other["dtype"], other["shape"]), name
        n = info["data_offsets"][1] - info["data_offsets"][0]
        fa.seek(ba + info["data_offsets"][0])
        fb.seek(bb + other["data_offsets"][0])
        assert fa.read(n) == fb.read(n), f"{name} differs"
    assert set(ha) == set(hb), set(ha) ^ set(hb)
    print(f"check: {len(ha)} tensors byte-identical to repack's output", flush=True)


def settle(src: Path) -> None:
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        pass
    for f in sorted(src.iterdir()):
        with open(f, "rb") as fh:
            while fh.read(1 << 24):
                pass
    time.sleep(1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("src", type=Path)
    ap.add_argument("--check", type=Path, default=None)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.src.parent) as tmp:
        tmp = Path(tmp)
        ratios = []
        for r in range(args.repeat):
            settle(args.src)
            t = time.perf_counter()
            subprocess.run(["cp", "-r", str(args.src), str(tmp / "cp")], check=True)
            cp_s = time.perf_counter() - t
            shutil.rmtree(tmp / "cp")
            settle(args.src)
            # a fresh interpreter, as a CLI run would be: numpy's import is part of the time
            t = time.perf_counter()
            subprocess.run([sys.executable, __file__, "--child", str(args.src), str(tmp / "out")], check=True)
            conv_s = time.perf_counter() - t
            if r == 0 and args.check:
                same(tmp / "out", args.check)
            shutil.rmtree(tmp / "out")
            ratios.append(conv_s / cp_s)
            mode = os.environ.get("FLOOR_MODE", "proc")
            print(f"round {r + 1}: numpy-only gptq -> awq ({mode}) {conv_s:.1f} s, cp just before {cp_s:.1f} s: "
                  f"{conv_s / cp_s:.2f}x", flush=True)
        print(f"median {sorted(ratios)[len(ratios) // 2]:.2f}x cp")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        convert(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        main()
