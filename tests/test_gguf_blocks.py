"""GGUF block codecs: byte-exact against the loop encoders of tests/gguf_reference.py and gguf-py."""

import gguf
import numpy as np
import pytest

from repack.formats import gguf_blocks as gb
from tests import gguf_reference as ref

KINDS = ["q4_0", "q4_1", "q5_0", "q5_1", "q8_0"]


def random_blocks(kind: str, rows: int, nblocks: int, seed: int):
    rng = np.random.default_rng(seed)
    t = gb.TYPES[kind]
    lo, hi = t.code_range
    codes = rng.integers(lo, hi + 1, size=(rows, nblocks * 32))
    codes[0, :32] = lo  # edge values in the first blocks
    if nblocks > 1:
        codes[0, 32:64] = hi
    d = (rng.standard_normal((rows, nblocks)) * 0.01).astype(np.float16)  # negative d occurs in real Q4_0
    d[0, 0] = 0
    m = (rng.standard_normal((rows, nblocks)) * 0.05).astype(np.float16) if t.has_min else None
    return codes, d, m


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("rows, nblocks", [(1, 1), (3, 2), (5, 7)])
def test_encode_matches_loop_reference(kind, rows, nblocks):
    codes, d, m = random_blocks(kind, rows, nblocks, seed=rows * 10 + nblocks)
    got = gb.encode(gb.TYPES[kind], codes, d, m)
    want = ref.encode_rows(kind, codes, d, m)
    assert got.dtype == np.uint8 and got.shape == want.shape
    bad = np.argwhere(got != want)
    assert not len(bad), f"first differing byte (row, byte) {bad[0]}"


@pytest.mark.parametrize("kind", KINDS)
def test_decode_inverts_encode(kind):
    codes, d, m = random_blocks(kind, 4, 3, seed=5)
    c2, d2, m2 = gb.decode(gb.TYPES[kind], gb.encode(gb.TYPES[kind], codes, d, m))
    assert np.array_equal(c2.astype(np.int64), codes)
    assert np.array_equal(d2.view(np.uint16), d.view(np.uint16))  # bit patterns, -0.0 and NaN included
    assert (m2 is None) == (m is None)
    if m is not None:
        assert np.array_equal(m2.view(np.uint16), m.view(np.uint16))


@pytest.mark.parametrize("kind", KINDS)
def test_decode_of_loop_encoded_bytes(kind):
    codes, d, m = random_blocks(kind, 2, 4, seed=9)
    c2, d2, _ = gb.decode(gb.TYPES[kind], ref.encode_rows(kind, codes, d, m))
    assert np.array_equal(c2.astype(np.int64), codes) and np.array_equal(d2, d)


@pytest.mark.parametrize("kind", KINDS)
def test_gguf_py_dequantizes_our_blocks_like_the_loop_reference(kind):
    codes, d, m = random_blocks(kind, 3, 5, seed=13)
    data = gb.encode(gb.TYPES[kind], codes, d, m)
    got = gguf.dequantize(data, gguf.GGMLQuantizationType[kind.upper()])
    want = ref.dequantize_rows(kind, data)
    assert got.shape == (3, 160)
    assert np.array_equal(got, want)


