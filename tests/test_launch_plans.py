"""The launch plan's arguments (triton_gemm._planned) against the full dispatch's, on the CPU: the kernel
launch is replaced by a recorder, so what is checked is the host code — a plan's second call must hand
the launcher the same arguments as the first call's launch, with pointers as integers (the weight's taken
when the plan was made) and its own output. Also the warps and stages the dispatch launches the AWQ
tensor-core tile with. Needs the triton package (the module imports it), no GPU."""

from __future__ import annotations

from typing import NamedTuple

import pytest
import torch

from tests.triton_checks import has_triton, random_gptq_words

pytestmark = pytest.mark.skipif(not has_triton(), reason="needs the triton package")


class Recorder:
    """Stands in for a compiled kernel: keeps the arguments of each run()."""

    function = object()

    def __init__(self):
        self.runs = []

    def run(self, *args):
        self.runs.append(args)


def _as_launched(a):
    return a.data_ptr() if isinstance(a, torch.Tensor) else a


class Launch(NamedTuple):
    fn: object  # the Gluon kernel, or None for triton_gemm's own
    consts: dict  # constexpr name -> value
    grid: tuple
    args: tuple
    maxnreg: int | None


def _record_launches(monkeypatch, rec: Recorder | None = None) -> list:
    """Replaces triton_gemm's kernel launch by a recorder, as on a Hopper GPU (Gluon available, stream 0):
    each launch appends a Launch, and ``rec`` (a fresh Recorder if none) stands in for the compiled kernel."""
    from repack.kernels import triton_gemm as tg
    launched = []
    rec = rec or Recorder()

    def fake_launch(grid, args, consts, warps, stages, device, stream, fn=None, names=None, maxnreg=None, **kw):
        launched.append(Launch(fn, dict(zip(names or tg._CONST_NAMES, consts)), grid, args, maxnreg))
        return rec, ("meta",)

    monkeypatch.setattr(tg, "_launch", fake_launch)
    monkeypatch.setattr(tg, "_raw_stream", lambda index: 0)  # the dispatch's stream on a CPU tensor
    monkeypatch.setattr(tg, "_gluon_available", lambda: True)  # (it asks the GPU for Hopper)
    return launched


@pytest.mark.parametrize("dtype, K, N", [(torch.float16, 4096, 4096),     # GEMV_H2, tuned: no K split
                                         (torch.bfloat16, 4096, 4096),    # GEMV_KJ, split through the workspace
                                         (torch.float16, 4096 + 128, 1000)])  # a nearby entry, narrow step
def test_a_plan_launches_what_the_dispatch_launched(dtype, K, N, monkeypatch):
    from repack.kernels import triton_gemm as tg
    rec = Recorder()
    launched = []

    def fake_launch(grid, args, consts, *rest, **kw):
        launched.append((grid, args, consts))
        return rec, ("meta",)

    monkeypatch.setattr(tg, "_launch", fake_launch)
    monkeypatch.setattr(tg, "_raw_stream", lambda index: 0)  # the dispatch's stream on a CPU tensor
    tg._plans.clear()
    w, _ = random_gptq_words(K, N, 128, K + N, device="cpu")
    x = torch.randn(3, 1, K).to(dtype)[1]  # [1, K], not at the storage's start
    y1 = tg.triton_gemm(x, w)
    (grid, args, consts), = launched
    assert len(tg._plans) == 1
    y2 = tg._planned(x, w, None)
    assert y2 is not None and y2.shape == (1, N) and y2.data_ptr() != y1.data_ptr()
    (run,) = rec.runs
    assert run[:4] == (grid[0], grid[1], grid[2], 0) and run[4] is Recorder.function and run[5] == ("meta",)
    want = [_as_launched(a) for a in args]
    want[5] = y2.data_ptr()  # the plan's call writes its own output
    if args[6] is args[5]:  # no K split: the workspace arguments are the output, unused
        want[6] = want[7] = y2.data_ptr()
    assert list(run[9:9 + len(args)]) == want
    assert all(isinstance(a, int) for a in run[9:17]), "pointers go to the launcher as integers"
    assert tuple(run[9 + len(args):]) == tuple(consts)
    # an out of another dtype, shape or device is not the plan's: the full path takes it (and explains)
    assert tg._planned(x, w, torch.empty(1, N, dtype=torch.float32)) is None
    assert tg._planned(x, w, torch.empty(2, N, dtype=dtype)) is None
    out = torch.empty(1, N, dtype=dtype)
    assert tg._planned(x, w, out) is out and rec.runs[-1][9 + 5] == out.data_ptr()
    tg._plans.clear()


