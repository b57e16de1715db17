"""Triton W(2|4|8)A16 GEMM that reads a layer's packed tensors where they lie (no dequantized copy).

``y[M, N] = x[M, K] @ W.T`` with ``W[n, k] = s[g, n] * (q[k, n] - z[g, n])``, fp32 accumulation.
One kernel serves every layout through constexpr switches and strides (see packed.py):
codes along K (GPTQ, canonical, AutoAWQ gemv transposed) or along N in AWQ nibble order; zeros
packed along N, along N in AWQ order, along G (gemv) or unpacked; groups sequential or by g_idx.

Tiles come from ``tuned.py``: small M runs a GEMV-shaped program (no tensor cores, the K reduction
split over programs), larger M a ``tl.dot`` tile. When a tile lies inside one group, the scale
is applied once per output column after the K reduction (``s * sum x (q - z)``), so the inner loop
is mask, integer-to-float and FMA only. Split-K partial sums go to an fp32 workspace; the last
program of a tile (told by an atomic counter) reads it back, clears it and writes the output, so
one launch does everything and the workspace is left zeroed for the next call.

This module imports Triton at the top: import it only where CUDA is present (kernels/__init__ does).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .packed import (CODES_ALONG_K, CODES_ALONG_N_AWQ, ZEROS_ALONG_G, ZEROS_ALONG_N, ZEROS_ALONG_N_AWQ, ZEROS_INT,
                     PackedWeight)
from .tuned import TileConfig, pick_config

_CODES = {CODES_ALONG_K: 0, CODES_ALONG_N_AWQ: 1}
_ZEROS = {ZEROS_ALONG_N: 0, ZEROS_ALONG_N_AWQ: 1, ZEROS_ALONG_G: 2, ZEROS_INT: 3}
SUPPORTED_BITS = (2, 4, 8)  # 3-bit fields straddle words; those layers take the reference path


@triton.jit
def _awq_shift(n):
    # AutoAWQ gemm keeps column 8c + j in nibble AWQ_REVERSE_ORDER[j] = [0, 4, 1, 5, 2, 6, 3, 7][j]
    # (awq/utils/packing_utils.py; hf.md §2.2), i.e. (j % 2) * 4 + j // 2
    j = n % 8
    return ((j % 2) * 4 + j // 2) * 4


@triton.jit
def _zero_at(z_ptr, g, n, mask, sza, szb, zero_offset, BITS: tl.constexpr, ZLAYOUT: tl.constexpr):
    """True zero of group g, output n (broadcastable index tensors)."""
    FMASK: tl.constexpr = (1 << BITS) - 1
    PER: tl.constexpr = 32 // BITS
    if ZLAYOUT == 0:
        w = tl.load(z_ptr + g * sza + (n // PER) * szb, mask=mask, other=0)
        z = (w >> ((n % PER) * BITS)) & FMASK
    elif ZLAYOUT == 1:
        w = tl.load(z_ptr + g * sza + (n // 8) * szb, mask=mask, other=0)
        z = (w >> _awq_shift(n)) & 15
    elif ZLAYOUT == 2:
        w = tl.load(z_ptr + n * sza + (g // 8) * szb, mask=mask, other=0)
        z = (w >> ((g % 8) * 4)) & 15
    else:
        z = tl.load(z_ptr + g * sza + n * szb, mask=mask, other=0)
    return z + zero_offset


@triton.jit
def _codes_tile(qw_ptr, offs_k, offs_n, N, K, sqa, sqb, BITS: tl.constexpr, QLAYOUT: tl.constexpr):
    """int32 codes [BLOCK_K, BLOCK_N]. Each word is addressed once per code it holds: the
    duplicate addresses of a warp are served by one load (broadcast), which is cheaper here than
    loading each word once and reshaping the unpacked fields across threads."""
    FMASK: tl.constexpr = (1 << BITS) - 1
    if QLAYOUT == 0:
        PER: tl.constexpr = 32 // BITS
        words = tl.load(qw_ptr + (offs_k // PER)[:, None] * sqa + offs_n[None, :] * sqb,
                        mask=(offs_k[:, None] < K) & (offs_n[None, :] < N), other=0)
        return (words >> ((offs_k % PER) * BITS)[:, None]) & FMASK
    else:
        words = tl.load(qw_ptr + offs_k[:, None] * sqa + (offs_n // 8)[None, :] * sqb,
                        mask=(offs_k[:, None] < K) & (offs_n[None, :] < N), other=0)
        return (words >> _awq_shift(offs_n)[None, :]) & 15


@triton.jit
def _dequant(q, z, s, OUT: tl.constexpr):
    """s * (q - z) in the activation dtype. fp16: the integers become fp16 through the exponent
    trick (0x6400 | q is the fp16 1024 + q, exact for q < 1024) instead of a slow int->float
    convert; the product is one fp16 rounding of the exact value, as the reference's."""
    if OUT == tl.float16:
        qf = (q | 0x6400).to(tl.int16).to(tl.float16, bitcast=True)
        return (qf - (z + 1024).to(tl.float16)) * s.to(tl.float16)
    else:
        return ((q - z).to(tl.float32) * s.to(tl.float32)).to(OUT)


