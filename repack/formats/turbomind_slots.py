"""TurboMind slots: how HF linears become one rank's logical matrix (and back), and file names.

A slot's logical matrix of rank ``r`` is ``[K_r, M_r]`` codes with ``[G_r, M_r]`` zeros and scales, in
TurboMind column order. Every op here is a column (or row) gather applied alike to codes, zeros,
scales and biases (``[1, N]``), so the bytes layout (``turbomind_layout``) never sees model structure.

- ``qkv`` (column-parallel): ``[rot(q)_r | rot(k)_r | v_r]`` (``merge_qkv`` / ``merge_qkv_v2``), where
  ``rot`` is the per-head rotary reorder (:func:`turbomind_layout.rotary_order`) over ``head_dim``.
  lmdeploy <= 0.5.3 ``w4.py`` passes ``group_size`` where ``transpose_qk_s4`` expects the head size
  (kernels.md §2.1 quirk); both are 128 for the models it served, where the files agree byte for
  byte. For another head size repack writes the per-head order the engine's rotary reads;
  lmdeploy's own w4 converter would have mixed neighbouring heads;
- ``wo``, ``w2`` (row-parallel): rank ``r`` holds input rows ``r*K/tp ...`` and their groups
  (``save_split(..., 0)``);
- ``w13`` (legacy only): gate/up interleaved per column, of the rank's block of columns;
- ``w1``, ``w3`` (v0.6+): gate and up separately, column-parallel.
"""

from __future__ import annotations

import numpy as np

from . import turbomind_layout as lay
from .turbomind_arch import Dims

COLUMN_PARALLEL = {"qkv", "w13", "w1", "w3"}
SLOTS = {"w4": ("qkv", "wo", "w13", "w2"), "v6": ("qkv", "wo", "w1", "w3", "w2")}
PARTS = {"qkv": ("q", "k", "v"), "wo": ("o",), "w13": ("gate", "up"), "w1": ("gate",), "w3": ("up",),
         "w2": ("down",)}
_PREFIX = {"qkv": "attention.w_qkv", "wo": "attention.wo", "w13": "feed_forward.w13", "w1": "feed_forward.w1",
           "w3": "feed_forward.w3", "w2": "feed_forward.w2"}
FILE_KINDS = {"w4": ("qweight", "scales_zeros"), "v6": ("qweight", "scales", "zeros")}


def file_name(i: int, slot: str, rank: int, kind: str) -> str:
    """``layers.{i}.attention.w_qkv.{rank}.qweight``: lmdeploy ``save_split`` puts the rank before the
    extension."""
    return f"layers.{i}.{_PREFIX[slot]}.{rank}.{kind}"


def shape_of(slot: str, part_shapes: dict[str, tuple[int, int]], tp: int) -> tuple[int, int]:
    """(K_r, M_r) of one rank, from the parts' (K, N)."""
    K = part_shapes[PARTS[slot][0]][0]
    M = sum(part_shapes[p][1] for p in PARTS[slot])
    return (K, M // tp) if slot in COLUMN_PARALLEL else (K // tp, M)


# -- forward: parts -> one rank --------------------------------------------------------------------


def rank_columns(slot: str, parts: dict[str, np.ndarray], d: Dims, tp: int, r: int) -> np.ndarray:
    """Column-parallel slot: the rank's ``[rows, M_r]`` from each part's ``[rows, N]`` (HF order)."""
    if slot == "qkv":
        q = parts["q"][:, lay.rotary_order(d.heads, d.head_dim)]
        k = parts["k"][:, lay.rotary_order(d.kv_heads, d.head_dim)]
        v = parts["v"]
        return np.concatenate([x[:, lay.rank_slice(x.shape[1], tp, r)] for x in (q, k, v)], axis=1)
    if slot == "w13":
        g, u = parts["gate"], parts["up"]
        cols = lay.rank_slice(g.shape[1], tp, r)
        return lay.interleave(g[:, cols], u[:, cols])
    (x,) = parts.values()
    return x[:, lay.rank_slice(x.shape[1], tp, r)]


def rank_rows(x: np.ndarray, tp: int, r: int) -> np.ndarray:
    """Row-parallel slot: the rank's block of rows (codes: input rows; zeros/scales: groups)."""
    return x[lay.rank_slice(x.shape[0], tp, r)]


# -- inverse: ranks -> parts -----------------------------------------------------------------------


def parts_from_ranks(slot: str, ranks: list[np.ndarray], d: Dims) -> dict[str, np.ndarray]:
    """Inverse of :func:`rank_columns` / :func:`rank_rows` over all ranks."""
    if slot not in COLUMN_PARALLEL:
        return {PARTS[slot][0]: np.concatenate(ranks, axis=0)}
    if slot == "qkv":
        tp = len(ranks)
        a, b = d.nq // tp, d.nkv // tp
        q = np.concatenate([x[:, :a] for x in ranks], axis=1)
        k = np.concatenate([x[:, a:a + b] for x in ranks], axis=1)
        v = np.concatenate([x[:, a + b:] for x in ranks], axis=1)
        qh, kh = np.empty_like(q), np.empty_like(k)
        qh[:, lay.rotary_order(d.heads, d.head_dim)] = q
        kh[:, lay.rotary_order(d.kv_heads, d.head_dim)] = k
        return {"q": qh, "k": kh, "v": v}
    if slot == "w13":
        pairs = [lay.deinterleave(x) for x in ranks]
        return {"gate": np.concatenate([p[0] for p in pairs], axis=1),
                "up": np.concatenate([p[1] for p in pairs], axis=1)}
    return {PARTS[slot][0]: np.concatenate(ranks, axis=1)}


# -- one rank's logical matrix <-> its files ------------------------------------------------------


def encode_rank(variant: str, q: np.ndarray, z: np.ndarray, s: np.ndarray) -> dict[str, np.ndarray]:
    """Codes uint8 ``[K_r, M_r]``, integer zeros and fp16 scales ``[G_r, M_r]`` -> the rank's files."""
    if variant == "w4":
        return {"qweight": lay.w4_pack_qweight(q), "scales_zeros": lay.w4_pack_scales_zeros(s, z)}
    # v0.6+: zeros are stored as fp16 real zero values (parameter.py QuantWeightOnly, exporter.py to_half)
    return {"qweight": lay.v6_pack_qweight(q), "scales": s.astype(np.float16), "zeros": z.astype(np.float16)}


def file_dtypes(variant: str) -> dict[str, np.dtype]:
    if variant == "w4":
        return {"qweight": np.dtype("<i4"), "scales_zeros": np.dtype("<i4")}
    return {"qweight": np.dtype("<i4"), "scales": np.dtype("<f2"), "zeros": np.dtype("<f2")}


def file_shapes(variant: str, K: int, M: int, G: int) -> dict[str, tuple[int, int]]:
    if variant == "w4":
        return {"qweight": (K, M // 8), "scales_zeros": (G, M)}
    return {"qweight": (K, M // 8), "scales": (G, M), "zeros": (G, M)}


def decode_rank(variant: str, files: dict[str, np.ndarray], K: int, M: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inverse of :func:`encode_rank`: (codes uint8, zeros float32, scales fp16)."""
    if variant == "w4":
        s, z = lay.w4_unpack_scales_zeros(files["scales_zeros"])
        return lay.w4_unpack_qweight(files["qweight"], K, M), z, s
    return lay.v6_unpack_qweight(files["qweight"]), files["zeros"].astype(np.float32), files["scales"]