@pytest.mark.parametrize("kind", KINDS)
def test_blocks_quantized_by_gguf_py_decode_and_reencode_identically(kind):
    """gguf-py's own quantizer (an independent encoder) makes the bytes; decoding them and
    encoding again must give the very same bytes."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 128)).astype(np.float32)
    data = gguf.quantize(x, gguf.GGMLQuantizationType[kind.upper()])
    t = gb.TYPES[kind]
    codes, d, m = gb.decode(t, data)
    assert np.array_equal(gb.encode(t, codes, d, m), data)
    ref_codes = np.array([ref.decode_block(kind, bytes(data[r, b * t.type_size:(b + 1) * t.type_size]))[0]
                          for r in range(6) for b in range(4)]).reshape(6, 128)
    assert np.array_equal(codes.astype(np.int64), ref_codes)


def test_nibble_order_worked_example():
    """The docstring's example: codes i % 16 -> qs[j] = j | j << 4; codes i // 16 -> qs[j] = 0x10."""
    d = np.ones((1, 1), np.float16)
    a = gb.encode(gb.Q4_0, np.arange(32)[None] % 16, d)
    assert list(a[0, 2:]) == [j | j << 4 for j in range(16)]
    b = gb.encode(gb.Q4_0, np.arange(32)[None] // 16, d)
    assert list(b[0, 2:]) == [0x10] * 16
    assert bytes(a[0, :2]) == b"\x00\x3c"  # fp16 1.0, little-endian


def test_bad_input_is_refused():
    d = np.ones((1, 1), np.float16)
    with pytest.raises(ValueError, match="codes must lie in 0..15"):
        gb.encode(gb.Q4_0, np.full((1, 32), 16), d)
    with pytest.raises(ValueError, match="multiple of 32"):
        gb.encode(gb.Q4_0, np.zeros((1, 16), int), d)
    with pytest.raises(ValueError, match="needs"):
        gb.encode(gb.Q4_1, np.zeros((1, 32), int), d)
    with pytest.raises(ValueError, match="expected uint8"):
        gb.decode(gb.Q8_0, np.zeros((1, 33), np.uint8))


@pytest.mark.parametrize("kind", KINDS)
def test_any_block_bytes_survive_decode_encode(kind):
    """Every byte pattern is a valid block (NaN/inf d included): decode then encode is the identity."""
    t = gb.TYPES[kind]
    data = np.random.default_rng(1).integers(0, 256, size=(7, 3 * t.type_size), dtype=np.uint8)
    assert np.array_equal(gb.encode(t, *gb.decode(t, data)), data)


# ---- canonical tensor <-> blocks (repack/formats/gguf_tensor.py), property-based ------------------------

from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402
import torch  # noqa: E402

from fixtures.checkpoints import RefLayer, gguf_block_data, random_layer  # noqa: E402
from repack import direct_io  # noqa: E402
from repack.formats import gguf_jit, gguf_tensor  # noqa: E402
from repack.tensor import QuantTensor  # noqa: E402


def canonical(L: RefLayer, sym: bool) -> QuantTensor:
    return QuantTensor.from_codes(L.q, torch.from_numpy(L.s), L.z, L.bits, L.group_size, sym=sym)


@given(bits=st.sampled_from([2, 3, 4, 8]), gs=st.sampled_from([32, 64, 128, -1]), K=st.integers(1, 9),
       N=st.integers(1, 5), sym=st.booleans(), seed=st.integers(0, 2**16))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_smallest_exact_type_round_trips(bits, gs, K, N, sym, seed):
    """Any canonical tensor with 32-multiple groups: the chosen type's bytes equal the loop encoder's,
    and reading them back gives the same weights (and, for the integer-zero types, the same codes)."""
    L = random_layer(np.random.default_rng(seed), 32 * K, N, bits, gs, sym, zero_range=(0, 2**bits - 1))
    qt = canonical(L, sym)
    bt = gguf_tensor.exact_type(qt)
    lo, hi = int((L.q - L.z[L.groups()]).min()), int((L.q - L.z[L.groups()]).max())
    if bt is None:  # only 8-bit asymmetric codes can leave Q8_0's -128..127 (and 5-bit codes)
        assert bits == 8 and not sym and (lo < -128 or hi > 127) and L.q.max() > 31
        return
    if bits <= 4 and sym:
        assert bt is gb.Q4_0  # symmetric 2/3/4-bit: v = q - 2^(b-1) fits -8..7
    elif bits <= 4:
        assert bt in (gb.Q4_0, gb.Q4_1, gb.Q5_0)  # asymmetric 4-bit is exact in Q5_0 at worst
    data = gguf_tensor.encode(qt, bt)
    assert np.array_equal(data, gguf_block_data(L, bt.name))
    back = gguf_tensor.to_canonical(bt, data)
    assert np.array_equal(back.dequantize(np.float32), qt.dequantize(np.float32))
    if not bt.has_min:
        assert np.array_equal(back.codes().astype(int) - back.zeros[back.group_index()],
                              L.q - L.z[L.groups()])
        assert lo >= gguf_tensor.value_range(bt)[0] and hi <= gguf_tensor.value_range(bt)[1]


@pytest.mark.parametrize("kind", ["q4_0", "q4_1", "q5_0", "q5_1"])
@pytest.mark.parametrize("K, N, gs", [(32, 8, -1), (96, 24, 32), (160, 64, 64), (256, 8, 128), (4096, 72, 128)])
def test_word_encoder_matches_the_code_encoder(kind, K, N, gs, monkeypatch):
    """4-bit tensors take the word-level encoders (nibble adds and shuffles on the packed words, in
    numpy and compiled): their bytes equal those of the encoder that unpacks every code, zero points
    0 and 16 included."""
    rng = np.random.default_rng(K + N + gs)
    G = 1 if gs == -1 else -(-K // gs)
    groups = np.arange(K) // (K if gs == -1 else gs)
    bt = gb.TYPES[kind]
    s = torch.from_numpy((rng.random((G, N)) * 0.01).astype(np.float16))
    if bt.has_min:
        m = torch.from_numpy((rng.random((G, N)) * 0.01).astype(np.float16))
        qt = QuantTensor.from_codes(rng.integers(0, 16, (K, N)), s, np.zeros((G, N)), 4, gs, offsets=m)
    else:
        z = np.full((G, N), 8) if kind == "q4_0" else rng.integers(0, 17, (G, N))
        if kind == "q4_0":
            z[0, :3] = [7, 9, 8]
        else:
            z[0, 0], z[-1, -1] = 0, 16
        lo, hi = (z - 8, z + 7) if kind == "q4_0" else (np.zeros_like(z), np.full_like(z, 15))
        q = rng.integers(np.clip(lo, 0, 15)[groups], np.clip(hi, 0, 15)[groups] + 1)
        qt = QuantTensor.from_codes(q, s, z, 4, gs)
    assert gguf_tensor.exact_type(qt, bt) is bt
    want = gguf_tensor._encode_codes(qt, bt)
    assert np.array_equal(gguf_tensor._encode_words(qt, bt), want)
    assert np.array_equal(gguf_tensor._encode_jit(qt, bt), want)  # the compiled pass (gguf_jit)
    # into a write buffer at an odd page phase, rows reordered on the way (q/k's rotary order)
    rows = rng.permutation(N)
    out = direct_io.out_buffer(want.nbytes, 4096 * 3 + 6).reshape(want.shape)
    assert gguf_tensor.encode(qt, bt, out, rows) is out
    assert out.ctypes.data % 4096 == 6 and np.array_equal(out, want[rows])
    monkeypatch.setattr(gguf_jit, "available", lambda: False)  # the numpy encoder, the same way
    out2 = np.zeros_like(want)
    assert gguf_tensor.encode(qt, bt, out2, rows) is out2 and np.array_equal(out2, want[rows])


def test_group_blocks_merges_only_identical_neighbours():
    d = np.array([[1, 1, 2, 2, 3, 3], [4, 4, 5, 5, 6, 6]], np.float16)
    assert gguf_tensor.group_blocks(d, None) == 2
    assert gguf_tensor.group_blocks(d, np.zeros_like(d)) == 2
    m = d.copy()
    m[1, 1] = 9
    assert gguf_tensor.group_blocks(d, m) == 1
    assert gguf_tensor.group_blocks(np.full((3, 5), 7, np.float16), None) == 5  # one group per row
    neg0 = np.array([[0.0, -0.0]], np.float16)
    assert gguf_tensor.group_blocks(neg0, None) == 1  # -0.0 and 0.0 are different bit patterns
