"""The Triton kernel against a float64 oracle, on every packed layout (needs CUDA and Triton).

Checkpoints are written by the reference packers and read through each format's ``packed()``,
so the kernel sees the bytes a real checkpoint has. The oracle is ``x @ W.T`` in float64 with W
dequantized by tests/reference_packers.py. Inputs are fresh random values each run (the seed is
in the failure message); outputs are poisoned with NaN first so an unwritten element fails.
On a machine without CUDA these tests are skipped (CI has none: they run on the lent GPU, see
benchmarks/gpu_session.sh), and the CPU path is covered by test_verify.py.
"""

import dataclasses
import random

import numpy as np
import pytest
import torch

from fixtures.checkpoints import random_layer, write_awq, write_compressed, write_gptq
from repack.kernels import TOLERANCE, triton_available
from repack.kernels.tuned import TileConfig, heuristic
from repack.source import open_source
from tests import reference_packers as ref
from tests.triton_checks import random_gptq_words

pytestmark = pytest.mark.skipif(not triton_available(), reason="needs a CUDA GPU and triton")
M_VALUES = (1, 7, 16, 33, 128, 1000)
K, N = 1024, 384
MODULE = "model.layers.0.mlp.up_proj"


def layout_case(tmp_path, layout: str, gs: int, act: bool = False, bits: int = 4, seed: int = 0):
    L = random_layer(np.random.default_rng(seed), K, N, bits, gs, act_order=act)
    if layout.startswith("gptq"):
        path = write_gptq(tmp_path / layout, {MODULE: L}, layout[-2:], act_order=act)
    elif layout == "compressed":  # no layout of its own: the canonical one, int16 zeros [G, N]
        path = write_compressed(tmp_path / layout, {MODULE: L})
    else:
        path = write_awq(tmp_path / layout, {MODULE: L}, layout.split("_")[1])
    src = open_source(path)
    packed = src.packed(MODULE)
    return L, packed, src.read(MODULE)


def oracle(x: torch.Tensor, L) -> torch.Tensor:
    w = torch.from_numpy(ref.dequantize(L.q, L.z, L.s, L.group_size, L.g_idx)).double()
    return x.double().cpu() @ w.t()


def run_and_check(x, packed, L, config=None, seed=None, path=None):
    from repack.kernels.triton_gemm import triton_gemm
    out = torch.full((x.shape[0], N), float("nan"), dtype=x.dtype, device="cuda")
    y = triton_gemm(x, packed.to("cuda"), config, out=out, path_override=path)
    torch.cuda.synchronize()
    assert y.data_ptr() == out.data_ptr()
    assert torch.isfinite(y).all(), f"unwritten or non-finite outputs (seed {seed}, {config})"
    want = oracle(x, L)
    rel = float((y.double().cpu() - want).norm() / want.norm())
    assert rel <= TOLERANCE[x.dtype], f"relative error {rel:.2e} (seed {seed}, M={x.shape[0]}, {config})"
    return y


LAYOUTS = [("gptq_v1", False), ("gptq_v2", False), ("gptq_v1", True), ("awq_gemm", False), ("awq_gemv", False),
           ("compressed", False)]


@pytest.mark.parametrize("layout, act", LAYOUTS)
@pytest.mark.parametrize("gs", [32, 64, 128, -1])
def test_every_layout_group_size_and_m(tmp_path, layout, act, gs):
    if act and gs == -1:
        pytest.skip("one group: act-order is the identity")
    L, packed, _ = layout_case(tmp_path, layout, gs, act)
    assert (packed.g_idx is not None) == act
    for M in M_VALUES:
        seed = random.randrange(2**31)
        x = torch.randn(M, K, generator=torch.Generator().manual_seed(seed)).half().cuda()
        run_and_check(x, packed, L, seed=seed)


@pytest.mark.parametrize("bits", [2, 8])
def test_other_bit_widths(tmp_path, bits):
    L, packed, _ = layout_case(tmp_path, "gptq_v1", 64, bits=bits)
    for M in (1, 16, 128):
        seed = random.randrange(2**31)
        run_and_check(torch.randn(M, K, generator=torch.Generator().manual_seed(seed)).half().cuda(), packed, L, seed=seed)


@pytest.mark.parametrize("layout", ["awq_gemm", "gptq_v1", "gptq_v2"])
def test_bf16_activations(tmp_path, layout):
    L, packed, _ = layout_case(tmp_path, layout, 128)
    for M in M_VALUES:
        seed = random.randrange(2**31)
        run_and_check(torch.randn(M, K, generator=torch.Generator().manual_seed(seed)).bfloat16().cuda(), packed, L, seed=seed)


CONFIGS = [TileConfig(1, 32, 128, 1, 4, 2), TileConfig(1, 64, 256, 8, 4, 3), TileConfig(1, 128, 64, 16, 8, 2),
           TileConfig(16, 64, 128, 4, 4, 4), TileConfig(16, 128, 64, 1, 4, 3), TileConfig(64, 64, 64, 3, 4, 3),
           TileConfig(128, 128, 64, 1, 8, 3), TileConfig(64, 256, 32, 2, 8, 3), TileConfig(256, 128, 128, 1, 8, 3),
           TileConfig(256, 64, 64, 2, 4, 4)]


@pytest.mark.parametrize("layout, act", [("gptq_v2", False), ("gptq_v1", True), ("awq_gemm", False), ("awq_gemv", False)])
def test_every_tile_shape_and_split(tmp_path, layout, act):
    """Split-K partial sums meet in a workspace that the last program clears: a race would show
    as a wrong or moving result, so each config runs three times on fresh inputs."""
    L, packed, _ = layout_case(tmp_path, layout, 64, act)
    for cfg in CONFIGS:
        for M in {1: (1, 3), 16: (7, 16, 33), 64: (64, 100), 128: (128, 300), 256: (256, 1000)}[cfg.block_m]:
            for _ in range(3):
                seed = random.randrange(2**31)
                run_and_check(torch.randn(M, K, generator=torch.Generator().manual_seed(seed)).half().cuda(),
                              packed, L, cfg, seed)


def _paths():
    from repack.kernels import triton_gemm as tg
    return [(tg.GEMV_KJ, TileConfig(1, 64, 128, 4, 4, 2), (1, 5)), (tg.GEMV_K, TileConfig(1, 64, 256, 4, 4, 2), (1, 5)),
            (tg.DOT_KTJ, TileConfig(16, 64, 64, 3, 4, 3), (7, 16, 33)), (tg.DOT_KT, TileConfig(16, 64, 128, 2, 4, 3), (7, 16)),
            (tg.DOT_KTJ, TileConfig(256, 128, 64, 1, 8, 3), (128, 1000)), (tg.DOT_K, TileConfig(128, 128, 128, 1, 8, 3), (128, 300)),
            (tg.GEMV_H2, TileConfig(1, 256, 128, 4, 4, 2), (1, 3)), (tg.GEMV_H2, TileConfig(1, 128, 64, 1, 8, 3), (1,)),
            (tg.DOT_GLUON, TileConfig(16, 64, 64, 3, 4, 1), (1, 7, 16, 33)), (tg.DOT_GLUON, TileConfig(16, 128, 128, 2, 4, 1), (5, 16)),
            (tg.DOT_GLUON, TileConfig(16, 64, 32, 1, 4, 1), (16, 40))]