@triton.jit
def _w_gemm_kernel(x_ptr, qw_ptr, s_ptr, z_ptr, g_ptr, y_ptr, ws_ptr, cnt_ptr,
                   M, N, K, K_SPLIT, split_k, group_size, zero_offset,
                   sxm, sxk, sqa, sqb, ssg, ssn, sza, szb, sym, syn,
                   BITS: tl.constexpr, QLAYOUT: tl.constexpr, ZLAYOUT: tl.constexpr,
                   ACT_ORDER: tl.constexpr, SCALE_PER_TILE: tl.constexpr, USE_DOT: tl.constexpr,
                   SPLIT: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    pid_n = tl.program_id(0)
    pid_m = tl.program_id(1)
    pid_k = tl.program_id(2)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    n_ok = offs_n < N
    XT: tl.constexpr = x_ptr.dtype.element_ty
    if USE_DOT:
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    else:  # GEMV shape: per-thread partial products, reduced over K once at the end
        acc = tl.zeros((BLOCK_K, BLOCK_N), dtype=tl.float32)
    k_begin = pid_k * K_SPLIT
    for kk in range(0, K_SPLIT, BLOCK_K):  # tiles past K load nothing (masked)
        k0 = k_begin + kk
        offs_k = k0 + tl.arange(0, BLOCK_K)
        k_ok = offs_k < K
        q = _codes_tile(qw_ptr, offs_k, offs_n, N, K, sqa, sqb, BITS, QLAYOUT)
        if SCALE_PER_TILE:  # the whole tile is in group k0 // group_size
            g = k0 // group_size
            gm = n_ok & (k0 < K)
            z = _zero_at(z_ptr, g, offs_n, gm, sza, szb, zero_offset, BITS, ZLAYOUT)[None, :]
            s = tl.load(s_ptr + g * ssg + offs_n * ssn, mask=gm, other=0.0)[None, :]
        else:
            if ACT_ORDER:
                g = tl.load(g_ptr + offs_k, mask=k_ok, other=0)
            else:
                g = offs_k // group_size
            gm = k_ok[:, None] & n_ok[None, :]
            z = _zero_at(z_ptr, g[:, None], offs_n[None, :], gm, sza, szb, zero_offset, BITS, ZLAYOUT)
            s = tl.load(s_ptr + g[:, None] * ssg + offs_n[None, :] * ssn, mask=gm, other=0.0)
        w = _dequant(q, z, s, XT)
        if USE_DOT:
            x = tl.load(x_ptr + offs_m[:, None] * sxm + offs_k[None, :] * sxk,
                        mask=(offs_m[:, None] < M) & k_ok[None, :], other=0.0)
            acc = tl.dot(x, w, acc)
        else:
            x = tl.load(x_ptr + pid_m * sxm + offs_k * sxk, mask=k_ok & (pid_m < M), other=0.0)
            acc += x.to(tl.float32)[:, None] * w.to(tl.float32)
    if not USE_DOT:
        acc = tl.sum(acc, axis=0)[None, :]

    out_mask = (offs_m[:, None] < M) & n_ok[None, :]
    y_ptrs = y_ptr + offs_m[:, None] * sym + offs_n[None, :] * syn
    if not SPLIT:
        tl.store(y_ptrs, acc.to(y_ptr.dtype.element_ty), mask=out_mask)
    else:
        ws_ptrs = ws_ptr + offs_m[:, None] * N + offs_n[None, :]
        tl.atomic_add(ws_ptrs, acc, mask=out_mask, sem="relaxed")
        tl.debug_barrier()  # every thread's partial sum is issued before the tile's counter moves
        tile = pid_m * tl.num_programs(0) + pid_n
        arrived = tl.atomic_add(cnt_ptr + tile, 1, sem="acq_rel")
        if arrived == split_k - 1:  # the last program of this tile finishes it and clears its state
            # every other program of the tile is done with it: read the sums from L2 (.cg: the
            # atomics never went through this SM's L1) and leave zeros for the next launch
            total = tl.load(ws_ptrs, mask=out_mask, other=0.0, cache_modifier=".cg")
            tl.store(y_ptrs, total.to(y_ptr.dtype.element_ty), mask=out_mask)
            tl.store(ws_ptrs, tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32), mask=out_mask)
            tl.atomic_xchg(cnt_ptr + tile, 0, sem="relaxed")


