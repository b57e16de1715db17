"""Sweep tile configurations of the Triton GEMM on the benchmark shapes; write the best per M bucket.

    python benchmarks/tune_gemm.py --buckets 1,16 --out tuned.json [--merge repack/kernels/tuned.json]

The output has the format repack/kernels/tuned.py reads: per bucket, per shape, the best config,
its median time and the number of programs the K split aims for. Times are do_bench's GPU side (each call after
its L2 flush) without its host side (gemm_common.flushed_ms): a forced tile launches through the whole dispatch,
whose ~70-150 us of host time do_bench itself counted where it exceeds the flush (session 20).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks.gemm_common import SHAPES, flushed_ms, packed_weight  # noqa: E402
from repack.kernels.triton_gemm import triton_gemm  # noqa: E402
from repack.kernels.tuned import config_of  # noqa: E402

SMS = 132


def candidates(M: int):
    """(block_m, block_n, block_k, warps, stages, target programs, cluster, ring) worth trying for M rows, the
    likeliest first (each bucket stops at its share of the budget). 4-bit GPTQ-order layers run the joined
    paths (GEMV_H2 for block_m 1, the Gluon tile or DOT_KTJ above): block_n is the wgmma M side there.
    First the structures that won in session 11 (M = 1: K steps of several groups, no split or a cluster of
    2, a cp.async ring) and session 10 (M <= 64: the K split inside a cluster), then the older grids."""
    if M <= 4:
        wide = [(1, 16, 4096, 4, 2, 0, 1, False), (1, 64, 512, 4, 3, 0, 1, True), (1, 32, 1024, 4, 3, 0, 2, True),
                (1, 64, 512, 4, 3, 0, 2, True), (1, 32, 1024, 4, 3, 0, 1, True), (1, 32, 2048, 4, 3, 0, 1, True),
                (1, 16, 2048, 4, 3, 0, 1, True), (1, 64, 1024, 4, 3, 0, 1, True), (1, 32, 4096, 8, 2, 0, 1, False)]
        return itertools.chain(wide, ((*c, 1, False) for c in itertools.product(
            [1], [256, 512, 128], [128], [4, 8], [3, 4, 2], [1056, 528, 2112, 264])))
    if M <= 16:
        clusters = itertools.product([16], [128], [128], [4, 8], [1], [0], [8, 4, 2], [False])
        return itertools.chain(clusters, ((*c, 1, False) for c in itertools.product(
            [16], [64, 128, 256], [64, 128], [4, 8], [3, 4], [528, 1056, 264, 2112])))
    if M <= 64:
        clusters = itertools.product([64], [64], [128], [4], [3], [0], [2, 4], [False])
        return itertools.chain(clusters, ((*c, 1, False) for c in itertools.product(
            [64], [64, 128, 256], [128, 64], [4, 8], [3, 4], [264, 528, 0, 1056])))
    tiles = [(256, 128, 8), (128, 128, 8), (128, 64, 4), (256, 64, 4), (128, 256, 8)]
    return ((bm, bn, bk, warps, stages, target, 1, False) for (bm, bn, warps), bk, stages, target
            in itertools.product(tiles, [128, 64], [3, 4], [0, 264]))


def as_entry(candidate: tuple) -> dict:
    """A candidate tuple in the table's entry form (what tuned.config_of reads)."""
    bm, bn, bk, warps, stages, target, cluster, ring = candidate
    return {"target_programs": target, "config": {"block_m": bm, "block_n": bn, "block_k": bk, "num_warps": warps,
                                                  "num_stages": stages, "cluster": cluster, "ring": ring}}


def kept_slots(entry: dict, own: list) -> dict:
    """``entry`` with the gluon_rs tiles of the table's own entry for its shape (``rs`` for GPTQ layers, ``awq_rs``
    for AWQ ones: benchmarks/diag_rs.py sweeps those, this sweep does not)."""
    for slot in ("rs", "awq_rs"):
        if own and slot in own[0]:
            entry = {**entry, slot: own[0][slot]}
    return entry


def merged_bucket(bucket: list, swept: list) -> list:
    """A bucket's entries after a sweep: the swept shapes' new entries, and every entry of a shape the sweep does
    not cover (M = 1 has Llama-2, Qwen2.5 and GQA k/v shapes beside the benchmark's) as it was."""
    shapes = {(e["K"], e["N"]) for e in swept}
    return [e for e in bucket if (e["K"], e["N"]) not in shapes] + swept


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--buckets", default="1,16,64,256,1024")
    ap.add_argument("--out", required=True)
    ap.add_argument("--merge", default=None, help="an existing table to update")
    ap.add_argument("--budget-s", type=float, default=500)
    args = ap.parse_args()
    table = json.loads(Path(args.merge).read_text()) if args.merge and Path(args.merge).exists() else {}
    t0 = time.time()
    buckets = [int(b) for b in args.buckets.split(",")]
    for i, M in enumerate(buckets):
        deadline = t0 + args.budget_s * (i + 1) / len(buckets)  # every bucket gets its share
        entries = []
        for K, N in SHAPES:
            w = packed_weight(K, N, "gptq")
            x = torch.randn(M, K, device="cuda", dtype=torch.float16)
            best = None
            # the table's own entry for this shape is measured first: a sweep never replaces it by a slower tile
            own = [e for e in table.get(str(M), []) if (e["K"], e["N"]) == (K, N)]
            for entry in itertools.chain(own, map(as_entry, candidates(M))):
                if time.time() > deadline:
                    break
                # the tile of the tl.dot / GEMV paths (an entry's gluon_rs tile, TileConfig.gptq_rs, is diag_rs.py's)
                cfg, target = dataclasses.replace(config_of(entry, M, N, K), gptq_rs=None), entry["target_programs"]
                try:
                    ms = flushed_ms(lambda: triton_gemm(x, w, cfg), reps=50)
                except Exception as e:  # noqa: BLE001 - e.g. out of shared memory: skip the config
                    print(f"skip {cfg}: {type(e).__name__}", file=sys.stderr)
                    continue
                if best is None or ms < best[0]:
                    best = (ms, cfg, target)
            if best is None:  # out of time before this shape: its entry stays as it was
                entries += own
                continue
            ms, cfg, target = best
            print(f"M={M} {K}x{N}: {ms:.4f} ms {cfg} target {target}", flush=True)
            entry = {"K": K, "N": N, "ms": ms, "target_programs": target, "config": cfg.to_dict()}
            entries.append(kept_slots(entry, own))
            torch.cuda.empty_cache()
        if entries:
            table[str(M)] = merged_bucket(table.get(str(M), []), entries)
        Path(args.out).write_text(json.dumps(table, indent=1))
    print(f"tuned in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