@pytest.mark.parametrize("case", range(11))
@pytest.mark.parametrize("gs", [32, 128])
@pytest.mark.parametrize("paired", [True, False])
def test_each_kernel_path_on_4bit_gptq(tmp_path, case, gs, paired, monkeypatch):
    """4-bit GPTQ-order layers take the joined paths by default; the general ones stay correct too
    (2/8-bit and act-order layers use them), forced here on the same layer."""
    from repack.kernels import triton_gemm as tg
    monkeypatch.setattr(tg, "PAIRED_DEQUANT", paired)
    path, cfg, ms = _paths()[case]
    L, packed, _ = layout_case(tmp_path, "gptq_v2", gs)
    for M in ms:
        seed = random.randrange(2**31)
        run_and_check(torch.randn(M, K, generator=torch.Generator().manual_seed(seed)).half().cuda(), packed, L, cfg,
                      seed, path)


def test_heuristic_and_tuned_configs_cover_every_m():
    from repack.kernels.tuned import pick_config
    for M in (1, 3, 5, 16, 40, 64, 200, 256, 1000, 5000):
        for cfg in (heuristic(M, 4096, 4096), pick_config(M, 4096, 4096)):
            assert cfg.block_m >= 1 and cfg.split_k >= 1


def test_verify_runs_each_layout_kernel(tmp_path):
    from fixtures.checkpoints import random_model
    from repack.verify import verify
    layers = random_model(seed=40, bits=4, group_size=32)
    g = write_gptq(tmp_path / "g", layers, "v1")
    a = write_awq(tmp_path / "a", layers, "gemm")
    report = verify(g, a, backend="triton")
    assert report.ok and report.backend == "triton", report.verdict()
    layers["model.layers.0.mlp.down_proj"].q[3, 3] ^= 1
    bad = write_awq(tmp_path / "bad", layers, "gemm")
    report = verify(g, bad, backend="triton")
    assert [l.module for l in report.layers if not l.ok] == ["model.layers.0.mlp.down_proj"]


@pytest.mark.parametrize("paired", [True, False])
@pytest.mark.parametrize("M, cfg", [(1024, TileConfig(256, 64, 64, 2, 4, 3)), (64, TileConfig(64, 128, 64, 9, 4, 3)),
                                    (1, TileConfig(1, 128, 128, 16, 4, 2)), (1024, TileConfig(128, 256, 64, 2, 8, 4, True)),
                                    (64, TileConfig(64, 256, 64, 5, 4, 4, True))])
def test_split_k_partial_sums_meet_without_a_race(M, cfg, paired, monkeypatch):
    """Before every thread fenced its partial sums, the H200 gave wrong tiles now and then (relative
    error 1e-2 to 6e-2) with these tiles and split 2..9 (benchmarks/results/diag-splitk-h200-before-fix.log);
    each runs five times on fresh inputs, paired dequantization on and off."""
    from repack.kernels import triton_gemm as tg
    monkeypatch.setattr(tg, "PAIRED_DEQUANT", paired)
    K, N = 4096, 4096
    w, W = random_gptq_words(K, N, 128, random.randrange(2**31))
    for _ in range(5):
        seed = random.randrange(2**31)
        x = torch.randn(M, K, generator=torch.Generator().manual_seed(seed)).half().cuda()
        want = x.double() @ W.t()
        y = tg.triton_gemm(x, w, cfg).double()
        rel = float((y - want).norm() / want.norm())
        assert rel <= TOLERANCE[torch.float16], f"relative error {rel:.2e} (seed {seed}, {cfg}, paired={paired})"


def _poisoned_runs(x, w, cfg, want, what: str, path: int | None = None, runs: int = 3) -> list:
    """``runs`` launches of tile ``cfg`` (on ``path``) into NaN-poisoned outputs, each fully written and within
    tolerance of ``want``; their outputs (float64)."""
    from repack.kernels import triton_gemm as tg
    M, N = x.shape[0], want.shape[1]
    out_runs = []
    for _ in range(runs):
        out = torch.full((M, N), float("nan"), dtype=x.dtype, device="cuda")
        out_runs.append(tg.triton_gemm(x, w, cfg, out=out, path_override=path).double())
        assert torch.isfinite(out_runs[-1]).all(), f"unwritten outputs ({what})"
        rel = float((out_runs[-1] - want).norm() / want.norm())
        assert rel <= TOLERANCE[torch.float16], f"relative error {rel:.2e} ({what})"
    return out_runs


CLUSTER_CASES = [(1, TileConfig(1, 256, 64, 8, 8, 2, cluster=8)), (1, TileConfig(1, 512, 64, 4, 4, 2, cluster=4)),
                 (1, TileConfig(1, 128, 128, 2, 4, 2, cluster=2)),
                 (16, TileConfig(16, 128, 128, 4, 4, 1, cluster=4)), (7, TileConfig(16, 256, 64, 8, 8, 1, cluster=8)),
                 (16, TileConfig(16, 64, 128, 2, 4, 1, cluster=2)),
                 (64, TileConfig(64, 64, 128, 4, 4, 3, cluster=4)), (33, TileConfig(64, 128, 64, 8, 8, 3, cluster=8)),
                 (100, TileConfig(128, 64, 128, 2, 4, 3, cluster=2))]


@pytest.mark.parametrize("M, cfg", CLUSTER_CASES)
def test_cluster_split_k_against_the_oracle(M, cfg, monkeypatch):
    """A K split inside a thread-block cluster (partial sums meet in distributed shared memory): each
    tile meets the float64 oracle with every output written (poisoned first), the sums are the same
    bits on every run (CTAs add in rank order, no atomics), and they agree with the global-memory split
    of the same tile. A K that the cluster cannot split evenly falls back to that split, still right."""
    from repack.kernels import triton_gemm as tg
    for K, N in ((4096, 1024), (4096 + 64 * 3, 1024 - 64)):
        w, W = random_gptq_words(K, N, 64, random.randrange(2**31))
        seed = random.randrange(2**31)
        x = torch.randn(M, K, generator=torch.Generator().manual_seed(seed)).half().cuda()
        want = x.double() @ W.t()
        runs = _poisoned_runs(x, w, cfg, want, f"seed {seed}, {cfg}, K={K}")
        if K % (cfg.cluster * cfg.block_k) == 0:
            assert all(torch.equal(r, runs[0]) for r in runs), f"cluster sums moved between runs ({cfg})"
        plain = tg.triton_gemm(x, w, dataclasses.replace(cfg, cluster=1)).double()
        assert float((plain - runs[0]).norm() / plain.norm()) < 1e-3
        # the dispatch's own choice, and the second call through the launch plan (its cluster metadata)
        monkeypatch.setattr(tg, "pick_config", lambda M_, N_, K_: cfg)
        tg._plans.clear()
        for _ in range(2):
            y = tg.triton_gemm(x, w).double()
            assert torch.equal(y, runs[0]) or K % (cfg.cluster * cfg.block_k), f"planned launch differs ({cfg})"
            assert float((y - want).norm() / want.norm()) <= TOLERANCE[torch.float16]
        monkeypatch.undo()


