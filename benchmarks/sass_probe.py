"""gluon_rs's and gluon_gemm's tiles compiled for sm_90a on a machine without a GPU: registers, spills, the
instruction mix of the hottest loop, and whether ptxas serialized the wgmmas. The loop count is what the
16-token tile's time followed in session 16 (issue-bound: `benchmarks/NOTES-gemm.md`), and serialized wgmmas
(ptxas C7510-C7515) are a silent slowdown that only shows in ptxas's info output.

    python benchmarks/sass_probe.py rs BM BN BK WARPS STAGES RS [--awq] [--bf16] [--post] [--split | --slots | --stream | --cluster=N]
        [--lean]                             (--stream: w4_rs_stream_kernel, or w4_rs_ws_stream_kernel with RS 3)
    python benchmarks/sass_probe.py gemm BM BN BK WARPS SPLIT [--bf16]      (gluon_gemm's mma.sync tile)
"""

from __future__ import annotations

import collections
import inspect
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

K, N, GROUP = 4096, 4096, 128


def tools() -> Path | None:
    """The folder of Triton's bundled ptxas and cuobjdump, or None without them."""
    import triton
    folder = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
    return folder if (folder / "ptxas").exists() and (folder / "cuobjdump").exists() else None


def _compile(fn, names, consts, args, warps: int, maxnreg: int | None = None, extra: dict | None = None):
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.experimental.gluon._runtime import GluonASTSource
    from triton.runtime.jit import mangle_type
    params = list(inspect.signature(fn.fn).parameters)
    sig, constexprs, it = {}, {}, iter(args)
    for i, p in enumerate(params):
        if p in names or p in (extra or {}):
            sig[p] = "constexpr"
            constexprs[(i,)] = consts[names.index(p)] if p in names else extra[p]
        else:
            sig[p] = mangle_type(next(it))
    options = dict(num_warps=warps, **({"maxnreg": maxnreg} if maxnreg else {}))
    return triton.compile(GluonASTSource(fn, sig, constexprs), target=GPUTarget("cuda", 90, 32), options=options)


