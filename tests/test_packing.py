"""Tier 1: vectorised pack/unpack equals the slow reference packers, on awkward shapes and edge values."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from repack.packing import pack_cols, pack_rows, packed_rows, unpack_cols, unpack_rows
from tests import reference_packers as ref

BITS = [2, 3, 4, 8]


@pytest.mark.parametrize("bits", BITS)
def test_pack_rows_matches_reference(bits):
    rng = np.random.default_rng(bits)
    q = rng.integers(0, 2**bits, size=(64, 5))
    expected = ref.gptq_pack_qweight(q, bits)
    got = pack_rows(q, bits)
    assert got.dtype == np.int32 and got.shape == expected.shape
    assert np.array_equal(got, expected)
    assert np.array_equal(unpack_rows(expected, bits, 64), q)


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("fill", ["zeros", "max"])
def test_edge_values(bits, fill):
    q = np.zeros((32, 3), np.int64) if fill == "zeros" else np.full((32, 3), 2**bits - 1)
    assert np.array_equal(pack_rows(q, bits), ref.gptq_pack_qweight(q, bits))
    assert np.array_equal(unpack_rows(pack_rows(q, bits), bits, 32), q)


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("v1", [True, False])
def test_pack_cols_is_gptq_qzeros(bits, v1):
    rng = np.random.default_rng(bits + 10)
    z = rng.integers(1, 2**bits, size=(3, 64))
    stored = (z - 1) if v1 else z
    assert np.array_equal(pack_cols(stored, bits), ref.gptq_pack_qzeros(z, bits, v1=v1))
    assert np.array_equal(unpack_cols(pack_cols(stored, bits), bits, 64), stored)


def test_sym_qzeros_words():
    # hf-observed.md: symmetric 4-bit v1 words are 0x77777777, v2 0x88888888
    z = np.full((2, 16), 8)
    assert (pack_cols(z - 1, 4).view(np.uint32) == 0x77777777).all()
    assert (pack_cols(z, 4).view(np.uint32) == 0x88888888).all()


def test_three_bit_straddles_words():
    q = np.zeros((32, 1), np.int64)
    q[10, 0] = 0b101  # low two bits -> bits 30-31 of word 0, top bit -> bit 0 of word 1
    w = pack_rows(q, 3).view(np.uint32)[:, 0]
    assert w[0] == 0b01 << 30 and w[1] == 1 and w[2] == 0


@given(bits=st.sampled_from(BITS), blocks=st.integers(1, 4), extra=st.integers(0, 31), cols=st.integers(1, 9),
       seed=st.integers(0, 2**16))
@settings(max_examples=60, deadline=None)
def test_roundtrip_any_length(bits, blocks, extra, cols, seed):
    rows = blocks * 32 + extra
    q = np.random.default_rng(seed).integers(0, 2**bits, size=(rows, cols))
    packed = pack_rows(q, bits)
    assert packed.shape == (packed_rows(rows, bits), cols)
    assert np.array_equal(unpack_rows(packed, bits, rows), q)


def test_nibble_transpose_against_a_loop():
    """transpose_nibbles_8x8_inplace: nibble a of word b becomes the input's nibble b of word a."""
    import numpy as np
    from repack.packing import transpose_nibbles_8x8_inplace
    rng = np.random.default_rng(3)
    words = rng.integers(0, 2**32, size=(8, 5, 7), dtype=np.uint32)
    got = transpose_nibbles_8x8_inplace(words.copy(), np.empty((5, 7), np.uint32))
    for i in range(5):
        for j in range(7):
            for a in range(8):
                for b in range(8):
                    assert (int(got[b, i, j]) >> (4 * a)) & 15 == (int(words[a, i, j]) >> (4 * b)) & 15
