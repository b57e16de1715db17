"""GEMV_NH2 (triton_gemm path 15: AutoAWQ gemm words at M = 1 with fp16 x, products summed in fp16 pairs),
one-group and multi-group K steps, on the CPU through Triton's interpreter (its PTX replaced by the same
arithmetic in Triton's ops, tests/awq_pairs_in_triton.py) and on the GPU with the PTX.

The expectation is float64 from the fixture's own codes, zeros and scales (written by the reference AWQ
packer), not from repack's reader. Zero words in another column order must miss the tolerance."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tests.triton_checks import awq_layer, cuda_and_triton, gemm_within_tolerance, has_triton, run_in_interpreter

K, N = 1024, 256
# (group size, tile): one-group steps; multi-group steps of 4 and 16 groups; one step past K (ragged: the
# masked branch); with a split (GPU only: the split's epilogue fences with inline PTX)
TILES = [(128, (1, 64, 128, 1, 4, 2)), (128, (1, 32, 512, 1, 4, 2)), (32, (1, 32, 512, 1, 4, 2)),
         (128, (1, 64, 2048, 1, 4, 2)), (64, (1, 16, 256, 1, 2, 2))]
GPU_TILES = [(128, (1, 32, 512, 2, 4, 3, False, False, 2, True)), (128, (1, 64, 1024, 2, 4, 2)),
             (32, (1, 128, 128, 3, 4, 2))]


def check(folder: str, device: str = "cpu") -> None:
    import torch

    from repack.kernels import TOLERANCE
    from repack.kernels import triton_gemm as tg
    from repack.kernels.tuned import TileConfig

    before = tg.RAGGED_WIDE, tg.AWQ_GEMV_TUNED, tg._awq_dot8_half2, tg._launch
    launched = []

    def recording_launch(grid, args, consts, *rest, **kw):
        launched.append(dict(zip(tg._CONST_NAMES, consts)))
        return before[3](grid, args, consts, *rest, **kw)
    tg._launch = recording_launch
    if device == "cpu":
        from tests.awq_pairs_in_triton import awq_dot8_half2
        tg._awq_dot8_half2 = awq_dot8_half2
    tg.RAGGED_WIDE = True
    try:
        tol = TOLERANCE[torch.float16]
        for i, (gs, tile) in enumerate(TILES + (GPU_TILES if device != "cpu" else []) + [(128, None)]):
            # the last: the dispatch's own tile with AWQ_GEMV_TUNED (GEMV_H2's nearest tuned entry, 4096x1024's
            # 2048-input step: one step on this 1024-input layer, masked past K)
            cfg = TileConfig(*tile) if tile else None
            tg.AWQ_GEMV_TUNED = tile is None
            w, W = awq_layer(Path(folder) / f"a{i}", i, gs, K, N, device)
            for M in (1, 2) if cfg else (1,):  # (the dispatch sends M = 2 to a tensor-core tile)
                x = torch.randn(M, K, generator=torch.Generator().manual_seed(100 + i)).half().to(device)
                want = gemm_within_tolerance(x, w, W, cfg, tg.GEMV_NH2 if cfg else None, f"g{gs} {cfg} M={M}")
                assert launched[-1]["PATH"] == tg.GEMV_NH2 and (launched[-1]["GROUPS"] > 1) == (
                    (cfg.block_k if cfg else 2048) > min(gs, K)), launched[-1]
            wrong = dataclasses.replace(w, zeros=w.zeros.flip(1).contiguous())  # zero words of other columns
            y = tg.triton_gemm(x, wrong, config=cfg, path_override=tg.GEMV_NH2 if cfg else None).double().cpu()
            assert float((y - want).norm() / want.norm()) > 10 * tol, f"g{gs} {cfg}: wrong zeros went unnoticed"
    finally:
        tg.RAGGED_WIDE, tg.AWQ_GEMV_TUNED, tg._awq_dot8_half2, tg._launch = before
    print("awq gemv ok")


@pytest.mark.skipif(not cuda_and_triton(), reason="needs a CUDA GPU and triton")
def test_awq_half2_gemv_steps_on_the_gpu(tmp_path):
    check(str(tmp_path), "cuda")


@pytest.mark.skipif(not has_triton(), reason="needs the triton package")
def test_awq_half2_gemv_steps_in_the_interpreter(tmp_path):
    run_in_interpreter("tests.test_awq_gemv", tmp_path, "awq gemv ok")