@pytest.mark.parametrize("entry, forced, want", [
    # a tuned 64-row tile of 8 warps and 4 stages: 4 warps, 3 stages on DOT_N (two CTAs an SM, not one)
    ((64, 128, 128, 1, 8, 4), False, (4, 3)),
    # the same tile forced by the caller is launched as given (it fits the shared-memory budget)
    ((64, 128, 128, 1, 8, 4), True, (8, 4)),
    # a 256-row tile keeps its warps; 3 stages want 3 * (2*256 + 64) * 128 + 2 * 128 * 128 = 248 KB > 200 KB
    ((256, 128, 128, 1, 8, 3), False, (8, 2)),
])
def test_awq_tensor_core_tile_launch(entry, forced, want, tmp_path, monkeypatch):
    from repack.kernels import triton_gemm as tg
    from repack.kernels.tuned import TileConfig
    from tests.triton_checks import awq_layer
    launched = []
    monkeypatch.setattr(tg, "_launch", lambda grid, args, consts, warps, stages, *rest, **kw:
                        launched.append((consts, warps, stages)) or (Recorder(), ("meta",)))
    monkeypatch.setattr(tg, "_raw_stream", lambda index: 0)
    cfg = TileConfig(*entry)
    monkeypatch.setattr(tg, "pick_config", lambda M, N, K: cfg)
    tg._plans.clear()
    w, _ = awq_layer(tmp_path, 0, 128, 256, 128, "cpu")
    tg.triton_gemm(torch.randn(entry[0], 256, dtype=torch.float16), w, config=cfg if forced else None)
    (consts, warps, stages), = launched
    assert dict(zip(tg._CONST_NAMES, consts))["PATH"] == tg.DOT_N
    assert (warps, stages) == want
    tg._plans.clear()


def test_kernel_path_ids_are_distinct():
    """The dispatch tells its paths apart by these ids (a collision sent a GPTQ tensor-core tile into the
    AWQ GEMV's multi-group step rule: wrong sums at group size 32)."""
    from repack.kernels import triton_gemm as tg
    ids = {name: getattr(tg, name) for name in dir(tg)
           if name.isupper() and name.startswith(("GEMV_", "DOT_", "GENERAL")) and isinstance(getattr(tg, name), int)
           and not isinstance(getattr(tg, name), bool)}
    assert len(ids) >= 14 and len(set(ids.values())) == len(ids), ids


@pytest.mark.parametrize("gs, rs, want_bk, want_pending", [(128, 1, 64, 1), (32, 1, 32, 1), (32, 2, 32, 0), (64, 2, 64, 0)])
def test_transposed_tile_launch(gs, rs, want_bk, want_pending, monkeypatch):
    """A tuned entry with ``rs`` sends a 4-bit GPTQ layer to gluon_rs's kernel with a K tile inside one group
    and the entry's wgmma wait; an AWQ layer at M = 1 on the same entry does not go there."""
    from repack.kernels import gluon_rs
    from repack.kernels import triton_gemm as tg
    from repack.kernels.tuned import TileConfig
    launched = _record_launches(monkeypatch)
    cfg = TileConfig(128, 128, 64, 1, 8, 4, rs=rs)
    monkeypatch.setattr(tg, "pick_config", lambda M, N, K: cfg)
    w, _ = random_gptq_words(1024, 384, gs, 0, device="cpu")
    tg.triton_gemm(torch.randn(300, 1024, dtype=torch.float16), w)
    (fn, consts, grid, _, _), = launched
    assert fn is gluon_rs.w4_rs_kernel
    assert (consts["BLOCK_K"], consts["PENDING"], consts["BLOCK_N"], consts["BLOCK_M"]) == (want_bk, want_pending, 128, 128)
    assert grid == (3, 3, 1)
    tg._plans.clear()