RS_CLUSTER_CASES = [(16, TileConfig(16, 128, 128, 2, 4, 4, rs=2, cluster=2)),
                    (7, TileConfig(16, 64, 128, 4, 4, 3, rs=1, cluster=4)),
                    (16, TileConfig(16, 128, 128, 8, 8, 4, rs=2, cluster=8)),
                    (33, TileConfig(32, 64, 128, 2, 4, 3, rs=2, cluster=2)),
                    (64, TileConfig(64, 64, 128, 4, 4, 4, rs=1, cluster=4))]


@pytest.mark.parametrize("M, cfg", RS_CLUSTER_CASES)
def test_transposed_tile_cluster_split_k_against_the_oracle(M, cfg, monkeypatch):
    """gluon_rs's K split inside a cluster (rs 1/2 tiles, gluon_rs._cluster_store, session 23): every output written
    (poisoned first) and within tolerance of float64, the same bits on every run (rank-order sums), close to the
    same tile split through global slots; a K the cluster cannot split evenly falls back to the slots; and the
    dispatch's own launch of the tile (under an entry's rs slot) and its launch plan give the same bits."""
    from repack.kernels import triton_gemm as tg
    for K, N in ((4096, 1024), (4096 + 128 * 3, 1024)):
        w, W = random_gptq_words(K, N, 128, random.randrange(2**31))
        seed = random.randrange(2**31)
        x = torch.randn(M, K, generator=torch.Generator().manual_seed(seed)).half().cuda()
        want = x.double() @ W.t()
        runs = _poisoned_runs(x, w, cfg, want, f"seed {seed}, {cfg}, K={K}", tg.DOT_RS)
        even = K % (cfg.cluster * cfg.block_k) == 0
        if even:
            assert all(torch.equal(r, runs[0]) for r in runs), f"cluster sums moved between runs ({cfg})"
        plain = tg.triton_gemm(x, w, dataclasses.replace(cfg, cluster=1), path_override=tg.DOT_RS).double()
        assert float((plain - runs[0]).norm() / plain.norm()) < 1e-3
        entry = TileConfig(64, 64, 128, 1, 4, 3, gptq_rs=cfg)
        monkeypatch.setattr(tg, "pick_config", lambda M_, N_, K_: entry)
        tg._plans.clear()
        for _ in range(2):
            y = tg.triton_gemm(x, w).double()
            assert not even or torch.equal(y, runs[0]), f"the dispatch's launch differs ({cfg})"
            assert float((y - want).norm() / want.norm()) <= TOLERANCE[torch.float16]
        monkeypatch.undo()
        tg._plans.clear()


@pytest.mark.parametrize("cfg", [TileConfig(1, 1024, 64, 32, 8, 4), TileConfig(1, 512, 64, 8, 4, 3),
                                 TileConfig(1, 256, 64, 8, 4, 4, cluster=8), TileConfig(1, 512, 64, 4, 8, 6, cluster=4),
                                 TileConfig(1, 128, 128, 1, 4, 2)])
def test_gemv_ring_against_the_oracle(cfg):
    """GEMV_H2 with its loads through a shared-memory ring (TileConfig.ring, in no shipped entry until
    measured): every output written and within tolerance, on an even and an uneven K, and where the sums
    are reduced in a fixed order (one program a tile, or a cluster) the same bits as without the ring."""
    from repack.kernels import triton_gemm as tg
    for K, N in ((4096, 2048), (4096 + 64 * 3, 2048 - 64)):
        w, W = random_gptq_words(K, N, 64, random.randrange(2**31))
        seed = random.randrange(2**31)
        x = torch.randn(1, K, generator=torch.Generator().manual_seed(seed)).half().cuda()
        want = x.double() @ W.t()
        ys = []
        for ring in (False, True):
            out = torch.full((1, N), float("nan"), dtype=x.dtype, device="cuda")
            ys.append(tg.triton_gemm(x, w, dataclasses.replace(cfg, ring=ring), out=out, path_override=tg.GEMV_H2).double())
            assert torch.isfinite(ys[-1]).all(), f"unwritten outputs (seed {seed}, {cfg}, ring={ring}, K={K})"
            rel = float((ys[-1] - want).norm() / want.norm())
            assert rel <= TOLERANCE[torch.float16], f"relative error {rel:.2e} (seed {seed}, {cfg}, ring={ring})"
        if cfg.split_k == 1 or (cfg.cluster > 1 and K % (cfg.cluster * cfg.block_k) == 0):
            assert torch.equal(ys[0], ys[1]), f"the ring changed the sums ({cfg}, K={K})"


# (group size, tile, [(K, GROUPS the dispatch must take)]): whole steps of block_k // group groups; a K the
# step does not divide (6144 = 1.5 x 4096) takes the widest power-of-two step that does; an odd number of
# groups (4096 + group) leaves one-group steps
@pytest.mark.parametrize("gs, cfg, cases", [
    (128, TileConfig(1, 32, 1024, 1, 4, 3, ring=True), [(4096, 8), (4096 + 128, 1)]),
    (128, TileConfig(1, 16, 2048, 1, 4, 2), [(4096, 16), (4096 + 128, 1)]),
    (32, TileConfig(1, 64, 512, 4, 8, 3), [(4096, 16), (4096 + 32, 1)]),
    (128, TileConfig(1, 32, 1024, 2, 4, 3, cluster=2, ring=True), [(4096, 8), (4096 + 128, 1), (6144, 8)]),
    (64, TileConfig(1, 32, 4096, 1, 8, 2), [(4096, 64), (4096 + 64, 1), (6144, 32)])])
@pytest.mark.parametrize("ragged", [False, True])
def test_gemv_multi_group_step_against_the_oracle(gs, cfg, cases, ragged, monkeypatch):
    """GEMV_H2 with a K step of several whole groups (block_k > group size): the dispatch takes the GROUPS
    branch where K splits into whole steps (checked in the launch plan), a narrower step elsewhere — or,
    with RAGGED_WIDE, the tuned step everywhere with a partial last step; every output written and within
    tolerance, alone, with a global split and inside a cluster."""
    from repack.kernels import triton_gemm as tg
    N = 2048
    for K, groups in cases:
        if ragged:
            groups = cfg.block_k // gs
        monkeypatch.setattr(tg, "RAGGED_WIDE", ragged)
        w, W = random_gptq_words(K, N, gs, random.randrange(2**31))
        seed = random.randrange(2**31)
        x = torch.randn(1, K, generator=torch.Generator().manual_seed(seed)).half().cuda()
        want = x.double() @ W.t()
        monkeypatch.setattr(tg, "pick_config", lambda M_, N_, K_: cfg)
        tg._plans.clear()
        for _ in range(2):  # the second call runs from the plan
            out = torch.full((1, N), float("nan"), dtype=x.dtype, device="cuda")
            y = tg.triton_gemm(x, w, out=out).double()
            assert torch.isfinite(y).all(), f"unwritten outputs (seed {seed}, {cfg}, K={K})"
            rel = float((y - want).norm() / want.norm())
            assert rel <= TOLERANCE[torch.float16], f"relative error {rel:.2e} (seed {seed}, {cfg}, K={K})"
        (plan,) = tg._plans.values()
        consts = dict(zip(tg._CONST_NAMES, plan[6]))
        assert (consts["PATH"], consts["GROUPS"]) == (tg.GEMV_H2, groups), (cfg, K, consts)
        monkeypatch.undo()


