"""Slow, loop-based reference for TurboMind workspace files, written from kernels.md §2.1/§2.2 closed
forms (element position -> file, word, nibble). Independent of repack: it never imports it.

Input: HF-order layers per module (codes ``q[k][n]``, true zeros, fp16 scales), the model dims and
``tp``. Output: ``{file name: bytes}`` of ``triton_models/weights`` for the quantized slots.
"""

from __future__ import annotations

import struct


def _rotary_hf_column(t: int, d: int) -> int:
    """TM column t of q or k comes from HF column: within head h, TM 2b+a <- HF a*d/2+b."""
    h, w = divmod(t, d)
    b, a = divmod(w, 2)
    return h * d + a * (d // 2) + b


def _rank_columns(slot: str, dims: dict, N: dict, tp: int, r: int) -> list[tuple[str, int]]:
    """(part, HF column) of every column of the rank's logical matrix, in file order."""
    d = dims["head_dim"]
    cols = []
    if slot == "qkv":
        for part in ("q", "k", "v"):
            n = N[part] // tp
            for j in range(n):
                t = r * n + j
                cols.append((part, _rotary_hf_column(t, d) if part in ("q", "k") else t))
    elif slot == "w13":
        n = N["gate"] // tp
        for c in range(n):
            cols += [("gate", r * n + c), ("up", r * n + c)]
    else:
        part = {"w1": "gate", "w3": "up"}[slot]
        n = N[part] // tp
        cols = [(part, r * n + j) for j in range(n)]
    return cols


def _f16_bits(x: float) -> int:
    return struct.unpack("<H", struct.pack("<e", x))[0]


def _words_bytes(words: list[int]) -> bytes:
    return struct.pack(f"<{len(words)}I", *words)


def _w4_qweight(get, K: int, M: int) -> bytes:
    words = [0] * (K * M // 8)
    for k in range(K):
        a0, a1, a2, a3, a4 = k // 32, (k // 16) % 2, (k // 8) % 2, (k // 2) % 4, k % 2
        for n in range(M):
            b0, b1, b2, b4, b3 = n // 32, (n // 16) % 2, (n // 8) % 2, (n % 8) // 2, n % 2
            w = (a0 * (M // 32) + b0) * 128 + 32 * b4 + 16 * b3 + 4 * a3 + 2 * a1 + b1
            words[w] |= int(get(k, n)) << (4 * (4 * a4 + 2 * a2 + b2))
    return _words_bytes(words)


def _v6_qweight(get, K: int, M: int) -> bytes:
    words = [0] * (K * M // 8)
    for k in range(K):
        for n in range(M):
            words[k * (M // 8) + n // 8] |= int(get(k, n)) << (4 * (n % 8))
    return _words_bytes(words)


def _w4_scales_zeros(zget, sget, G: int, M: int) -> bytes:
    words = [_f16_bits(float(zget(g, n)) + 64.0) | (_f16_bits(float(sget(g, n))) << 16) for g in range(G) for n in range(M)]
    return _words_bytes(words)


def _f16_matrix(get, G: int, M: int) -> bytes:
    return b"".join(struct.pack("<e", float(get(g, n))) for g in range(G) for n in range(M))


def workspace_files(layers: dict, dims: dict, variant: str, tp: int, group_size: int = 128) -> dict[str, bytes]:
    """layers: part -> (q, z, s) per layer index: ``layers[i][part]``; parts q k v o gate up down."""
    out = {}
    slots = ("qkv", "wo", "w13", "w2") if variant == "w4" else ("qkv", "wo", "w1", "w3", "w2")
    prefix = {"qkv": "attention.w_qkv", "wo": "attention.wo", "w13": "feed_forward.w13", "w1": "feed_forward.w1",
              "w3": "feed_forward.w3", "w2": "feed_forward.w2"}
    for i, parts in layers.items():
        N = {p: parts[p][0].shape[1] for p in parts}
        for slot in slots:
            needs = {"qkv": "qkv", "wo": "o", "w13": ("gate", "up"), "w1": ("gate",), "w3": ("up",), "w2": ("down",)}[slot]
            if not all(p in parts for p in needs):
                continue
            for r in range(tp):
                name = f"layers.{i}.{prefix[slot]}.{r}."
                if slot in ("wo", "w2"):  # row-parallel: rank r holds input rows r*K/tp.. and their groups
                    q, z, s = parts["o" if slot == "wo" else "down"]
                    K = q.shape[0] // tp
                    G = K // group_size
                    M = q.shape[1]
                    qget = lambda k, n, q=q, K=K: q[r * K + k][n]  # noqa: E731
                    zget = lambda g, n, z=z, G=G: z[r * G + g][n]  # noqa: E731
                    sget = lambda g, n, s=s, G=G: s[r * G + g][n]  # noqa: E731
                else:
                    cols = _rank_columns(slot, dims, N, tp, r)
                    first = parts[cols[0][0]][0]
                    K, M, G = first.shape[0], len(cols), first.shape[0] // group_size
                    qget = lambda k, n, cols=cols: parts[cols[n][0]][0][k][cols[n][1]]  # noqa: E731
                    zget = lambda g, n, cols=cols: parts[cols[n][0]][1][g][cols[n][1]]  # noqa: E731
                    sget = lambda g, n, cols=cols: parts[cols[n][0]][2][g][cols[n][1]]  # noqa: E731
                if variant == "w4":
                    out[name + "qweight"] = _w4_qweight(qget, K, M)
                    out[name + "scales_zeros"] = _w4_scales_zeros(zget, sget, G, M)
                else:
                    out[name + "qweight"] = _v6_qweight(qget, K, M)
                    out[name + "scales"] = _f16_matrix(sget, G, M)
                    out[name + "zeros"] = _f16_matrix(zget, G, M)
    return out
