"""Replay of GEMV_H2's fp16 instruction sequence in numpy (each op rounded to fp16, fma rounded once):
checks that (q - z)/64 is exact for every code and zero, and counts words whose half-sums overflow
with and without the 1/64 scaling at outlier activations (NOTES-gemm.md, fourth session).

    python benchmarks/diag_half2_replay.py
"""
import numpy as np
f16 = np.float16
def r16(v): return np.asarray(v, np.float64).astype(f16).astype(np.float64)  # round to fp16 (RNE)
def fma16(a, b, c): return r16(np.asarray(a, np.float64) * b + c)  # single rounding: exact in float64 for fp16 inputs
rng = np.random.default_rng(0)
# exactness of the scaled integers for every code and zero
Q, Z = np.meshgrid(np.arange(16), np.arange(17), indexing="ij")
lo = r16(1024 + Q)                      # lop3 0x000F000F | 0x6400: 1024 + q
hi = r16(1024 + 16 * Q)                 # lop3 0x00F000F0 | 0x6400: 1024 + 16 q
zl = r16(-(16 + Z / 64)); zh = r16(-(1 + Z / 64))
assert (zl == -(16 + Z / 64)).all() and (zh == -(1 + Z / 64)).all(), "constants not exact"
a = fma16(lo, r16(1 / 64), zl); b = fma16(hi, r16(1 / 1024), zh)
assert (a == (Q - Z) / 64).all() and (b == (Q - Z) / 64).all(), "scaled q - z not exact"
print("scaled (q - z)/64 exact for all q in 0..15, z in 0..16")
# worst-case half-lane partial: four products, |q - z| <= 16 (z up to 16 for GPTQ v1), |x| = 65504
print("max |partial| =", 4 * 16 / 64 * 65504, "< 65504:", 4 * 16 / 64 * 65504 <= 65504)
# one word, the kernel's order: a = t0*x0; a = fma(t1, x1, a); fma(t2, x2, a); fma(t3, x3, a); then (lo + hi) in fp32, x64
def word(q, z, x, scale):
    qz = (q - z) * scale
    h = []
    for half in (0, 1):
        j = [0, 1, 2, 3] if half == 0 else [4, 5, 6, 7]
        acc = r16(qz[j[0]] * x[j[0]])
        for i in j[1:]:
            acc = fma16(qz[i], x[i], acc)
        h.append(acc)
    return (np.float32(h[0]) + np.float32(h[1])) / scale
errs = {1.0: [], 1 / 64: []}
over = {1.0: 0, 1 / 64: 0}
for trial in range(20000):
    q = rng.integers(0, 16, 8); z = rng.integers(0, 17)
    big = trial % 4 == 0
    x = r16(rng.standard_normal(8) * (3000 if big else 1))
    exact = float(((q - z) * x).sum())
    for sc in errs:
        with np.errstate(over="ignore", invalid="ignore"):
            got = word(q, z, x, sc)
        if not np.isfinite(got):
            over[sc] += 1
            continue
        errs[sc].append(abs(got - exact) / (np.abs((q - z) * x).sum() + 1e-30))
for sc in errs:
    e = np.array(errs[sc])
    print(f"scale {sc}: overflows {over[sc]} of 20000 words (a quarter with |x| ~ 3000); rel err vs sum|terms| median {np.median(e):.2e} max {e.max():.2e}")
