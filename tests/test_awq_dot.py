"""The AWQ tensor-core tile (triton_gemm DOT_N: codes read packed along N, the tile's columns kept in
AutoAWQ's field order and stored to the permuted outputs), on the CPU through Triton's interpreter
(TRITON_INTERPRET=1, in a subprocess: the variable must be set before Triton is imported) and on the GPU.

Each AWQ folder is written by the reference packers (fixtures.write_awq); the expectation is computed
here from the fixture's own codes, zeros and scales in float64, not through repack's reader. The same
layer read with GPTQ's zero interleave must miss the tolerance, so the check can fail. The interpreter
runs without a K split (its fence is inline PTX the interpreter cannot run); the GPU run takes the
tuned tiles, splits included, with the dispatch switch on (triton_gemm.AWQ_DOT)."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CASES = [(32, (128, 192)), (64, (256, 72)), (128, (256, 256)), (-1, (192, 128))]  # group size, (K, N)


def check(folder: str, device: str = "cpu") -> None:
    import torch

    from fixtures.checkpoints import random_model, write_awq
    from repack.kernels import TOLERANCE
    from repack.kernels import triton_gemm as tg
    from repack.kernels.packed import ZEROS_ALONG_N
    from repack.kernels.tuned import TileConfig
    from repack.source import open_source

    tg.AWQ_DOT = True
    torch.manual_seed(0)
    tol = TOLERANCE[torch.float16]
    for i, (gs, (K, N)) in enumerate(CASES):
        layers = random_model(seed=i, bits=4, group_size=gs, shapes={"model.layers.0.mlp.up_proj": (K, N)})
        L = layers["model.layers.0.mlp.up_proj"]
        W = torch.from_numpy((L.q - L.z[L.groups()]) * L.s[L.groups()].astype("float64")).double()  # [K, N]
        src = open_source(write_awq(Path(folder) / f"a{i}", layers, "gemm"))
        w = src.packed("model.layers.0.mlp.up_proj").to(device)
        assert w.codes == "n-awq", w.codes
        for M in ((5, 33) if device == "cpu" else (5, 16, 33, 100, 300, 16)):  # the last: from the launch plan
            x = torch.randn(M, K, dtype=torch.float16, device=device)
            cfg = TileConfig(16, 64, 32, 1, 4, 2) if device == "cpu" else None
            want = x.double().cpu() @ W
            out = torch.full((M, N), float("nan"), dtype=torch.float16, device=device)
            y = tg.triton_gemm(x, w, config=cfg, out=out, path_override=tg.DOT_N if cfg else None).double().cpu()
            assert torch.isfinite(y).all(), f"g{gs} {K}x{N} M={M}: outputs left unwritten"
            rel = float((y - want).norm() / want.norm())
            assert rel <= tol, f"g{gs} {K}x{N} M={M}: rel {rel:.2e}"
        wrong = dataclasses.replace(w, zeros_layout=ZEROS_ALONG_N)  # GPTQ's plain nibble order for the zeros
        y = tg.triton_gemm(x, wrong, config=cfg, path_override=tg.DOT_N if cfg else None).double().cpu()
        rel = float((y - want).norm() / want.norm())
        assert rel > 10 * tol, f"g{gs}: the zeros' interleave went unnoticed ({rel:.2e})"
    print("awq dot ok")


def _cuda() -> bool:
    import torch
    return torch.cuda.is_available() and importlib.util.find_spec("triton") is not None


@pytest.mark.skipif(not _cuda(), reason="needs a CUDA GPU and triton")
def test_awq_tensor_core_tile_on_the_gpu(tmp_path):
    check(str(tmp_path), "cuda")


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="needs the triton package")
def test_awq_tensor_core_tile_in_the_interpreter(tmp_path):
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([sys.executable, "-c", f"from tests.test_awq_dot import check; check({str(tmp_path)!r})"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0 and "awq dot ok" in r.stdout, r.stdout[-3000:] + r.stderr[-3000:]
