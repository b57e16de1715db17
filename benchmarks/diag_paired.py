"""Which tiles give wrong results with the paired dequantization, and is split-K involved?

Runs the configs that failed the paths_gemm check, paired and not, with their split and with
split 1, several times each on fresh inputs, against a float64 reference of the dequantized weight.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks.gemm_common import packed_weight  # noqa: E402
from repack.kernels import triton_gemm as tg  # noqa: E402
from repack.kernels.tuned import TileConfig  # noqa: E402


def dequantized(w) -> torch.Tensor:
    K, N, gs = w.in_features, w.out_features, w.effective_group_size
    q = torch.stack([(w.qweight >> (4 * f)) & 15 for f in range(8)], 1).reshape(K, N).double()
    zw = w.zeros
    z = torch.stack([(zw >> (4 * f)) & 15 for f in range(8)], 2).reshape(zw.shape[0], N).double() + w.zero_offset
    g = torch.arange(K, device=q.device) // gs
    return ((q - z[g]) * w.scales.double()[g]).t()  # [N, K]


CASES = [((4096, 4096), 1024, TileConfig(256, 64, 64, 2, 4, 3)), ((14336, 4096), 64, TileConfig(64, 128, 64, 9, 4, 3)),
         ((14336, 4096), 1024, TileConfig(256, 64, 64, 2, 4, 3)), ((4096, 4096), 64, TileConfig(64, 64, 64, 9, 4, 3)),
         ((14336, 4096), 256, TileConfig(128, 64, 64, 3, 4, 3))]

for (K, N), M, cfg in CASES:
    w = packed_weight(K, N, "gptq")
    W = dequantized(w)
    for paired in (False, True):
        for split in (cfg.split_k, 1):
            tg.PAIRED_DEQUANT = paired
            c = TileConfig(cfg.block_m, cfg.block_n, cfg.block_k, split, cfg.num_warps, cfg.num_stages)
            errs = []
            for _ in range(5):
                x = torch.randn(M, K, device="cuda", dtype=torch.float16)
                want = x.double() @ W.t()
                y = tg.triton_gemm(x, w, c, path_override=tg.DOT_KTJ).double()
                errs.append(float((y - want).norm() / want.norm()))
            print(f"{K}x{N} M={M} {c} paired={paired}: rel err max {max(errs):.2e} min {min(errs):.2e}", flush=True)
tg.PAIRED_DEQUANT = False
