"""Is a launch limited by its waves or by a shared resource? One tile (the one the table picks for a reference
shape) timed over layers whose column count gives whole waves of tiles and the reference's own (needs CUDA).

    python benchmarks/wave_probe.py --m 1024 --k 4096 --ref-n 14336 --n 4224,8448,12672,14336,16896

At M = 1024 the 256x128 tile makes 4 x N/128 tiles: N = 4224 is one wave on 132 SMs, 14336 is 3.39. If the time
grows with whole waves (4224 -> 8448 -> 12672 ~ 1 : 2 : 3, and 14336 costs as much as 16896), the last, partly
empty wave is what is lost and a tile order or split that evens it out should pay; if it grows with the tile
count (14336 at ~3.39 waves' time), a shared resource (L2 or DRAM traffic) sets the pace and no balancing helps
(session 20: stream-K on that launch gained nothing). cuBLAS on the same shapes for comparison. Graph times.
``--stream P:T,...`` also times the tile launched stream-K at P programs an SM with TileConfig.stream_tail T
(1:1 on a whole number of waves streams nothing: the persistent loop's own cost against one tile a program).
"""

import dataclasses
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks.gemm_common import copies_for, graph_ms, option, packed_weight, warm_clocks  # noqa: E402
from repack.kernels import triton_gemm as tg  # noqa: E402
from repack.kernels.tuned import pick_config  # noqa: E402


def main() -> None:
    args = sys.argv[1:]

    M, K, ref_n = (int(option(args, name, default)) for name, default in (("--m", "1024"), ("--k", "4096"),
                                                                          ("--ref-n", "14336")))
    ns = [int(v) for v in option(args, "--n", "4224,8448,12672,14336,16896").split(",")]
    streams = [tuple(int(v) for v in pt.split(":")) for pt in option(args, "--stream", "").split(",") if pt]
    picked = pick_config(M, ref_n, K)
    cfg = picked.gptq_rs or picked
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    print(f"M={M} K={K}: the tile of {K}x{ref_n}: {cfg}; {sms} SMs")
    warm_clocks()
    for N in ns:
        tiles = math.ceil(M / cfg.block_m) * math.ceil(N / cfg.block_n) * max(cfg.split_k, 1)
        ws = [packed_weight(K, N) for _ in range(copies_for(K * N // 2))]
        ds = [torch.randn(N, K, device="cuda", dtype=torch.float16) for _ in range(copies_for(K * N * 2))]
        x = torch.randn(M, K, device="cuda", dtype=torch.float16)
        path = tg.DOT_RS if cfg.rs else None
        ours = graph_ms([lambda w=w: tg.triton_gemm(x, w, cfg, path_override=path) for w in ws]) * 1e3
        cub = graph_ms([lambda d=d: torch.nn.functional.linear(x, d) for d in ds]) * 1e3
        print(f"N={N:>6}: {tiles:>5} programs = {tiles / sms:5.2f} waves | ours {ours:7.1f} us "
              f"({ours / math.ceil(tiles / sms):6.1f} a whole wave, {ours / tiles * sms:6.1f} a wave's worth of "
              f"programs) | cuBLAS {cub:7.1f} us | x cuBLAS {cub / ours:.2f}", flush=True)
        for per_sm, tail in streams:
            sc = dataclasses.replace(cfg, split_k=1, stream=per_sm, stream_tail=tail)
            launch = tg.stream_launch(tiles, K // cfg.block_k, per_sm, sms, cfg.block_m * cfg.block_n, tail)
            t = graph_ms([lambda w=w: tg.triton_gemm(x, w, sc, path_override=path) for w in ws]) * 1e3
            print(f"          stream {per_sm} tail {tail} (programs, slots, whole tiles: {launch}): {t:7.1f} us",
                  flush=True)
        ws = ds = None
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
