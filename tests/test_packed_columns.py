"""PackedWeight.columns: a layer's output columns as views of its packed tensors (a launch over them writes those
columns of y). Checked by unpacking the views here, field by field, against the whole layer's float64 weight."""

from __future__ import annotations

import pytest
import torch

from repack.kernels.packed import (CODES_ALONG_N_AWQ, SCALES_MARLIN, ZEROS_ALONG_N_AWQ, ZEROS_INT, PackedWeight)
from tests.triton_checks import random_gptq_words

# nibble j of an AutoAWQ gemm word holds column 8c + AWQ_ORDER[j] (written out again from FORMATS.md: the
# interleave that puts columns (0, 1), (2, 3) ... in fields (0, 4), (1, 5) ...)
AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)


def _gptq_dense(w: PackedWeight) -> torch.Tensor:
    """[K, N] float64 from GPTQ v1 words (field f of word row r is input 8r + f) and zeros along N (z - 1)."""
    K, N, gs = w.in_features, w.out_features, w.group_size
    q = torch.stack([(w.qweight >> (4 * f)) & 15 for f in range(8)], 1).reshape(K, N).double()
    z = torch.stack([(w.zeros >> (4 * f)) & 15 for f in range(8)], 2).reshape(K // gs, N).double() + 1
    grp = torch.arange(K) // gs
    return (q - z[grp]) * w.scales.double()[grp]


def _awq_dense(w: PackedWeight) -> torch.Tensor:
    K, gs = w.in_features, w.group_size

    def unpack(words: torch.Tensor) -> torch.Tensor:
        out = torch.empty(words.shape[0], words.shape[1] * 8, dtype=torch.float64)
        for j, col in enumerate(AWQ_ORDER):
            out[:, col::8] = ((words >> (4 * j)) & 15).double()
        return out
    grp = torch.arange(K) // gs
    return (unpack(w.qweight) - unpack(w.zeros)[grp]) * w.scales.double()[grp]


@pytest.mark.parametrize("start, stop", [(0, 64), (96, 256), (8, 16), (0, 256), (200, 256)])
def test_gptq_columns_are_the_layer_columns(start, stop):
    w, W = random_gptq_words(256, 256, 64, 7, device="cpu")
    part = w.columns(start, stop)
    assert part.out_features == stop - start
    assert part.qweight.untyped_storage().data_ptr() == w.qweight.untyped_storage().data_ptr()  # views, no copy
    assert torch.equal(_gptq_dense(part), W.t()[:, start:stop])


@pytest.mark.parametrize("start, stop", [(0, 64), (40, 128), (120, 128)])
def test_awq_columns_are_the_layer_columns(start, stop):
    g = torch.Generator().manual_seed(3)
    K, N, gs = 128, 128, 32
    words = torch.randint(-2**31, 2**31 - 1, (K, N // 8), dtype=torch.int32, generator=g)
    zeros = torch.randint(-2**31, 2**31 - 1, (K // gs, N // 8), dtype=torch.int32, generator=g)
    scales = torch.rand(K // gs, N, generator=g).half()
    w = PackedWeight(CODES_ALONG_N_AWQ, ZEROS_ALONG_N_AWQ, 4, K, N, gs, words, scales, zeros, 0, None, "t/awq")
    assert torch.equal(_awq_dense(w.columns(start, stop)), _awq_dense(w)[:, start:stop])


def test_unpacked_zeros_take_any_columns():
    w, W = random_gptq_words(64, 64, 32, 5, device="cpu")
    z = torch.stack([(w.zeros >> (4 * f)) & 15 for f in range(8)], 2).reshape(2, 64).int()
    plain = PackedWeight(w.codes, ZEROS_INT, 4, 64, 64, 32, w.qweight, w.scales, z, 1, None, "t/int")
    part = plain.columns(3, 50)
    assert torch.equal(part.zeros, z[:, 3:50]) and part.qweight.shape == (8, 47)


@pytest.mark.parametrize("start, stop", [(4, 64), (0, 60), (64, 64), (0, 300)])
def test_columns_off_word_edges_or_out_of_range_are_refused(start, stop):
    w, _ = random_gptq_words(64, 256, 32, 1, device="cpu")
    with pytest.raises(ValueError, match="word edges"):
        w.columns(start, stop)


def test_layouts_without_column_views_are_refused():
    import dataclasses
    w, _ = random_gptq_words(64, 64, 32, 1, device="cpu")
    with pytest.raises(ValueError, match="no column views"):
        dataclasses.replace(w, scales_layout=SCALES_MARLIN).columns(0, 32)
