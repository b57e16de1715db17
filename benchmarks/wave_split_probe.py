"""Does a layer split in two launches beat its partial last wave? The table's tile over the columns that make
whole waves of tiles, then the remaining columns in a second launch with another tile or a K split, against the
one launch (needs CUDA; graph times, both launches in one graph, outputs compared with the one launch's).

    python benchmarks/wave_split_probe.py [--m 1024] [--k 4096] [--n 14336]

Session 21's wave probe: M = 1024 4096x14336 (448 tiles of 256x128, 3.39 waves on 132 SMs) takes as long as 4
waves, and stream-K, pure or hybrid, loses what balancing gains to its cut tiles' fixup. Here the first launch
runs 3 whole waves (columns [0, 12672)) and the second fills the 0.39 wave that is left: the same tile (4 waves'
time: the baseline), the same tile with K split in 2 or 3 (104 / 156 programs, slots), or smaller tiles
(104 / 208 programs, no fixup at all).
"""

import dataclasses
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks.gemm_common import copies_for, graph_ms, packed_weight, warm_clocks  # noqa: E402
from repack.kernels import triton_gemm as tg  # noqa: E402
from repack.kernels.tuned import TileConfig, pick_config  # noqa: E402


def main() -> None:
    args = sys.argv[1:]

    def opt(name: str, default: str) -> str:
        return args[args.index(name) + 1] if name in args else default

    M, K, N = int(opt("--m", "1024")), int(opt("--k", "4096")), int(opt("--n", "14336"))
    picked = pick_config(M, N, K)
    cfg = picked.gptq_rs or picked
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    m_tiles = math.ceil(M / cfg.block_m)
    tiles = m_tiles * (N // cfg.block_n)
    first = (tiles // sms * sms) // m_tiles * cfg.block_n  # columns of the whole waves
    print(f"M={M} K={K} N={N}: {cfg}; {tiles} tiles = {tiles / sms:.2f} waves on {sms} SMs; the first launch "
          f"takes columns [0, {first}), the second [{first}, {N})", flush=True)
    tails = [("same tile", cfg), ("K split 2", dataclasses.replace(cfg, split_k=2)),
             ("K split 3", dataclasses.replace(cfg, split_k=3)),
             ("128x128 w8 rs3", TileConfig(128, 128, 64, 1, 8, 4, rs=3)),
             ("128x64 w4 rs3", TileConfig(128, 64, 64, 1, 4, 4, rs=3)),
             ("64x128 w8 rs3", TileConfig(64, 128, 64, 1, 8, 4, rs=3))]
    warm_clocks()
    ws = [packed_weight(K, N) for _ in range(copies_for(K * N // 2))]
    x = torch.randn(M, K, device="cuda", dtype=torch.float16)
    y = torch.empty(M, N, device="cuda", dtype=torch.float16)
    want = tg.triton_gemm(x, ws[0], cfg, path_override=tg.DOT_RS).float()
    one = graph_ms([lambda w=w: tg.triton_gemm(x, w, cfg, out=y, path_override=tg.DOT_RS) for w in ws]) * 1e3
    print(f"one launch: {one:7.1f} us", flush=True)
    parts = [(w.columns(0, first), w.columns(first, N)) for w in ws]
    for name, tail in tails:
        def both(p, tail=tail):
            tg.triton_gemm(x, p[0], cfg, out=y[:, :first], path_override=tg.DOT_RS)
            tg.triton_gemm(x, p[1], tail, out=y[:, first:], path_override=tg.DOT_RS)
        try:
            y.fill_(float("nan"))
            both(parts[0])
            err = float((y.float() - want).abs().max())
            t = graph_ms([lambda p=p: both(p) for p in parts]) * 1e3
        except Exception as e:  # noqa: BLE001  (a tile that does not launch on the tail is reported, not fatal)
            print(f"  {name:>16}: failed ({type(e).__name__}: {str(e)[:100]})", flush=True)
            continue
        print(f"  {name:>16}: {t:7.1f} us ({one / t:.3f}x the one launch; max |diff| {err:.3g})", flush=True)


if __name__ == "__main__":
    main()
