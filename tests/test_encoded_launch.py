"""encoded_launch against Triton's own descriptor handling, on the CPU: the launcher is a recorder and
fill_tma_descriptor a stand-in that returns its arguments, so what is compared is what reaches the C launcher —
through Triton 3.6's wrapper (driver.wrap_handle_tensordesc / make_tensordesc_arg, the expectation) and through
a launch plan's pre-encoded descriptors. Needs the triton package, no GPU."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from tests.triton_checks import has_triton, random_gptq_words

pytestmark = pytest.mark.skipif(not has_triton(), reason="needs the triton package")

# what Triton's compiler records for the two descriptors (elem_type 9: a device enum the host numbers 8)
METAS = [dict(swizzle=128, elem_size=2, elem_type=1, block_size=[16, 128], fp4_padded=False),
         dict(swizzle=0, elem_size=4, elem_type=9, block_size=[16, 16, 8], fp4_padded=False)]
SIGNATURE = {"x_desc": "tensordesc<fp16[16, 128]>", "q_desc": "tensordesc<i32[16, 16, 8]>", "scales": "*fp16",
             "n": "i32"}


@pytest.fixture
def fills(monkeypatch):
    """fill_tma_descriptor replaced by a function that returns (and keeps) its arguments."""
    from triton.runtime import driver
    made = []

    def fill(ptr, swizzle, elem_size, dtype, block, shape, strides, padding):
        made.append(ptr)
        return ("map", ptr, swizzle, elem_size, dtype, tuple(block), tuple(shape), tuple(strides), padding)

    monkeypatch.setattr(driver, "_active", SimpleNamespace(utils=SimpleNamespace(fill_tma_descriptor=fill)))
    return made


def fake_compiled(record: list, **run_fields):
    """A compiled kernel as triton_gemm keeps it: ``run`` is a launcher whose ``launch`` is Triton's wrapper
    around a recorder (what CudaLauncher builds around the C launcher)."""
    from triton.backends.nvidia.driver import wrap_handle_tensordesc
    launch = wrap_handle_tensordesc(lambda *a: record.append(a), SIGNATURE, METAS)
    run = SimpleNamespace(launch=launch, launch_cooperative_grid=False, launch_pdl=True, global_scratch_size=0,
                          profile_scratch_size=0)
    run.__dict__.update(run_fields)
    return SimpleNamespace(run=run, metadata=SimpleNamespace(tensordesc_meta=METAS), function=object())


def descriptors(x: torch.Tensor, w):
    from repack.kernels import gluon_rs
    return gluon_rs.descriptors(x, w, 16, 128, 128, False)


def test_the_launcher_gets_what_tritons_wrapper_gives_it(fills):
    from repack.kernels.encoded_launch import encoded_launch
    w, _ = random_gptq_words(1024, 384, 128, 3, device="cpu")
    x_plan, x_call = torch.randn(16, 1024).half(), torch.randn(16, 1024).half()  # the plan's x, then a call's
    record = []
    compiled = fake_compiled(record)
    enc = encoded_launch(compiled, descriptors(x_plan, w))
    assert enc is not None
    rest = (w.scales.data_ptr(), 384)
    enc((4, 2, 1), 7, ("packed",), x_call.data_ptr(), rest)
    # Triton's way, as CudaLauncher.__call__ calls its launch: descriptors of this call's x and the weight
    compiled.run.launch(4, 2, 1, 7, compiled.function, False, True, None, None, ("packed",), None, None, None,
                        *descriptors(x_call, w), *rest)
    ours, triton_s = record
    assert ours == triton_s
    # x's map was made from the call's x; the weight's once, when the plan was encoded
    assert ours[13][1] == x_call.data_ptr() and ours[13 + 5][1] == w.qweight.data_ptr()
    made = list(fills)
    enc((4, 2, 1), 7, ("packed",), x_call.data_ptr(), rest)
    assert fills[len(made):] == [x_call.data_ptr()], "a call encodes x's map only"


@pytest.mark.parametrize("broken", ["plain launcher", "scratch", "no metadata", "fp4", "another form"])
def test_anything_unexpected_falls_back(broken, fills, monkeypatch):
    from repack.kernels.encoded_launch import encoded_launch
    w, _ = random_gptq_words(1024, 384, 128, 3, device="cpu")
    compiled = fake_compiled([])
    if broken == "plain launcher":  # a launcher without Triton 3.6's wrapper
        compiled.run.launch = lambda *a: None
    elif broken == "scratch":
        compiled.run.global_scratch_size = 256
    elif broken == "no metadata":
        compiled.metadata = SimpleNamespace()
    elif broken == "fp4":
        compiled.metadata = SimpleNamespace(tensordesc_meta=[METAS[0], dict(METAS[1], fp4_padded=True)])
    else:  # a Triton whose descriptor arguments are not [map, *shape, *strides]
        from triton.backends.nvidia import driver as nv
        real = nv.make_tensordesc_arg
        monkeypatch.setattr(nv, "make_tensordesc_arg", lambda arg, meta: [*real(arg, meta), 0])
    assert encoded_launch(compiled, descriptors(torch.randn(16, 1024).half(), w)) is None


def test_a_transposed_tile_plan_launches_through_the_encoded_descriptors(fills, monkeypatch):
    """The whole plan: the dispatch launches through Triton's wrapper (a real CudaLauncher's path), the plan's
    call through encoded_launch; the launcher must get the same arguments but for the output."""
    from repack.kernels import triton_gemm as tg
    from repack.kernels.tuned import TileConfig
    record = []
    compiled = fake_compiled(record)

    def fake_launch(grid, args, consts, warps, stages, device, stream, fn=None, names=None, maxnreg=None, **kw):
        compiled.run.launch(grid[0], grid[1], grid[2], stream, compiled.function, False, True, None, None,
                            ("packed",), None, None, None, *args, *consts)  # as _launch's kernel.run does
        return compiled, ("packed",)

    monkeypatch.setattr(tg, "_launch", fake_launch)
    monkeypatch.setattr(tg, "_raw_stream", lambda index: 0)
    monkeypatch.setattr(tg, "_gluon_available", lambda: True)
    monkeypatch.setattr(tg, "pick_config", lambda M, N, K: TileConfig(16, 128, 128, 2, 4, 4, rs=2))
    tg._plans.clear()
    w, _ = random_gptq_words(1024, 384, 128, 5, device="cpu")
    x = torch.randn(16, 1024).half()
    y1 = tg.triton_gemm(x, w)
    plan = next(iter(tg._plans.values()))
    assert plan[-1] is not None, "the plan encodes its descriptors"
    y2 = tg._planned(x, w, None)
    assert y2 is not None and y2.shape == (16, 384)
    dispatched, planned = ([a.data_ptr() if isinstance(a, torch.Tensor) else a for a in r] for r in record)
    y_at = dispatched.index(y1.data_ptr())
    dispatched[y_at] = y2.data_ptr()
    assert planned == dispatched
    tg._plans.clear()