_workspaces: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}


def _workspace(device: torch.device, values: int, tiles: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per device and stream, zero-filled once; every launch leaves it zeroed again."""
    key = (device, torch.cuda.current_stream(device).cuda_stream if device.type == "cuda" else 0)
    ws, cnt = _workspaces.get(key, (None, None))
    if ws is None or ws.numel() < values or cnt.numel() < tiles:
        ws = torch.zeros(max(values, 1 << 16), dtype=torch.float32, device=device)
        cnt = torch.zeros(max(tiles, 1 << 12), dtype=torch.int32, device=device)
        _workspaces[key] = (ws, cnt)
    return ws, cnt


def supports(w: PackedWeight) -> str | None:
    """None when the Triton kernel can run this layer, else why not."""
    if w.bits not in SUPPORTED_BITS:
        return f"{w.bits}-bit fields straddle int32 words"
    if w.codes == CODES_ALONG_N_AWQ and w.bits != 4:
        return "AWQ layouts are 4-bit"
    return None


def triton_gemm(x: torch.Tensor, w: PackedWeight, config: TileConfig | None = None,
                out: torch.Tensor | None = None) -> torch.Tensor:
    """``x`` [..., K] fp16/bf16 on CUDA -> [..., N] in x's dtype (written into ``out`` [M, N] if given)."""
    why = supports(w)
    if why:
        raise ValueError(f"triton backend cannot run this layer: {why}")
    if x.dtype not in (torch.float16, torch.bfloat16):
        raise ValueError(f"triton backend takes fp16/bf16 activations, got {x.dtype}")
    K, N = w.in_features, w.out_features
    lead = x.shape[:-1]
    x2 = x.reshape(-1, K)
    M = x2.shape[0]
    y = out if out is not None else torch.empty((M, N), dtype=x.dtype, device=x.device)
    if y.shape != (M, N) or y.dtype != x.dtype:
        raise ValueError(f"out must be {x.dtype} [{M}, {N}], got {y.dtype} {list(y.shape)}")
    if M == 0:
        return y.reshape(*lead, N)
    cfg = config or pick_config(M, N, K)
    gs = w.effective_group_size
    per_tile = w.g_idx is None and (w.num_groups == 1 or gs % cfg.block_k == 0)
    if w.codes == CODES_ALONG_N_AWQ and cfg.block_n % 8:
        raise ValueError("AWQ layout needs BLOCK_N a multiple of 8")
    block_m = 1 if cfg.block_m == 1 else max(16, cfg.block_m)  # 1: GEMV programs; else tensor-core tiles
    k_split = triton.cdiv(triton.cdiv(K, cfg.split_k), cfg.block_k) * cfg.block_k
    split = triton.cdiv(K, k_split)
    grid = (triton.cdiv(N, cfg.block_n), triton.cdiv(M, block_m), split)
    ws, cnt = _workspace(x.device, M * N, grid[0] * grid[1]) if split > 1 else (y, y)
    g_idx = w.g_idx if w.g_idx is not None else w.scales  # any pointer: unused without act-order
    _w_gemm_kernel[grid](
        x2, w.qweight, w.scales, w.zeros, g_idx, y, ws, cnt,
        M, N, K, k_split, split, gs, w.zero_offset,
        x2.stride(0), x2.stride(1), w.qweight.stride(0), w.qweight.stride(1), w.scales.stride(0), w.scales.stride(1),
        w.zeros.stride(0), w.zeros.stride(1), y.stride(0), y.stride(1),
        BITS=w.bits, QLAYOUT=_CODES[w.codes], ZLAYOUT=_ZEROS[w.zeros_layout],
        ACT_ORDER=w.g_idx is not None, SCALE_PER_TILE=per_tile, USE_DOT=block_m > 1,
        SPLIT=split > 1, BLOCK_M=block_m, BLOCK_N=cfg.block_n, BLOCK_K=cfg.block_k,
        num_warps=cfg.num_warps, num_stages=cfg.num_stages)
    return y.reshape(*lead, N)
