"""The AWQ tensor-core tile (triton_gemm DOT_N: codes read packed along N, the tile's columns kept in
AutoAWQ's field order and stored to the permuted outputs), on the CPU through Triton's interpreter
(TRITON_INTERPRET=1, in a subprocess: the variable must be set before Triton is imported) and on the GPU.

Each AWQ folder is written by the reference packers (fixtures.write_awq); the expectation is computed
here from the fixture's own codes, zeros and scales in float64, not through repack's reader. The same
layer read with GPTQ's zero interleave must miss the tolerance, so the check can fail. The interpreter
runs without a K split (its fence is inline PTX the interpreter cannot run); the GPU run takes the
tuned tiles, splits included, with the dispatch switch on (triton_gemm.AWQ_DOT) and gluon_rs's switch off
(triton_gemm.AWQ_RS: since session 16 the tuned tiles send AutoAWQ layers to gluon_rs first; DOT_N stays their
path where gluon_rs does not fit, and it is DOT_N this file checks)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tests.triton_checks import awq_layer, cuda_and_triton, gemm_within_tolerance, has_triton, run_in_interpreter

CASES = [(32, (128, 192)), (64, (256, 72)), (128, (256, 256)), (-1, (192, 128))]  # group size, (K, N)


def check(folder: str, device: str = "cpu") -> None:
    import torch

    from repack.kernels import TOLERANCE
    from repack.kernels import triton_gemm as tg
    from repack.kernels.packed import ZEROS_ALONG_N
    from repack.kernels.tuned import TileConfig

    before = tg.AWQ_DOT, tg.AWQ_DOT_PAIRS, tg.AWQ_RS, tg._awq_dequant8_pairs  # restored below: later tests see the shipped ones
    if device == "cpu":  # the interpreter cannot run the PTX: the same arithmetic in Triton's ops
        from tests.awq_pairs_in_triton import awq_dequant8_pairs
        tg._awq_dequant8_pairs = awq_dequant8_pairs
    tg.AWQ_DOT, tg.AWQ_RS = True, False
    try:
        torch.manual_seed(0)
        tol = TOLERANCE[torch.float16]
        for i, ((gs, (K, N)), paired) in enumerate((c, p) for c in CASES for p in (False, True)):
            tg.AWQ_DOT_PAIRS = paired
            w, W = awq_layer(Path(folder) / f"a{i}", i // 2, gs, K, N, device)
            assert w.codes == "n-awq", w.codes
            # the CPU forces two tiles (16 and 64 rows, 8 and 16 words a row); the GPU takes the tuned ones
            runs = ([(5, TileConfig(16, 64, 32, 1, 4, 2)), (33, TileConfig(16, 64, 32, 1, 4, 2)),
                     (40, TileConfig(64, 128, 64, 1, 4, 2))] if device == "cpu"
                    else [(M, None) for M in (5, 16, 33, 100, 300, 16)])  # the last: from the launch plan
            for M, cfg in runs:
                x = torch.randn(M, K, dtype=torch.float16, device=device)
                want = gemm_within_tolerance(x, w, W, cfg, tg.DOT_N if cfg else None, f"g{gs} {K}x{N} M={M}")
            if device != "cpu":  # the dispatch's own choice (the CPU run forces the path)
                consts = [dict(zip(tg._CONST_NAMES, p[6])) for p in tg._plans.values() if p[0]() is w]
                assert {(c["PATH"], c["PAIRED"]) for c in consts} == {(tg.DOT_N, paired)}, consts
            if paired:  # the zeros' words in another column order: the pairs must come from the right word
                wrong = dataclasses.replace(w, zeros=w.zeros.flip(1).contiguous())
            else:  # GPTQ's plain nibble order for the zeros
                wrong = dataclasses.replace(w, zeros_layout=ZEROS_ALONG_N)
            y = tg.triton_gemm(x, wrong, config=cfg, path_override=tg.DOT_N if cfg else None).double().cpu()
            rel = float((y - want).norm() / want.norm())
            assert rel > 10 * tol, f"g{gs} paired {paired}: wrong zeros went unnoticed ({rel:.2e})"
    finally:
        tg.AWQ_DOT, tg.AWQ_DOT_PAIRS, tg.AWQ_RS, tg._awq_dequant8_pairs = before
    print("awq dot ok")


@pytest.mark.skipif(not cuda_and_triton(), reason="needs a CUDA GPU and triton")
def test_awq_tensor_core_tile_on_the_gpu(tmp_path):
    check(str(tmp_path), "cuda")


@pytest.mark.skipif(not has_triton(), reason="needs the triton package")
def test_awq_tensor_core_tile_in_the_interpreter(tmp_path):
    run_in_interpreter("tests.test_awq_dot", tmp_path, "awq dot ok")