def test_launch_plans_serve_repeated_calls_and_never_a_stale_weight(tmp_path):
    """From the second call on a weight with the same activation shape the launch comes from a
    stored plan; every call still meets the oracle (fresh inputs, poisoned outputs, with and
    without ``out``), and a new weight — even at a recycled id — never runs on an old plan."""
    from repack.kernels import triton_gemm as tg
    seed = random.randrange(1 << 30)
    g = torch.Generator(device="cuda").manual_seed(seed)
    for layout, act in [("gptq_v1", False), ("gptq_v1", True), ("awq_gemm", False)]:
        L, packed, _ = layout_case(tmp_path, layout, 64, act, seed=seed % 1000)
        w = packed.to("cuda")
        for M in (1, 16, 1000, 1):
            for rep in range(3):
                x = torch.randn(M, K, dtype=torch.float16, device="cuda", generator=g)
                run_and_check_on(x, w, L, seed, with_out=rep % 2 == 0)
        assert any(p[0]() is w for p in tg._plans.values()), layout
    for i in range(4):  # weights made and dropped in turn: ids are recycled, plans must not be
        L, packed, _ = layout_case(tmp_path / str(i), "gptq_v2", 32, seed=seed % 1000 + i)
        w = packed.to("cuda")
        for _ in range(3):
            run_and_check_on(torch.randn(7, K, dtype=torch.float16, device="cuda", generator=g), w, L, seed, True)
        del w, packed


@pytest.mark.parametrize("layout", ["gptq", "awq"])
@pytest.mark.parametrize("cfg", [TileConfig(16, 128, 128, 2, 4, 4, rs=2), TileConfig(64, 64, 128, 1, 4, 4, rs=3),
                                 TileConfig(32, 64, 128, 3, 4, 3, rs=3)])
def test_transposed_tile_plans_launch_their_encoded_descriptors(layout, cfg, tmp_path, monkeypatch):
    """A gluon_rs plan encodes the weight's TMA descriptor once and x's from its pointer per call
    (encoded_launch.py, bypassing Triton's per-call descriptor handling): on this GPU's Triton the plan must take
    that path, and every call from it must meet the oracle (fresh x, poisoned out, with and without a K split)."""
    from repack.kernels import triton_gemm as tg
    from tests.triton_checks import awq_layer
    seed = random.randrange(1 << 30)
    K_, N_ = 1024, 512
    if layout == "awq":
        w, W = awq_layer(tmp_path, seed % 1000, 128, K_, N_, "cuda")
        W = W.t()
    else:
        w, W = random_gptq_words(K_, N_, 128, seed)
    monkeypatch.setattr(tg, "pick_config", lambda M, N, K: cfg)
    monkeypatch.setattr(tg, "AWQ_RS", True)
    tg._plans.clear()
    g = torch.Generator(device="cuda").manual_seed(seed)
    for call in range(4):  # the third and fourth from the plan
        x = torch.randn(cfg.block_m + 3, K_, dtype=torch.float16, device="cuda", generator=g)
        out = torch.full((x.shape[0], N_), float("nan"), dtype=x.dtype, device="cuda")
        y = tg.triton_gemm(x, w, out=out if call % 2 else None).double()
        assert torch.isfinite(y).all(), f"unwritten outputs (seed {seed}, call {call})"
        want = x.double() @ W.t().to(x.device)
        rel = float((y - want).norm() / want.norm())
        assert rel <= TOLERANCE[torch.float16], f"relative error {rel:.2e} (seed {seed}, call {call})"
    (plan,) = tg._plans.values()
    assert plan[-1] is not None, "the plan launches the encoded way"
    tg._plans.clear()


def run_and_check_on(x, w, L, seed, with_out):
    from repack.kernels.triton_gemm import triton_gemm
    out = torch.full((x.shape[0], N), float("nan"), dtype=x.dtype, device="cuda") if with_out else None
    y = triton_gemm(x, w, out=out)
    torch.cuda.synchronize()
    assert out is None or y.data_ptr() == out.data_ptr()
    assert torch.isfinite(y).all(), f"unwritten or non-finite outputs (seed {seed})"
    want = oracle(x, L)
    rel = float((y.double().cpu() - want).norm() / want.norm())
    assert rel <= TOLERANCE[x.dtype], f"relative error {rel:.2e} (seed {seed}, M={x.shape[0]})"


@pytest.mark.parametrize("layout", ["gptq_v1", "gptq_v2", "compressed"])
def test_half2_gemv_against_fp32_gemv(tmp_path, layout):
    """M = 1 fp16 takes GEMV_H2 (fp16x2 partial sums of eight products): within the tolerance of the
    oracle like every path, and close to the fp32-arithmetic GEMV_KJ on the same tile; an x whose rows
    are not 4-byte aligned (odd row stride) falls back to GEMV_KJ and is still right."""
    from repack.kernels import triton_gemm as tg
    L, packed, _ = layout_case(tmp_path, layout, 128)
    cfg = TileConfig(1, 128, 128, 2, 4, 2)
    for _ in range(3):
        seed = random.randrange(2**31)
        x = torch.randn(1, K, generator=torch.Generator().manual_seed(seed)).half().cuda()
        h2 = run_and_check(x, packed, L, cfg, seed, tg.GEMV_H2).double()
        kj = run_and_check(x, packed, L, cfg, seed, tg.GEMV_KJ).double()
        assert float((h2 - kj).norm() / kj.norm()) < 1e-3
        wide = torch.randn(1, K + 1, generator=torch.Generator().manual_seed(seed)).half().cuda()
        run_and_check(wide[:, 1:], packed, L, seed=seed)  # data pointer 2 bytes past an aligned one