@pytest.mark.parametrize("layout", ["gptq", "awq", "gptq-unfit", "awq-rs", "gptq-slot", "awq-slot"])
def test_which_layers_an_entrys_transposed_tiles_serve(layout, tmp_path, monkeypatch):
    """TileConfig.gptq_rs goes to 4-bit GPTQ-order layers (gluon_rs); an AWQ layer on the same entry keeps the
    entry's own tile (DOT_N), and so does a GPTQ layer gluon_rs cannot run (384 columns, 256-wide rs tile) —
    unless AWQ_RS is on: then the AWQ layer takes the rs tile on gluon_rs's AWQ words, or the entry's AWQ slot
    (TileConfig.awq_rs) where it has one, which GPTQ layers never take."""
    from repack.kernels import gluon_rs
    from repack.kernels import triton_gemm as tg
    from repack.kernels.tuned import TileConfig
    from tests.triton_checks import awq_layer
    launched = _record_launches(monkeypatch)
    monkeypatch.setattr(tg, "AWQ_RS", layout in ("awq-rs", "awq-slot"))
    rs_tile = TileConfig(128, 256 if layout == "gptq-unfit" else 128, 64, 1, 8, 4, rs=1)
    awq_tile = TileConfig(32, 64, 128, 1, 4, 4, rs=2) if layout.endswith("slot") else None
    cfg = TileConfig(256, 128, 128, 1, 8, 3, gptq_rs=rs_tile, awq_rs=awq_tile)
    monkeypatch.setattr(tg, "pick_config", lambda M, N, K: cfg)
    if layout.startswith("gptq"):
        w, _ = random_gptq_words(1024, 384, 128, 0, device="cpu")
    else:
        w, _ = awq_layer(tmp_path, 0, 128, 1024, 384, "cpu")
    tg.triton_gemm(torch.randn(300, 1024, dtype=torch.float16), w)
    (fn, consts, _, _, _), = launched
    if layout in ("gptq", "gptq-slot"):
        assert fn is gluon_rs.w4_rs_kernel and (consts["BLOCK_M"], consts["BLOCK_K"]) == (128, 64)
    elif layout == "awq-slot":  # the slot's tile (32 tokens, 64 columns, rs 2), not gptq_rs's
        assert fn is gluon_rs.w4_rs_kernel and consts["AWQ"] is True
        assert (consts["BLOCK_M"], consts["BLOCK_N"], consts["BLOCK_K"], consts["PENDING"]) == (32, 64, 128, 0)
    elif layout == "gptq-unfit":
        assert fn is None and consts["PATH"] == tg.DOT_KTJ
        assert (consts["BLOCK_M"], consts["BLOCK_N"], consts["BLOCK_K"]) == (256, 128, 128)
    elif layout == "awq-rs":
        assert fn is gluon_rs.w4_rs_kernel and consts["AWQ"] is True and (consts["BLOCK_M"], consts["BLOCK_K"]) == (128, 64)
    else:
        assert fn is None and consts["PATH"] == tg.DOT_N and (consts["BLOCK_M"], consts["BLOCK_N"]) == (256, 128)
    tg._plans.clear()


@pytest.mark.parametrize("split, warps, want_regs, slot_values, want_split",
                         [(1, 8, 168, 1 << 24, False), (1, 4, 128, 1 << 24, False), (2, 8, 168, 1 << 24, 2),
                          (2, 8, 168, 3 * 2 * 2 * 64 * 128 - 1, True)])