def compile_rs(bm: int, bn: int, bk: int, warps: int, stages: int, rs: int, awq: bool = False, bf16: bool = False,
               post: bool = False, split: bool | int = False, lean: bool = False, stream: bool = False,
               cluster: int = 1):
    """gluon_rs's tile (rs 1/2: w4_rs_kernel with that wait; 3: the warp-specialized kernel) on a K x N layer;
    ``split``: the K-split epilogue (True: atomics, 2: gluon_rs.SLOTS); ``lean``: a warp-specialized POST tile at
    gluon_rs.LEAN_WS_REGS; ``stream``: the stream-K kernel (w4_rs_stream_kernel, w4_rs_ws_stream_kernel)."""
    import torch

    from repack.kernels import gluon_rs
    xt = torch.bfloat16 if bf16 else torch.float16
    x = torch.zeros(1024, K, dtype=xt)

    class Words:
        qweight = torch.zeros((K, N // 8) if awq else (K // 8, N), dtype=torch.int32)
        in_features, out_features = K, N
    scales = torch.zeros(K // GROUP, N, dtype=xt)
    zeros = torch.zeros(K // GROUP, N // 8, dtype=torch.int32)
    y = torch.zeros(1024, N, dtype=xt)
    descs = gluon_rs.descriptors(x, Words, bm, bn, bk, awq)
    ws, cnt = torch.zeros(1, dtype=torch.float32), torch.zeros(1, dtype=torch.int32)
    args = (*descs, scales, zeros, y, ws, cnt, 1024, N, K, K // 2 if split else K, 2 if split else 1, GROUP, 1,
            scales.stride(0), zeros.stride(0), y.stride(0))
    if rs == 3:
        consts = gluon_rs.ws_consts(bm, bn, bk, stages, warps, awq=awq, post=post, split=split)
        return _compile(gluon_rs.w4_rs_ws_stream_kernel if stream else gluon_rs.w4_rs_ws_kernel, gluon_rs.WS_CONST_NAMES,
                        consts, args, warps,
                        gluon_rs.ws_maxnreg(warps, bm, bn, lean and post, awq, stream))
    consts = gluon_rs.consts(bm, bn, bk, split, stages, warps, pending=1 if rs == 1 else 0, awq=awq, post=post)
    return _compile(gluon_rs.w4_rs_stream_kernel if stream else gluon_rs.w4_rs_kernel, gluon_rs.CONST_NAMES, consts, args, warps,
                    gluon_rs.stream_maxnreg(warps, 3, post, bm, bn) if stream else None,  # (three programs an SM)
                    None if stream else {"CLUSTER": cluster})


def compile_gemm(bm: int, bn: int, bk: int, warps: int, split: int, bf16: bool = False):
    """gluon_gemm's mma.sync tile (the GPTQ M = 16 default on most shapes)."""
    import torch

    from repack.kernels import gluon_gemm
    xt = torch.bfloat16 if bf16 else torch.float16
    x, y = torch.zeros(16, K, dtype=xt), torch.zeros(16, N, dtype=xt)
    qw = torch.zeros(K // 8, N, dtype=torch.int32)
    s, z = torch.zeros(K // GROUP, N, dtype=xt), torch.zeros(K // GROUP, N // 8, dtype=torch.int32)
    ws, cnt = torch.zeros(1, dtype=torch.float32), torch.zeros(1, dtype=torch.int32)
    args = (x, qw, s, z, qw, y, ws, cnt, 16, N, K, K // split, split, GROUP, 1, K, 1, N, 1, N, 1, N // 8, 1, N, 1)
    return _compile(gluon_gemm.w4_dot_kernel, gluon_gemm.CONST_NAMES,
                    gluon_gemm.consts(bm, bn, bk, split > 1, warps), args, warps)


def report(kernel) -> dict:
    """registers, spill bytes (local memory and the stack frame: ptxas 12.8 spills into the stack and leaves LOCAL
    at 0, e.g. the warp-specialized 16x128 POST tile at 80 registers, STACK:64-72, session 23), the largest loop's
    instruction count and mix, and ptxas's wgmma-serialization message (None when the wgmmas are pipelined)."""
    bin_dir = tools()
    with tempfile.TemporaryDirectory() as tmp:
        cubin, ptx = Path(tmp) / "k.cubin", Path(tmp) / "k.ptx"
        cubin.write_bytes(kernel.asm["cubin"])
        ptx.write_text(kernel.asm["ptx"])
        sass = subprocess.run([bin_dir / "cuobjdump", "-sass", cubin], capture_output=True, text=True).stdout
        usage = subprocess.run([bin_dir / "cuobjdump", "-res-usage", cubin], capture_output=True, text=True).stdout
        info = subprocess.run([bin_dir / "ptxas", "-arch=sm_90a", "-v", ptx, "-o", Path(tmp) / "again.cubin"],
                              capture_output=True, text=True)
    code = [(int(m.group(1), 16), m.group(2).strip())
            for m in re.finditer(r"/\*([0-9a-f]{4,})\*/\s+([^;]*);", sass)]
    loop = None
    for addr, text in code:  # the conditional backward branch spanning the most code: the K loop
        b = re.search(r"BRA.*?0x([0-9a-f]+)", text)
        if b and text.startswith("@") and int(b.group(1), 16) < addr:
            if loop is None or addr - int(b.group(1), 16) > loop[1] - loop[0]:
                loop = (int(b.group(1), 16), addr)
    body = [t for a, t in code if loop and loop[0] <= a <= loop[1]]
    mix = collections.Counter((t.split()[1] if t.startswith("@") else t.split()[0]).split(".")[0] for t in body)
    serial = re.search(r"\((C751\d)\) Potential Performance Loss: wgmma\.mma_async instructions are serialized "
                       r"due to (.*?)(?: in the function)? '", info.stdout + info.stderr)
    return dict(registers=int(re.search(r"REG:(\d+)", usage).group(1)),
                spill_bytes=sum(int(re.search(rf"{kind}:(\d+)", usage).group(1)) for kind in ("LOCAL", "STACK")),
                loop_instructions=len(body), mix=dict(mix.most_common()),
                serialized=f"{serial.group(1)}: {serial.group(2)}" if serial else None)


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    flags = {a for a in sys.argv[1:] if a.startswith("--")}
    if not args or args[0] not in ("rs", "gemm") or tools() is None:
        sys.exit(__doc__)
    dims = [int(v) for v in args[1:]]
    kernel = (compile_rs(*dims, awq="--awq" in flags, bf16="--bf16" in flags, post="--post" in flags,
                         split=2 if "--slots" in flags else "--split" in flags, lean="--lean" in flags,
                         stream="--stream" in flags, cluster=int(next((a.split("=")[1] for a in flags
                                                                       if a.startswith("--cluster=")), 1)))
              if args[0] == "rs" else compile_gemm(*dims, bf16="--bf16" in flags))
    r = report(kernel)
    print(f"registers {r['registers']}, spills {r['spill_bytes']} B, loop {r['loop_instructions']} instructions, "
          f"wgmma {'SERIALIZED (' + r['serialized'] + ')' if r['serialized'] else 'pipelined'}")
    print("  " + ", ".join(f"{op} {n}" for op, n in r["mix"].items()))


if __name__ == "__main__":
    main()
