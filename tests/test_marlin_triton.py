"""The Triton GEMM reading the Marlin layout in place, run on the CPU by Triton's interpreter
(TRITON_INTERPRET=1, in a subprocess: the variable must be set before Triton is imported).

Each Marlin folder is written by the reference packers (fixtures.write_marlin); the kernel reads
its stored tensors (``MarlinFormat.packed``: tile-ordered codes, permuted scales, permuted and
interleaved zeros, act-order sort indices) and must agree with dequantize + matmul of the
canonical tensor within the kernel's documented fp16 tolerance. The same run with the scale
permutation withheld must fail it, so the check can fail. Split-K is off: its GPU-scope fence is
inline PTX, which the interpreter cannot run; the CUDA test runs the tuned tiles with split-K (not yet
run: no GPU time in the session that wrote it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.triton_checks import cuda_and_triton, has_triton, run_in_interpreter

CASES = [("gptq", 4, 32, True, True), ("gptq", 8, 64, True, True), ("gptq", 4, -1, True, False),
         ("awq", 4, 128, False, False), ("awq", 8, 32, False, False), ("checkpoint", 4, 128, True, False)]


def check(folder: str, device: str = "cpu") -> None:
    """On "cpu" (the interpreter) with split-K off; on "cuda" with the tuned tiles, split-K included."""
    import dataclasses

    import torch

    from fixtures.checkpoints import random_model, write_marlin
    from repack.kernels import TOLERANCE
    from repack.kernels.packed import SCALES_PLAIN
    from repack.kernels.reference import reference_gemm
    from repack.kernels.triton_gemm import triton_gemm
    from repack.kernels.tuned import TileConfig
    from repack.source import open_source

    torch.manual_seed(0)
    for i, (variant, bits, gs, sym, act) in enumerate(CASES):
        shapes = {"model.layers.0.mlp.up_proj": (128, 256 if variant == "checkpoint" else 192),
                  "model.layers.0.mlp.down_proj": (256, 256 if variant == "checkpoint" else 64)}
        layers = random_model(seed=i, bits=bits, group_size=gs, sym=sym, act_order=act,
                              zero_range=(0, 2**bits - 1), shapes=shapes)
        src = open_source(write_marlin(Path(folder) / f"m{i}", layers, variant, act_order=act))
        for m in src.modules():
            qt = src.read(m)
            w = src.packed(m, qt).to(device)
            assert w.codes == "marlin" and (w.x_perm is not None) == qt.act_order, (variant, m)
            for M in [m for m in (1, 5, 33) for _ in range(3 if device == "cuda" else 1)]:  # 3rd: launch plan
                x = torch.randn(M, qt.in_features, dtype=torch.float16, device=device)
                cfg = TileConfig(1 if M == 1 else 16, 64, 32, 1, 4, 2) if device == "cpu" else None
                ref = reference_gemm(x, qt).float()
                rel = float((triton_gemm(x, w, config=cfg).float() - ref).norm() / ref.norm())
                assert rel <= TOLERANCE[torch.float16], f"{variant} {bits}-bit g{gs} {m} M={M}: rel {rel:.2e}"
            wrong = dataclasses.replace(w, scales_layout=SCALES_PLAIN)
            ref = reference_gemm(x, qt).float()
            rel = float((triton_gemm(x, wrong, config=cfg).float() - ref).norm() / ref.norm())
            assert rel > 10 * TOLERANCE[torch.float16], f"{variant} {m}: unpermuted scales went unnoticed ({rel:.2e})"
    print("marlin triton ok")


@pytest.mark.skipif(not cuda_and_triton(), reason="needs a CUDA GPU and triton")
def test_triton_reads_marlin_layout_on_the_gpu(tmp_path):
    check(str(tmp_path), "cuda")


@pytest.mark.skipif(not has_triton(), reason="needs the triton package")
def test_triton_reads_marlin_layout_in_the_interpreter(tmp_path):
    run_in_interpreter("tests.test_marlin_triton", tmp_path, "marlin triton ok")