def test_warp_specialized_transposed_tile_launch(split, warps, want_regs, slot_values, want_split, monkeypatch):
    """TileConfig.rs 3 launches gluon_rs's warp-specialized kernel with its launch register budget; a K split
    (session 17) takes the grid's third axis and the kernel's split-K epilogue: through slots of a workspace of
    its own (RS_SPLIT_SLOTS, one BLOCK_M x BLOCK_N slot a program) where they fit RS_SLOT_VALUES, else by atomics
    into the zeroed workspace."""
    from repack.kernels import gluon_rs
    from repack.kernels import triton_gemm as tg
    from repack.kernels.tuned import TileConfig
    monkeypatch.setattr(tg, "RS_SLOT_VALUES", slot_values)
    launched = _record_launches(monkeypatch)
    cfg = TileConfig(64, 128, 64, split, warps, 4, rs=3)
    w, _ = random_gptq_words(1024, 384, 128, 0, device="cpu")
    tg.triton_gemm(torch.randn(100, 1024, dtype=torch.float16), w, config=cfg)
    (fn, consts, grid, args, maxnreg), = launched
    assert fn is gluon_rs.w4_rs_ws_kernel and maxnreg == want_regs and grid == (3, 2, split)
    assert (consts["BLOCK_M"], consts["BLOCK_N"], consts["PENDING"], consts["SPLIT"]) == (64, 128, 1, want_split)
    assert args[10:12] == (1024 // split, split)  # K_SPLIT, split_k
    if want_split:  # the workspace: 6 tiles x 2 slots of 64 x 128 floats, or the (zeroed) M x N one of the atomics
        ws = args[5]  # x_desc, q_desc, scales, zeros, y, ws
        assert ws.dtype == torch.float32 and ws.numel() >= (3 * 2 * 2 * 64 * 128 if want_split == 2 else 100 * 384)
        assert want_split == 2 or not ws.any()
    tg._plans.clear()


@pytest.mark.parametrize("lean, block_m, block_n, layout, want_regs",
                         [(False, 16, 64, "gptq", 128), (True, 16, 64, "gptq", 64), (True, 16, 128, "gptq", 128),
                          (True, 16, 64, "awq", 64), (True, 32, 64, "awq", 80), (True, 16, 256, "gptq", 128),
                          (True, 64, 64, "gptq", 128)])
def test_lean_registers_launch_only_warp_specialized_post_tiles(lean, block_m, block_n, layout, want_regs, tmp_path,
                                                                monkeypatch):
    """A tile with TileConfig.lean launches a 16- or 32-token warp-specialized tile (POST) at its gluon_rs.LEAN_WS_REGS
    budget; a tile LEAN_WS_REGS lacks (16x128, 16x256), a tile without POST (64 tokens) and every tile without the
    flag keep ws_maxnreg's."""
    from repack.kernels import gluon_rs
    from repack.kernels import triton_gemm as tg
    from repack.kernels.tuned import TileConfig
    launched = _record_launches(monkeypatch)
    if layout == "awq":
        from tests.triton_checks import awq_layer
        w, _ = awq_layer(tmp_path, 0, 128, 1024, 512, "cpu")
    else:
        w, _ = random_gptq_words(1024, 512, 128, 0, device="cpu")
    tg.triton_gemm(torch.randn(16, 1024, dtype=torch.float16), w,
                   config=TileConfig(block_m, block_n, 128, 1, 4, 4, rs=3, lean=lean), path_override=tg.DOT_RS)
    (fn, consts, _, _, maxnreg), = launched
    assert fn is gluon_rs.w4_rs_ws_kernel and consts["POST"] is (block_m <= 32) and consts["AWQ"] is (layout == "awq")
    assert maxnreg == want_regs
    tg._plans.clear()


@pytest.mark.parametrize("rs, stream", [(1, 0), (2, 0), (3, 0), (2, 1), (3, 1)])
@pytest.mark.parametrize("block_m, split", [(16, 1), (16, 3), (64, 2)])
def test_a_transposed_tile_launch_passes_every_constexpr_of_its_kernel(rs, stream, block_m, split, monkeypatch):
    """The cached launcher (triton_gemm._launch after the first call) takes the kernel's parameters in signature
    order, constexprs included: a launch whose constexprs miss one the signature has (a default added to one kernel,
    session 23's CLUSTER) fails on the GPU at its second call, "function takes exactly 50 arguments (49 given)".
    Each gluon_rs launch the dispatch makes names exactly its kernel's constexpr parameters, in order."""
    import inspect

    from repack.kernels import triton_gemm as tg
    from repack.kernels.tuned import TileConfig
    raw = []

    def fake_launch(grid, args, consts, warps, stages, device, stream_, fn=None, names=None, maxnreg=None, **kw):
        raw.append((fn, tuple(names), len(consts), len(args)))
        return Recorder(), ("meta",)

    monkeypatch.setattr(tg, "_launch", fake_launch)
    monkeypatch.setattr(tg, "_raw_stream", lambda index: 0)
    monkeypatch.setattr(tg, "_gluon_available", lambda: True)
    w, _ = random_gptq_words(1024, 512, 128, 0, device="cpu")
    tg.triton_gemm(torch.randn(16, 1024, dtype=torch.float16), w,
                   config=TileConfig(block_m, 64, 128, split, 4, 4, rs=rs, stream=stream), path_override=tg.DOT_RS)
    tg._plans.clear()
    (fn, names, n_consts, n_args), = raw
    params = inspect.signature(fn.fn).parameters.values()
    constexprs = tuple(q.name for q in params if "constexpr" in str(q.annotation))
    assert names == constexprs and n_consts == len(constexprs)
    assert n_args + n_consts == len(params)


def _launched_form(a):
    """An argument as the launcher sees it, comparable across calls: a tensor descriptor by what it encodes."""
    if hasattr(a, "block_shape"):
        return ("desc", a.base.data_ptr(), tuple(a.shape), tuple(a.strides), tuple(a.block_shape), repr(a.layout))
    return _as_launched(a)


@pytest.mark.parametrize("rs, split, layout", [(1, 1, "gptq"), (2, 2, "gptq"), (3, 1, "gptq"), (3, 2, "gptq"), (1, 1, "awq"),
                                               (3, 1, "awq")])
def test_a_transposed_tile_plan_launches_what_the_dispatch_launched(rs, split, layout, tmp_path, monkeypatch):
    """gluon_rs's kernels take TMA descriptors: a plan remakes them for the call's x and the weight's words (the
    dispatch made them per call: ~90 us of host time on the H200's host, more than the kernel at M = 64) and
    hands the launcher what the full dispatch did (both kernels take the split-K workspace)."""
    from repack.kernels import gluon_rs
    from repack.kernels import triton_gemm as tg
    from repack.kernels.tuned import TileConfig
    rec = Recorder()
    launched = _record_launches(monkeypatch, rec)
    monkeypatch.setattr(tg, "pick_config", lambda M, N, K: TileConfig(64, 128, 64, split, 4, 4, rs=rs))
    monkeypatch.setattr(tg, "AWQ_RS", True)
    tg._plans.clear()
    if layout == "awq":  # (the plan remakes AWQ's own words descriptor)
        from tests.triton_checks import awq_layer
        w, _ = awq_layer(tmp_path, 0, 128, 1024, 384, "cpu")
    else:
        w, _ = random_gptq_words(1024, 384, 128, 7, device="cpu")
    x = torch.randn(100, 1024, dtype=torch.float16)
    y1 = tg.triton_gemm(x, w)
    (fn, consts, grid, args, _), = launched
    assert fn is (gluon_rs.w4_rs_ws_kernel if rs == 3 else gluon_rs.w4_rs_kernel)
    assert len(tg._plans) == 1 and list(args[1].shape) == ([1024, 48] if layout == "awq" else [128, 384])
    x_again = x.clone()  # another x of the same shape: its own descriptor
    y2 = tg._planned(x_again, w, None)
    assert y2 is not None and y2.shape == (100, 384) and y2.data_ptr() != y1.data_ptr()
    (run,) = rec.runs
    assert run[:4] == (grid[0], grid[1], grid[2], 0) and run[5] == ("meta",)
    got = [_launched_form(a) for a in run[9:9 + len(args)]]
    want = [_launched_form(a) for a in args]
    want[0] = want[0][:1] + (x_again.data_ptr(),) + want[0][2:]
    want[4] = y2.data_ptr()
    if split == 1:  # no K split: the workspace arguments are the output, unused
        want[5] = want[6] = y2.data_ptr()
    else:
        assert want[5] not in (y1.data_ptr(), y2.data_ptr())
    assert got == want
    assert all(isinstance(a, int) for a in run[11:14]), "pointers go to the launcher as integers"
    assert tuple(run[9 + len(args):]) == tuple(consts.values())
    tg._plans.clear()


@pytest.mark.parametrize("rs, dtype", [(1, torch.float16), (3, torch.bfloat16)])
def test_transposed_tile_on_awq_words_launch(rs, dtype, tmp_path, monkeypatch):
    """gluon_rs forced onto an AutoAWQ layer launches with AWQ's words ([K, N/8] in [BLOCK_K, BLOCK_N/8] boxes)
    and its AWQ constants, the K tile inside one group; without the override the tile's rs is followed while
    AWQ_RS is on (the default), and the layer keeps DOT_N with it off."""
    from repack.kernels import gluon_rs
    from repack.kernels import triton_gemm as tg
    from repack.kernels.tuned import TileConfig
    from tests.triton_checks import awq_layer
    launched = _record_launches(monkeypatch)
    w, _ = awq_layer(tmp_path, 0, 64, 1024, 384, "cpu")
    cfg = TileConfig(64, 128, 128, 1, 4, 4, rs=rs)
    x = torch.randn(100, 1024, dtype=dtype)
    tg.triton_gemm(x, w, config=cfg, path_override=tg.DOT_RS)
    fn, consts, _, args, _ = launched[-1]
    assert fn is (gluon_rs.w4_rs_ws_kernel if rs == 3 else gluon_rs.w4_rs_kernel)
    assert consts["AWQ"] is True and consts["L6"] == gluon_rs.awq_words_layout(128, 64 // 8, 4)
    assert (consts["BLOCK_K"], consts["BLOCK_N"], consts["BLOCK_M"]) == (64, 128, 64)  # 64: the group
    q = args[1]
    assert q.base is w.qweight and list(q.shape) == [1024, 384 // 8] and list(q.block_shape) == [64, 128 // 8]
    assert tg.AWQ_RS
    tg.triton_gemm(x, w, config=cfg)
    fn, consts, *_ = launched[-1]
    assert fn is (gluon_rs.w4_rs_ws_kernel if rs == 3 else gluon_rs.w4_rs_kernel) and consts["AWQ"] is True
    monkeypatch.setattr(tg, "AWQ_RS", False)
    tg.triton_gemm(x, w, config=cfg)
    fn, consts, *_ = launched[-1]
    assert fn is None and consts["PATH"] == tg.DOT_N
    tg._plans.clear()


@pytest.mark.parametrize("rs", [1, 2, 3])
def test_small_token_tiles_scale_after_the_mma_when_asked(rs, monkeypatch):
    """RS_POST_MAX_BLOCK_M (0: off) sends gluon_rs tiles of at most that many tokens to POST, in both kernels;
    wider tiles keep the scale in the weights."""
    from repack.kernels import triton_gemm as tg
    from repack.kernels.tuned import TileConfig
    launched = _record_launches(monkeypatch)
    w, _ = random_gptq_words(1024, 384, 128, 0, device="cpu")
    x = torch.randn(16, 1024, dtype=torch.float16)
    posts = []
    for limit in (0, 32):
        monkeypatch.setattr(tg, "RS_POST_MAX_BLOCK_M", limit)
        for block_m in (16, 32, 64):
            tg.triton_gemm(x, w, config=TileConfig(block_m, 128, 128, 1, 4, 4, rs=rs), path_override=tg.DOT_RS)
            posts.append(launched[-1].consts["POST"])
    assert posts == [False, False, False, True, True, False]
    tg._plans.clear()


def test_float_reciprocal_group_index_is_exact_below_2_to_20():
    """gluon_rs's step group g = int((k + 1/2) * (1 / group_size)) in fp32 (_group_index) equals k // group_size for
    every k < 2^20, with the reciprocal off by up to 2 ulp (PTX div.full's bound), power-of-two or not."""
    import numpy as np
    k = np.arange(1 << 20, dtype=np.int64)
    kf = k.astype(np.float32) + np.float32(0.5)
    for gs in (32, 64, 96, 128, 4096, 11008, 14336, 65536):
        inv = np.float32(1.0) / np.float32(gs)
        for toward, steps in ((np.float32(0), 2), (np.float32(np.inf), 2), (np.float32(0), 0)):
            r = inv
            for _ in range(steps):
                r = np.nextafter(r, toward)
            assert np.array_equal((kf * r).astype(np.int32), k // gs), (gs, toward, steps)


def test_integer_zero_operands_are_the_fp16_negated_magic_zeros():
    """gluon_rs builds its fp16 zero operands (-(1024 + z), -(64 + z)) by integer arithmetic on z (GPTQ: the pair
    z * 0x100001 + _ZZ_LO_HI; AWQ: one column's low or high form in both halves), gluon_gemm its (-(64 + z))
    pair (_neg_high_z); for every zero 0..63 they are the bits numpy's fp16 gives those values."""
    import numpy as np
    from repack.kernels import gluon_gemm, gluon_rs

    def bits(v):
        return int(np.array(v, dtype=np.float16).view(np.uint16))
    for z in range(64):
        lo, hi = bits(-(1024.0 + z)), bits(-(64.0 + z))
        assert (z * 0x100001 + gluon_rs._ZZ_LO_HI.value) % (1 << 32) == lo | hi << 16, z
        assert (z * 0x10001 + gluon_rs._ZZ_LO_LO.value) % (1 << 32) == lo | lo << 16, z
        assert ((z * 0x10001 << 4) + gluon_gemm._NEG_64_PAIR.value) % (1 << 32) == hi | hi << 16, z
        assert (z * 0x100010 + gluon_gemm._NEG_64_PAIR.value) % (1 << 32) == hi | hi << 16, z


def test_awq_words_layout_puts_a_threads_columns_in_one_word():
    """awq_words_layout, after e is split off and (c, u) merged, is words_layout: thread rho' holds word column
    (J rho') // 8 for each of its J columns J rho' + j, and the inputs 8 kw + 2 t + e."""
    from repack.kernels import gluon_rs
    for block_n, warps in ((64, 4), (128, 4), (256, 4), (128, 8), (256, 8)):
        J = block_n // (8 * warps)
        U = 8 // J
        L6, L4 = gluon_rs.awq_words_layout(block_n, 8, warps), gluon_rs.words_layout(block_n, 8, warps)
        # L6 dims (kw, t, e, c, u, j) -> L4 dims (kw, rho' = U c + u, j, t): the bases must map alike
        def to_l4(b):
            kw, t, e, c, u, j = b
            return [kw, U * c + u, j, t]
        assert L6.reg_bases[0] == [0, 0, 1, 0, 0, 0]  # e: register bit 0 (split off)
        assert [to_l4(b) for b in L6.reg_bases[1:]] == L4.reg_bases
        assert [to_l4(b) for b in L6.lane_bases] == L4.lane_bases
        assert [to_l4(b) for b in L6.warp_bases] == L4.warp_bases
        assert L6.shape == [8, 4, 2, block_n // 8, U, J]


def test_a_16_token_transposed_tile_serves_m_16(monkeypatch):
    """An M = 16 entry's rs tile of 16 tokens sends a GPTQ layer at M = 16 to gluon_rs (wgmma N = 16) ahead of
    the Gluon mma.sync tile; at M = 20 the same tile takes two token tiles."""
    from repack.kernels import gluon_rs
    from repack.kernels import triton_gemm as tg
    from repack.kernels.tuned import TileConfig
    launched = _record_launches(monkeypatch)
    cfg = TileConfig(16, 128, 128, 1, 4, 4, gptq_rs=TileConfig(16, 128, 128, 1, 4, 6, rs=3))
    monkeypatch.setattr(tg, "pick_config", lambda M, N, K: cfg)
    w, _ = random_gptq_words(1024, 384, 128, 0, device="cpu")
    for M, tiles in ((16, 1), (20, 2)):
        tg.triton_gemm(torch.randn(M, 1024, dtype=torch.float16), w)
        fn, consts, grid, _, _ = launched[-1]
        assert fn is gluon_rs.w4_rs_ws_kernel and consts["BLOCK_M"] == 16 and grid == (3, tiles, 1)
    tg._plans.clear()
