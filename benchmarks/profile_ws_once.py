"""One launch of a W4A16 path (or cuBLAS fp16), 8192x28672 at M=1024 unless M/K/N are given, for
Nsight Compute:

    ncu --kernel-name regex:w4_ --launch-skip 2 --launch-count 1 --section ... \\
        python benchmarks/profile_ws_once.py [default | ws [SKIP] | rs BM BN BK WARPS STAGES RS | cublas | tinygemm]
            [M=.. K=.. N=..]

(``rs``: gluon_rs's tile forced, e.g. ``rs 64 64 128 4 4 3 M=256 K=4096 N=4096``; kernel name regex:w4_rs; two more
numbers launch it stream-K: programs an SM and TileConfig.stream_tail, e.g. ``rs 256 128 64 8 4 3 1 1``)

(`ncu` is on the lent GPU machine at /usr/local/cuda/bin/ncu; results/ncu-*.txt)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks.gemm_common import packed_weight  # noqa: E402
from repack.kernels import gluon_ws  # noqa: E402
from repack.kernels.triton_gemm import DOT_RS, DOT_WS, triton_gemm  # noqa: E402
from repack.kernels.tuned import TileConfig  # noqa: E402

args = [a for a in sys.argv[1:] if "=" not in a]
dims = {"M": 1024, "K": 8192, "N": 28672, **{k: int(v) for k, v in (a.split("=") for a in sys.argv[1:] if "=" in a)}}
what = args[0] if args else "default"
x = torch.randn(dims["M"], dims["K"], device="cuda", dtype=torch.float16)
if what == "tinygemm":
    from benchmarks.gemm import tinygemm
    tg = tinygemm(dims["K"], dims["N"])
    xb = x.bfloat16()
    run = lambda: tg(xb)  # noqa: E731
elif what == "cublas":
    d = torch.randn(dims["N"], dims["K"], device="cuda", dtype=torch.float16)
    run = lambda: torch.nn.functional.linear(x, d)  # noqa: E731
else:
    w = packed_weight(dims["K"], dims["N"])
    if what == "ws":
        gluon_ws.SKIP = int(args[1]) if len(args) > 1 else 0
        cfg = TileConfig(128, 128, 128, 1, 4, 3, ws=True)
        run = lambda: triton_gemm(x, w, cfg, path_override=DOT_WS)  # noqa: E731
    elif what == "rs":
        bm, bn, bk, warps, stages, rs, stream, tail = (int(v) for v in (args[1:9] + ["0", "0"])[:8])
        cfg = TileConfig(bm, bn, bk, 1, warps, stages, rs=rs, stream=stream, stream_tail=tail)
        run = lambda: triton_gemm(x, w, cfg, path_override=DOT_RS)  # noqa: E731
    else:
        run = lambda: triton_gemm(x, w)  # noqa: E731
for _ in range(4):
    run()
torch.cuda.synchronize()