@pytest.mark.parametrize("layout", ["gptq_v1", "gptq_v2"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_gluon_tile_matches_the_tl_dot_tile(tmp_path, layout, dtype):
    """The Gluon tile ((q - z) born in mma.sync registers, K permuted, scale on each step's sums) and
    DOT_KTJ on the same layer and tile: both within tolerance of the oracle, and the same sums up to fp32
    reordering and the rounding of s (q - z) to 16 bits that the Gluon tile skips. Split 3 leaves the
    last program 4 of 6 steps; 8 warps take 16 rows each."""
    from repack.kernels import triton_gemm as tg
    L, packed, _ = layout_case(tmp_path, layout, 128)
    for cfg, M in ((TileConfig(16, 128, 64, 2, 4, 1), 16), (TileConfig(16, 64, 128, 1, 4, 1), 9), (TileConfig(16, 64, 32, 4, 4, 1), 40),
                   (TileConfig(16, 128, 64, 3, 4, 1), 13), (TileConfig(16, 128, 64, 2, 8, 1), 16), (TileConfig(16, 128, 32, 4, 8, 1), 33)):
        seed = random.randrange(2**31)
        x = torch.randn(M, K, generator=torch.Generator().manual_seed(seed)).to(dtype).cuda()
        a = run_and_check(x, packed, L, cfg, seed, tg.DOT_GLUON).double()
        b = run_and_check(x, packed, L, cfg, seed, tg.DOT_KTJ).double()
        assert float((a - b).norm() / b.norm()) < (2e-3 if dtype == torch.float16 else 1e-2)


def test_half2_gemv_with_outlier_activations(tmp_path):
    """GEMV_H2 sums four products per fp16 half: with (q - z) / 64 no finite x can overflow it. Before
    that scaling, activations of a few thousand (as LLMs' outlier channels reach) gave inf."""
    from repack.kernels import triton_gemm as tg
    L, packed, _ = layout_case(tmp_path, "gptq_v1", 128)  # v1: zeros up to 16, so |q - z| up to 16
    for scale in (3000.0, 8000.0):  # the outputs (about 1.1 scale here) stay within fp16
        seed = random.randrange(2**31)
        x = (torch.randn(1, K, generator=torch.Generator().manual_seed(seed)) * scale).clamp(-65504, 65504).half().cuda()
        run_and_check(x, packed, L, TileConfig(1, 128, 128, 2, 4, 2), seed, tg.GEMV_H2)


@pytest.mark.parametrize("gs", [32, 128, -1])
def test_awq_half2_gemv_against_fp32_gemv(tmp_path, gs):
    """AWQ gemm words at M = 1 with fp16 x take GEMV_NH2 (output pairs 2j, 2j + 1 from fields j, j + 4,
    eight rows summed in fp16x2): within the oracle's tolerance on tiles with and without a K split, a
    ring, a cluster and a partial last column tile (N = 384), close to the fp32 GEMV_N, and finite with
    outlier activations (eight products of (q - z) / 128 cannot overflow fp16)."""
    from repack.kernels import triton_gemm as tg
    L, packed, _ = layout_case(tmp_path, "awq_gemm", gs)
    tiles = [TileConfig(1, 256, 64, 1, 4, 2), TileConfig(1, 128, 128, 3, 4, 2), TileConfig(1, 256, 64, 4, 8, 3, ring=True),
             TileConfig(1, 128, 64, 2, 4, 2, cluster=2), TileConfig(1, 64, 32, 1, 2, 2)]
    for cfg in tiles:
        for M in (1, 3):
            seed = random.randrange(2**31)
            x = torch.randn(M, K, generator=torch.Generator().manual_seed(seed)).half().cuda()
            h2 = run_and_check(x, packed, L, cfg, seed, tg.GEMV_NH2).double()
            n32 = run_and_check(x, packed, L, cfg, seed, tg.GEMV_N).double()
            assert float((h2 - n32).norm() / n32.norm()) < 1e-3, cfg
    w = packed.to("cuda")  # the default dispatch (GEMV_NH2 on the M = 1 tile of the other paths), planned on w
    seed = random.randrange(2**31)
    x = torch.randn(1, K, generator=torch.Generator().manual_seed(seed)).half().cuda()
    want = oracle(x, L)
    for _ in range(2):  # a plan is kept from the second call on (the first one compiles)
        assert float((tg.triton_gemm(x, w).double().cpu() - want).norm() / want.norm()) <= TOLERANCE[torch.float16]
    assert {dict(zip(tg._CONST_NAMES, p[6]))["PATH"] for p in tg._plans.values() if p[0]() is w} == {tg.GEMV_NH2}
    for scale in (3000.0, 8000.0):
        seed = random.randrange(2**31)
        x = (torch.randn(1, K, generator=torch.Generator().manual_seed(seed)) * scale).clamp(-65504, 65504).half().cuda()
        run_and_check(x, packed, L, tiles[0], seed, tg.GEMV_NH2)


PIPE_TILES = [(TileConfig(64, 128, 64, 1, 4, 4, True), (64, 100, 1000)), (TileConfig(128, 128, 64, 3, 4, 3, True), (7, 128, 300)),
              (TileConfig(64, 128, 64, 3, 4, 5, True), (33, 64)), (TileConfig(128, 128, 128, 1, 8, 3, True), (129,)),
              (TileConfig(256, 128, 64, 2, 8, 4, True), (256, 300))]


@pytest.mark.parametrize("layout", ["gptq_v1", "gptq_v2"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("gs", [64, 128])
def test_pipelined_tile_against_the_oracle(tmp_path, layout, dtype, gs):
    """gluon_pipe's tile (cp.async ring, asynchronous wgmma from shared memory) on whole and partial
    M tiles, with and without a K split, 3-5 ring slots, K tiles of 64-128 (one or two per group),
    eight and four columns per thread: every output written and within tolerance of the oracle; and the same sums as DOT_KTJ."""
    from repack.kernels import triton_gemm as tg
    _forced_tiles_match_the_oracle_and_ktj(tmp_path, layout, dtype, gs, PIPE_TILES, tg.DOT_PIPE)


def _forced_tiles_match_the_oracle_and_ktj(tmp_path, layout: str, dtype, gs: int, tiles: list, path: int,
                                           base: int | None = None) -> None:
    """Each (tile, M values) of ``tiles`` forced onto kernel ``path`` (where the tile divides the
    layer): every output written and within tolerance of the oracle (run_and_check), and the same
    sums as DOT_KTJ's 64x64 tile (or path ``base``'s) on the same input."""
    from repack.kernels import triton_gemm as tg
    base = tg.DOT_KTJ if base is None else base
    L, packed, _ = layout_case(tmp_path, layout, gs)
    for cfg, ms in tiles:
        if gs % cfg.block_k or N % cfg.block_n:
            continue
        for M in ms:
            seed = random.randrange(2**31)
            x = torch.randn(M, K, generator=torch.Generator().manual_seed(seed)).to(dtype).cuda()
            a = run_and_check(x, packed, L, cfg, seed, path).double()
            b = run_and_check(x, packed, L, TileConfig(64, 64, cfg.block_k, 1, 4, 3), seed, base).double()
            assert float((a - b).norm() / b.norm()) < (2e-3 if dtype == torch.float16 else 1e-2)


WS_TILES = [(TileConfig(128, 128, 64, 1, 4, 4, ws=True), (64, 128, 300)), (TileConfig(64, 256, 64, 1, 4, 3, ws=True), (7, 64, 1000)),
            (TileConfig(128, 128, 128, 1, 4, 2, ws=True), (129,)), (TileConfig(64, 128, 64, 1, 4, 6, ws=True), (33, 200))]


@pytest.mark.parametrize("layout", ["gptq_v1", "gptq_v2"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("gs", [64, 128])
def test_warp_specialized_tile_against_the_oracle(tmp_path, layout, dtype, gs):
    """gluon_ws's tile (load warp, dequantization warps, MMA warps on mbarriers) on whole and partial
    M tiles, rings of 2-6 slots, K tiles of 64-128: every output written and within tolerance of the
    oracle, and the same sums as DOT_KTJ."""
    from repack.kernels import triton_gemm as tg
    _forced_tiles_match_the_oracle_and_ktj(tmp_path, layout, dtype, gs, WS_TILES, tg.DOT_WS)


def _large_layer_matches_float64(cases, path: int) -> None:
    """4096x4096 g128 layer of random words: each (M, forced tile) on kernel ``path`` within tolerance of float64."""
    from repack.kernels import triton_gemm as tg
    w, W = random_gptq_words(4096, 4096, 128, random.randrange(2**31))
    for M, cfg in cases:
        seed = random.randrange(2**31)
        x = torch.randn(M, 4096, generator=torch.Generator().manual_seed(seed)).half().cuda()
        want = x.double() @ W.t()
        y = tg.triton_gemm(x, w, cfg, path_override=path).double()
        rel = float((y - want).norm() / want.norm())
        assert rel <= TOLERANCE[torch.float16], f"relative error {rel:.2e} (seed {seed}, {cfg})"


def test_warp_specialized_tile_on_a_large_layer():
    """Many K steps (the rings wrap dozens of times: the mbarrier phases) and many programs."""
    from repack.kernels import triton_gemm as tg
    _large_layer_matches_float64(((1024, TileConfig(128, 128, 64, 1, 4, 4, ws=True)),
                                  (256, TileConfig(64, 256, 64, 1, 4, 3, ws=True))), tg.DOT_WS)


RS_TILES = [(TileConfig(128, 128, 64, 1, 8, 4, rs=1), (7, 128, 300)), (TileConfig(64, 128, 64, 3, 4, 3, rs=1), (33, 64, 200)),
            (TileConfig(256, 64, 64, 2, 4, 4, rs=1), (256, 1000)), (TileConfig(128, 128, 128, 1, 8, 3, rs=2), (129,)),
            (TileConfig(64, 128, 32, 2, 8, 5, rs=1), (64, 100)), (TileConfig(128, 128, 64, 3, 8, 4, rs=2), (300,))]


@pytest.mark.parametrize("layout", ["gptq_v1", "gptq_v2"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("gs", [64, 128])
def test_transposed_register_tile_against_the_oracle(tmp_path, layout, dtype, gs):
    """gluon_rs's tile (weights dequantized into wgmma's A registers, x by TMA) on whole and partial M
    tiles, 4 and 8 warps, one and two 16-row repetitions a warp, K tiles of 32-128, rings of 3-5 slots,
    with and without a K split, each step's wgmma left running or waited for: every output written and
    within tolerance of the oracle, and the same sums as DOT_KTJ."""
    from repack.kernels import triton_gemm as tg
    _forced_tiles_match_the_oracle_and_ktj(tmp_path, layout, dtype, gs, RS_TILES, tg.DOT_RS)


WS_RS_TILES = [(TileConfig(128, 128, 64, 1, 8, 4, rs=3), (7, 128, 300)), (TileConfig(64, 128, 64, 1, 4, 3, rs=3), (33, 64, 200)),
               (TileConfig(256, 64, 64, 1, 4, 4, rs=3), (256, 1000)), (TileConfig(128, 128, 128, 1, 8, 3, rs=3), (129,)),
               (TileConfig(64, 64, 32, 1, 4, 6, rs=3), (64, 100)), (TileConfig(64, 128, 64, 3, 4, 4, rs=3), (33, 100)),
               (TileConfig(128, 128, 64, 2, 8, 3, rs=3), (7, 300))]


@pytest.mark.parametrize("layout", ["gptq_v1", "gptq_v2"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("gs", [64, 128])
def test_warp_specialized_transposed_tile_against_the_oracle(tmp_path, layout, dtype, gs):
    """gluon_rs's warp-specialized tile (TileConfig.rs 3: a load warp feeding the ring through empty/ready
    mbarriers), with and without a K split (the split's epilogue barrier is the MMA warps' own): every output
    written, within tolerance of the oracle and of DOT_KTJ."""
    from repack.kernels import triton_gemm as tg
    _forced_tiles_match_the_oracle_and_ktj(tmp_path, layout, dtype, gs, WS_RS_TILES, tg.DOT_RS)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("gs", [64, 128])
def test_transposed_register_tile_on_awq_words(tmp_path, dtype, gs):
    """gluon_rs on AutoAWQ's words (a register's two inputs from two words, each column at its nibble of the
    0 2 4 6 1 3 5 7 order), on the tiles of both tests above: every output written, within tolerance of the
    oracle and of AWQ's own tensor-core tile (DOT_N)."""
    from repack.kernels import triton_gemm as tg
    _forced_tiles_match_the_oracle_and_ktj(tmp_path, "awq_gemm", dtype, gs, RS_TILES + WS_RS_TILES, tg.DOT_RS,
                                           base=tg.DOT_N)


SMALL_M_RS_TILES = [(TileConfig(16, 128, 128, 2, 4, 4, rs=2), (1, 7, 16, 33)), (TileConfig(16, 64, 64, 3, 4, 3, rs=1), (16,)),
                    (TileConfig(32, 128, 64, 1, 8, 4, rs=1), (16, 40)), (TileConfig(16, 128, 128, 1, 4, 6, rs=3), (7, 16)),
                    (TileConfig(32, 64, 128, 1, 4, 4, rs=3), (32,)), (TileConfig(16, 128, 128, 3, 4, 4, rs=3), (7, 16))]


@pytest.mark.parametrize("layout", ["gptq_v1", "awq_gemm"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_transposed_register_tile_with_16_and_32_token_tiles(tmp_path, layout, dtype):
    """gluon_rs with a wgmma N of 16 or 32 tokens (M <= 32 tiles; x rows past M come as zeros from TMA), with and
    without a K split, both waits and the warp-specialized kernel: every output written, within tolerance of the
    oracle and of the layout's own tensor-core tile."""
    from repack.kernels import triton_gemm as tg
    _forced_tiles_match_the_oracle_and_ktj(tmp_path, layout, dtype, 128, SMALL_M_RS_TILES, tg.DOT_RS,
                                           base=tg.DOT_N if layout == "awq_gemm" else None)


POST_RS_TILES = SMALL_M_RS_TILES + [(TileConfig(16, 64, 64, 1, 4, 4, rs=2), (5, 16))]


@pytest.mark.parametrize("layout", ["gptq_v1", "awq_gemm"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_transposed_register_tile_with_scales_after_the_mma(tmp_path, monkeypatch, layout, dtype):
    """gluon_rs's POST (RS_POST_MAX_BLOCK_M): the A tile holds q - z, the scales multiply each step's wgmma sums in
    fp32 (a 64-deep K tile inside a 128 group: two steps of one group's scales); both kernels, both waits, K
    splits: every output written, within tolerance of the oracle and of the layout's own tensor-core tile."""
    from repack.kernels import triton_gemm as tg
    monkeypatch.setattr(tg, "RS_POST_MAX_BLOCK_M", 32)
    _forced_tiles_match_the_oracle_and_ktj(tmp_path, layout, dtype, 128, POST_RS_TILES, tg.DOT_RS,
                                           base=tg.DOT_N if layout == "awq_gemm" else None)


LEAN_RS_TILES = [(TileConfig(16, 64, 128, 1, 4, 4, rs=3, lean=True), (7, 16)),
                 (TileConfig(16, 128, 128, 3, 4, 3, rs=3, lean=True), (16,)),
                 (TileConfig(32, 64, 128, 2, 4, 4, rs=3, lean=True), (5, 32))]


@pytest.mark.parametrize("layout", ["gptq_v1", "awq_gemm"])
def test_warp_specialized_post_tiles_at_lean_register_budgets(tmp_path, layout):
    """TileConfig.lean (gluon_rs.LEAN_WS_REGS: three or four CTAs an SM): the warp-specialized POST tiles at their
    lean launch budgets, with and without a K split: every output written, within tolerance of the oracle and of
    the layout's own tensor-core tile."""
    from repack.kernels import triton_gemm as tg
    _forced_tiles_match_the_oracle_and_ktj(tmp_path, layout, torch.float16, 128, LEAN_RS_TILES, tg.DOT_RS,
                                           base=tg.DOT_N if layout == "awq_gemm" else None)


SPLIT_RS_TILES = [(cfg, ms) for cfg, ms in RS_TILES + WS_RS_TILES + POST_RS_TILES if cfg.split_k > 1]


@pytest.mark.parametrize("layout", ["gptq_v1", "awq_gemm"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_transposed_tile_k_splits_through_slots(tmp_path, monkeypatch, layout, dtype):
    """RS_SPLIT_SLOTS: gluon_rs's K splits leave their partial sums in slots of their own and the tile's last program
    adds them (no atomics on the sums), on every split tile of the tests above (both kernels, POST, 16-256 tokens):
    every output written and within tolerance of the oracle and of the layout's own tile, each tile three times
    on fresh inputs (a slot read before its program's stores were visible would show as a wrong tile)."""
    from repack.kernels import triton_gemm as tg
    monkeypatch.setattr(tg, "RS_SPLIT_SLOTS", True)
    monkeypatch.setattr(tg, "RS_POST_MAX_BLOCK_M", 32)
    for _ in range(3):
        _forced_tiles_match_the_oracle_and_ktj(tmp_path, layout, dtype, 128, SPLIT_RS_TILES, tg.DOT_RS,
                                               base=tg.DOT_N if layout == "awq_gemm" else None)


def test_transposed_tile_k_splits_by_atomics_past_the_slot_budget(tmp_path, monkeypatch):
    """A launch whose slots would pass RS_SLOT_VALUES adds its partial sums into the zeroed workspace by atomics
    (gluon_gemm._finish) instead: the same split tiles, GPTQ words, fp16."""
    from repack.kernels import triton_gemm as tg
    monkeypatch.setattr(tg, "RS_SLOT_VALUES", 0)
    monkeypatch.setattr(tg, "RS_POST_MAX_BLOCK_M", 32)
    _forced_tiles_match_the_oracle_and_ktj(tmp_path, "gptq_v1", torch.float16, 128, SPLIT_RS_TILES, tg.DOT_RS)


def test_slot_k_splits_on_a_large_layer(monkeypatch):
    """Slot K splits over many tiles and programs (a 256x128 tile split four ways: 128 KB a slot)."""
    from repack.kernels import triton_gemm as tg
    monkeypatch.setattr(tg, "RS_SPLIT_SLOTS", True)
    _large_layer_matches_float64(((256, TileConfig(256, 128, 64, 4, 8, 4, rs=3)), (1000, TileConfig(128, 64, 128, 3, 4, 3, rs=3)),
                                  (64, TileConfig(64, 64, 128, 5, 4, 4, rs=1)), (16, TileConfig(16, 128, 128, 5, 4, 3, rs=3))),
                                 tg.DOT_RS)


@pytest.mark.parametrize("split", [2, 3, 5, 8])
def test_slot_k_splits_meet_without_a_race(split, monkeypatch):
    """The last part of a slot split reads the other slots after one thread's acquire and the CTA barrier, with no
    fence of its own, several slots at once (gluon_rs._store_part, session 23): 16-token tiles of both kernels on a
    4096x4096 layer split 2-8 ways, ten runs each on fresh inputs, every one within tolerance of float64 (a slot
    read before its stores were visible shows as a wrong tile)."""
    from repack.kernels import triton_gemm as tg
    monkeypatch.setattr(tg, "RS_SPLIT_SLOTS", True)
    _large_layer_matches_float64([(16, TileConfig(16, 128, 128, split, 4, 4, rs=2)),
                                  (16, TileConfig(16, 64, 128, split, 4, 3, rs=3))] * 10, tg.DOT_RS)


STREAM_RS_TILES = [(TileConfig(16, 64, 128, 1, 4, 3, rs=1, stream=1), (5, 16, 33)),
                   (TileConfig(16, 128, 128, 1, 4, 3, rs=2, stream=2), (16, 40)),
                   (TileConfig(32, 64, 128, 1, 4, 3, rs=2, stream=1), (33, 64)),
                   (TileConfig(64, 64, 128, 1, 4, 4, rs=1, stream=1), (64, 200)),
                   (TileConfig(128, 64, 64, 1, 4, 4, rs=1, stream=1), (300, 1000)),
                   (TileConfig(256, 128, 64, 1, 8, 3, rs=1, stream=1), (256, 1000)),
                   (TileConfig(128, 128, 64, 1, 8, 4, rs=2, stream=3), (129,)),
                   # warp-specialized (w4_rs_ws_stream_kernel): the ring's phases carried from piece to piece
                   (TileConfig(16, 64, 128, 1, 4, 3, rs=3, stream=2), (5, 16)),
                   (TileConfig(16, 128, 128, 1, 4, 4, rs=3, lean=True, stream=1), (16, 33)),
                   (TileConfig(32, 64, 128, 1, 4, 3, rs=3, stream=3), (33, 64)),
                   (TileConfig(64, 64, 128, 1, 4, 4, rs=3, stream=2), (64, 100)),
                   (TileConfig(128, 64, 64, 1, 4, 4, rs=3, stream=1), (300,)),
                   (TileConfig(256, 128, 64, 1, 8, 6, rs=3, stream=1), (256, 1000)),
                   # hybrid (stream_tail): at 1000 tokens, 378 tiles of 16 x 64: two waves whole on 132 SMs and
                   # the rest streamed (tail 1), or one wave whole (tail 2)
                   (TileConfig(16, 64, 128, 1, 4, 3, rs=1, stream=1, stream_tail=1), (1000,)),
                   (TileConfig(16, 64, 128, 1, 4, 3, rs=3, stream=1, stream_tail=2), (1000,)),
                   # 352 tokens: 132 tiles, one whole wave on 132 SMs and nothing streamed (the counters must
                   # still be the workspace's int32, not y)
                   (TileConfig(16, 64, 128, 1, 4, 3, rs=3, stream=1, stream_tail=1), (352,)),
                   (TileConfig(16, 64, 128, 1, 4, 3, rs=2, stream=1, stream_tail=1), (352,))]


@pytest.mark.parametrize("layout", ["gptq_v1", "awq_gemm"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_stream_k_tiles(tmp_path, monkeypatch, layout, dtype):
    """gluon_rs's stream-K kernel (TileConfig.stream): the launch's K steps cut into one even range a program across
    tiles, a tile's parts meeting in slots. On this 1024x384 layer ranges of one step to a few tiles: tiles cut
    into up to eight parts, whole tiles, a program's ring used again for its next tile. Both waits, POST (16 and
    32 tokens), 4 and 8 warps, warp-specialized (lean too); every output written and within tolerance of the oracle and of the layout's own
    tile, three times on fresh inputs (the tiles' counters must be back at zero after each launch)."""
    from repack.kernels import triton_gemm as tg
    monkeypatch.setattr(tg, "RS_POST_MAX_BLOCK_M", 32)
    for _ in range(3):
        _forced_tiles_match_the_oracle_and_ktj(tmp_path, layout, dtype, 128, STREAM_RS_TILES, tg.DOT_RS,
                                               base=tg.DOT_N if layout == "awq_gemm" else None)


def test_stream_k_on_a_large_layer():
    """Stream-K over many tiles and steps (4096x4096: 32-64 steps a tile, ranges that cut tiles anywhere)."""
    from repack.kernels import triton_gemm as tg
    _large_layer_matches_float64(((16, TileConfig(16, 128, 128, 1, 4, 3, rs=2, stream=3)),
                                  (64, TileConfig(64, 64, 128, 1, 4, 4, rs=1, stream=2)),
                                  (1024, TileConfig(256, 128, 64, 1, 8, 3, rs=1, stream=1)),
                                  (256, TileConfig(128, 64, 64, 1, 4, 4, rs=2, stream=2)),
                                  (16, TileConfig(16, 128, 128, 1, 4, 4, rs=3, stream=2)),
                                  (1024, TileConfig(256, 128, 64, 1, 8, 6, rs=3, stream=1)),
                                  # hybrid on 132 SMs: 1024 tiles of 64x64, 7 waves whole (tail 1) or 6 (tail 2);
                                  # 512 of 128x64, 3 waves whole; the rest streamed
                                  (1000, TileConfig(64, 64, 128, 1, 4, 4, rs=1, stream=1, stream_tail=1)),
                                  (1024, TileConfig(128, 64, 64, 1, 4, 4, rs=3, stream=1, stream_tail=1)),
                                  (1024, TileConfig(64, 64, 128, 1, 4, 4, rs=3, stream=1, stream_tail=2))), tg.DOT_RS)


@pytest.mark.parametrize("layout", ["gptq_v1", "awq_gemm"])
def test_column_views_run_the_transposed_tile(tmp_path, layout):
    """PackedWeight.columns through gluon_rs (word rows, scales and zeros strided as the whole layer's; y written
    through a column view of one output): two launches over [0, 768) and [768, 1024), with different tiles and a
    K split, fill every output within tolerance of the float64 oracle."""
    from repack.kernels import triton_gemm as tg
    seed = random.randrange(2**31)
    if layout == "gptq_v1":
        w, W = random_gptq_words(1024, 1024, 128, seed)
        W = W.t().cpu()
    else:
        from tests.triton_checks import awq_layer
        w, W = awq_layer(tmp_path, seed % 1000, 128, 1024, 1024, "cuda")
    x = torch.randn(300, 1024, generator=torch.Generator().manual_seed(seed)).half().cuda()
    y = torch.full((300, 1024), float("nan"), dtype=torch.float16, device="cuda")
    tg.triton_gemm(x, w.columns(0, 768), TileConfig(128, 128, 64, 1, 8, 4, rs=3), out=y[:, :768],
                   path_override=tg.DOT_RS)
    tg.triton_gemm(x, w.columns(768, 1024), TileConfig(64, 64, 128, 2, 4, 4, rs=1), out=y[:, 768:],
                   path_override=tg.DOT_RS)
    assert torch.isfinite(y).all(), f"outputs left unwritten (seed {seed})"
    want = x.double().cpu() @ W
    rel = float((y.double().cpu() - want).norm() / want.norm())
    assert rel <= TOLERANCE[torch.float16], f"relative error {rel:.2e} (seed {seed})"


@pytest.mark.parametrize("layout", ["gptq", "awq"])
def test_a_wave_split_layer_matches_the_oracle(monkeypatch, tmp_path, layout):
    """The default dispatch with a wave split (TileConfig.tail, as on a 10-SM GPU: 22 tiles of 256x128 run their
    two whole waves' 1280 columns, then 128 columns of 128x64 tiles): every output of one y written and within
    tolerance, on the first call and from the two launches' plans after it, into a given out and a fresh one;
    GPTQ words and AutoAWQ gemm words."""
    from repack.kernels import triton_gemm as tg
    monkeypatch.setattr(tg, "_sms_of", lambda x: 10)
    tail = TileConfig(128, 64, 64, 1, 4, 4, rs=3)
    monkeypatch.setattr(tg, "pick_config", lambda M, N, K: TileConfig(
        64, 64, 64, gptq_rs=TileConfig(256, 128, 64, 1, 8, 4, rs=3, tail=tail)))
    assert tg.wave_split(512, 1408, TileConfig(256, 128, 64, 1, 8, 4, rs=3, tail=tail), 10) == 1280
    seed = random.randrange(2**31)
    if layout == "awq":
        from tests.triton_checks import awq_layer
        w, W = awq_layer(tmp_path, seed % 1000, 128, 1024, 1408, "cuda")
        W = W.t().cuda()  # [N, K] on the GPU, as random_gptq_words gives it
    else:
        w, W = random_gptq_words(1024, 1408, 128, seed)
    tg._plans.clear()
    for _ in range(3):
        x = torch.randn(512, 1024, generator=torch.Generator().manual_seed(seed)).half().cuda()
        want = x.double() @ W.t()
        for out in (torch.full((512, 1408), float("nan"), dtype=torch.float16, device="cuda"), None):
            y = tg.triton_gemm(x, w, out=out).double()
            assert torch.isfinite(y).all(), f"outputs left unwritten (seed {seed})"
            rel = float((y - want).norm() / want.norm())
            assert rel <= TOLERANCE[torch.float16], f"relative error {rel:.2e} (seed {seed})"
        seed += 1
    assert len(tg._plans) == 2  # the two launches', not the layer's
    tg._plans.clear()


def test_transposed_register_tile_on_a_large_layer():
    """Many K steps (the ring wraps dozens of times: the mbarrier phases), many programs, 256-wide tiles."""
    from repack.kernels import triton_gemm as tg
    _large_layer_matches_float64(((1024, TileConfig(128, 256, 64, 1, 8, 4, rs=1)), (256, TileConfig(64, 256, 64, 4, 4, 4, rs=1)),
                                  (300, TileConfig(256, 128, 64, 2, 8, 3, rs=1)),
                                  (1000, TileConfig(128, 128, 64, 1, 8, 4, rs=2))), tg.DOT_RS)


def test_warp_specialized_transposed_tile_on_a_large_layer():
    """The warp-specialized tile over many K steps (the ring's empty/ready phases wrap dozens of times)."""
    from repack.kernels import triton_gemm as tg
    _large_layer_matches_float64(((1024, TileConfig(256, 128, 64, 1, 8, 4, rs=3)),
                                  (256, TileConfig(128, 64, 64, 1, 4, 4, rs=3)),
                                  (16, TileConfig(16, 128, 128, 4, 4, 4, rs=3))), tg.DOT_RS)


def test_every_forced_large_tile_gives_the_right_sums():
    """Tiles a caller or the tuner may force at M > 16 on a GPTQ-order layer: each one's output equals
    the 64x64 tile's (itself checked against the oracle above) — 128x256x64 with 8 warps was off by
    ~10 % (run with 4 warps now: triton_gemm)."""
    from repack.kernels import triton_gemm as tg
    K2, N2 = 1024, 1024
    w, W = random_gptq_words(K2, N2, 128, random.randrange(2**31))
    seed = random.randrange(2**31)
    x = torch.randn(300, K2, generator=torch.Generator().manual_seed(seed)).half().cuda()
    want = tg.triton_gemm(x, w, TileConfig(64, 64, 64, 1, 4, 3)).double()
    assert float((want - x.double() @ W.t()).norm() / want.norm()) <= TOLERANCE[torch.float16]
    for bm, bn, bk, warps in ((128, 256, 64, 8), (128, 256, 128, 8), (256, 128, 64, 8), (256, 128, 128, 8),
                              (128, 128, 64, 4), (64, 256, 64, 8)):
        y = tg.triton_gemm(x, w, TileConfig(bm, bn, bk, 1, warps, 3)).double()
        assert float((y - want).norm() / want.norm()) < 1e-3, f"{bm}x{bn}x{bk} w{warps} (seed {seed})"
