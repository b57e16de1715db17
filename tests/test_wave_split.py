"""triton_gemm's wave split (TileConfig.tail, triton_gemm.wave_split): a launch whose last wave is at most half
full runs the columns of its whole waves in one launch and the rest on the tail's smaller tiles in a second, both
writing their columns of one output. On the CPU: the arithmetic, and the two launches' arguments through a
recorder (pointers into the same y, its row stride, the column views' words, scales and zeros), and their plans.
The GPU test (tests/test_kernels.py, test_a_wave_split_layer_matches_the_oracle) runs it."""

from __future__ import annotations

import pytest
import torch

from tests.triton_checks import has_triton, random_gptq_words

pytestmark = pytest.mark.skipif(not has_triton(), reason="needs the triton package")


def _tiles(tail: bool = True):
    from repack.kernels.tuned import TileConfig
    return TileConfig(256, 128, 64, 1, 8, 4, rs=3, tail=TileConfig(128, 64, 64, 1, 4, 4, rs=3) if tail else None)


@pytest.mark.parametrize("M, N, sms, first", [
    (1024, 14336, 132, 12672),   # 448 tiles, 3.39 waves: 3 whole waves = 99 column tiles
    (1024, 16896, 132, 0),       # 4 whole waves: nothing to split
    (1024, 11008, 132, 0),       # 2.61 waves: the last wave over half full
    (1024, 13824, 132, 12672),   # 3.27 waves
    (1000, 14336, 132, 12672),   # 1000 tokens: still 4 token tiles
    (1024, 4096, 132, 0),        # 128 tiles: under one wave
    (512, 1408, 10, 1280),       # 22 tiles on 10 SMs: 2 waves of 5 column tiles x 2 token tiles
    (768, 1408, 10, 1280),       # 33 tiles: 3 waves = 10 column tiles of 3 token tiles, 3 tiles left
    (1280, 1408, 10, 1280),      # 55 tiles: the last wave exactly half full still splits
    (1280, 1536, 10, 0),         # 60 tiles: 6 whole waves, nothing left
])
def test_the_split_takes_the_columns_of_the_whole_waves(M, N, sms, first):
    from repack.kernels.triton_gemm import wave_split
    assert wave_split(M, N, _tiles(), sms) == first


def test_no_split_without_a_tail_or_for_split_stream_or_cluster_tiles_or_off_a_gpu():
    import dataclasses

    from repack.kernels.triton_gemm import wave_split
    cfg = _tiles()
    assert wave_split(1024, 14336, _tiles(tail=False), 132) == 0
    assert wave_split(1024, 14336, dataclasses.replace(cfg, split_k=2), 132) == 0
    assert wave_split(1024, 14336, dataclasses.replace(cfg, stream=1), 132) == 0
    assert wave_split(1024, 14336, cfg, 0) == 0  # (triton_gemm._sms_of off a GPU)
    # the tail's tiles must cover the rest exactly: 1664 columns are not a whole number of 1024-wide tiles
    assert wave_split(1024, 14336, dataclasses.replace(cfg, tail=dataclasses.replace(cfg.tail, block_n=1024)),
                      132) == 0


@pytest.mark.parametrize("layout", ["gptq", "awq"])
def test_a_split_layer_launches_twice_into_its_columns_of_one_output_and_plans_both(monkeypatch, tmp_path, layout):
    from repack.kernels import gluon_rs
    from repack.kernels import triton_gemm as tg
    from repack.kernels.tuned import TileConfig
    from tests.test_launch_plans import _record_launches
    from tests.triton_checks import awq_layer
    launched = _record_launches(monkeypatch)
    monkeypatch.setattr(tg, "_sms_of", lambda x: 10)
    monkeypatch.setattr(tg, "pick_config", lambda M, N, K: TileConfig(64, 64, 64, gptq_rs=_tiles()))
    tg._plans.clear()
    K, N, first = 1024, 1408, 1280
    if layout == "awq":
        w = awq_layer(tmp_path, 0, 128, K, N, "cpu")[0]
    else:
        w = random_gptq_words(K, N, 128, 0, device="cpu")[0]
    x = torch.randn(512, K, dtype=torch.float16)
    y = tg.triton_gemm(x, w)
    assert y.shape == (512, N) and y.is_contiguous()
    head, tail = launched
    assert head.fn is tail.fn is gluon_rs.w4_rs_ws_kernel
    assert head.grid == (first // 128, 2, 1) and (head.consts["BLOCK_M"], head.consts["BLOCK_N"]) == (256, 128)
    assert tail.grid == ((N - first) // 64, 4, 1) and (tail.consts["BLOCK_M"], tail.consts["BLOCK_N"]) == (128, 64)
    for launch, start, width in ((head, 0, first), (tail, first, N - first)):
        x_desc, q_desc, scales, zeros, out = launch.args[:5]
        assert out.data_ptr() == y.data_ptr() + 2 * start and out.stride() == (N, 1)
        assert launch.args[-1] == N  # the kernel's row stride of y is the whole output's
        assert launch.args[8] == width  # its N: the view's columns
        if layout == "awq":  # AutoAWQ's words [K, N/8]: eight columns a word
            assert q_desc.base.data_ptr() == w.qweight.data_ptr() + 4 * (start // 8)
            assert list(q_desc.strides) == [N // 8, 1]
        else:
            assert q_desc.base.data_ptr() == w.qweight.data_ptr() + 4 * start and list(q_desc.strides) == [N, 1]
        assert scales.data_ptr() == w.scales.data_ptr() + 2 * start and scales.stride(0) == N
        assert zeros.data_ptr() == w.zeros.data_ptr() + 4 * (start // 8) and zeros.stride(0) == N // 8
    # both launches planned, keyed by their view and y's row stride: a later call finds them for column views of
    # an output of the same rows, and not for an output of its own width
    views = tg._column_views(w, first)
    assert len(tg._plans) == 2
    assert tg._planned(x, views[0], y[:, :first]) is not None
    assert tg._planned(x, views[1], y[:, first:]) is not None
    assert tg._planned(x, views[0], None) is None
    assert tg._planned(x, views[0], torch.zeros(())) is None  # an unusual out goes to the full path's checks
    tg._plans.clear()


def test_the_views_are_kept_per_weight_and_dropped_with_it():
    import gc

    from repack.kernels import triton_gemm as tg
    w, _ = random_gptq_words(256, 512, 128, 1, device="cpu")
    a = tg._column_views(w, 256)
    assert tg._column_views(w, 256)[0] is a[0]  # the same objects: their plans are found again
    key = id(w)
    del w, a
    gc.collect()
    assert key not in tg._split_views
