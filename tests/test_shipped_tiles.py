"""Every tile the shipped table gives (repack/kernels/tuned.json), at its entry's own shape and its bucket's M, on
GPTQ and AutoAWQ words: the dispatch's first call and its launch plan's second each write every output, within
the kernel tolerance of a float64 product with the weight unpacked by tests/triton_checks.py. The sweeps that merge
tiles check each tile forced on its path; this checks what the dispatch derives from an entry (its K split for the
shape, a cluster, the AWQ slot, the plan's launch). Needs CUDA; the unpacking helpers are checked here on the CPU."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from tests import reference_packers as ref
from tests.triton_checks import cuda_and_triton, random_awq_words, random_gptq_words

GROUP = 128  # the group size the table was tuned at (benchmarks/gemm_common.GROUP)


def test_random_awq_words_unpack_as_the_reference_packer_does():
    w, W = random_awq_words(64, 32, 32, seed=5, device="cpu")
    q = ref.awq_gemm_unpack_qweight(w.qweight.numpy())
    z = ref.awq_gemm_unpack_qzeros(w.zeros.numpy())
    want = ref.dequantize(q, z, w.scales.float().numpy(), 32)  # [N, K]
    np.testing.assert_allclose(W.numpy(), want, rtol=1e-6, atol=1e-7)


def _shipped_cases() -> list[tuple[int, int, int]]:
    from repack.kernels import tuned
    table = json.loads(tuned.TUNED_FILE.read_text())
    return sorted({(int(b), e["K"], e["N"]) for b, entries in table.items() for e in entries})


@pytest.mark.skipif(not cuda_and_triton(), reason="needs a CUDA GPU and triton")
@pytest.mark.parametrize("layout", ["gptq", "awq"])
def test_every_shipped_tile_through_the_dispatch_and_its_plan(layout):
    from repack.kernels import TOLERANCE
    from repack.kernels import triton_gemm as tg
    make = random_gptq_words if layout == "gptq" else random_awq_words
    failures = []
    buckets: dict[tuple[int, int], list[int]] = {}  # each shape's tuned M buckets
    for M, K, N in _shipped_cases():
        buckets.setdefault((K, N), []).append(M)
    for (K, N), ms in buckets.items():
        seed = random.randrange(2**31)
        w, W = make(K, N, GROUP, seed)
        for M in ms:
            x = torch.randn(M, K, device="cuda", generator=torch.Generator("cuda").manual_seed(seed + M)).half()
            want = x.double() @ W.t()
            tg._plans.clear()
            for call in ("dispatch", "plan"):
                out = torch.full((M, N), float("nan"), dtype=x.dtype, device="cuda")
                y = tg.triton_gemm(x, w, out=out)
                torch.cuda.synchronize()
                rel = float((y.double() - want).norm() / want.norm())
                if y.data_ptr() != out.data_ptr() or not torch.isfinite(y).all() or not rel <= TOLERANCE[x.dtype]:
                    failures.append(f"{layout} {K}x{N} M={M} {call} (seed {seed}): rel {rel:.2e}, "
                                    f"{int((~torch.isfinite(y)).sum())} outputs not finite, {tg.pick_config(M, N, K)}")
            # (one plan a launch: a wave split's two launches leave two)
            assert tg._plans, f"{layout} {K}x{N} M={M}: the first call left no plan"
        del w, W
        torch.cuda.empty_cache()
    tg._plans.clear()
    assert not failures, "\n".join(failures)
