"""Tile configurations for the Triton GEMM, per M bucket and weight shape.

``tuned.json`` beside this file holds what ``benchmarks/tune_gemm.py`` measured on the lent H100
(best median time per bucket and shape); shapes not in it take the entry of the nearest size, and
without the file a heuristic applies. The split of K over programs is stored as the number of
programs to aim for, so one entry serves many shapes.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

TUNED_FILE = Path(__file__).with_name("tuned.json")
M_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


@dataclass(frozen=True)
class TileConfig:
    block_m: int
    block_n: int
    block_k: int
    split_k: int = 1  # programs along K (1 = no split)
    num_warps: int = 4
    num_stages: int = 3
    pipe: bool = False  # GPTQ-order 4-bit layers run gluon_pipe's pipelined tile (num_stages = its ring)
    ws: bool = False  # ... or gluon_ws's warp-specialized tile (num_warps = its MMA warps)
    # > 1: K is split over a thread-block cluster of this many CTAs (2-8), whose partial sums meet in
    # distributed shared memory (triton_gemm._cluster_finish) instead of split_k's global workspace
    cluster: int = 1
    # GEMV_H2 (M = 1, fp16) takes its loads through a shared-memory ring of num_stages slots (cp.async;
    # benchmarks/diag_gemv_ring.py). Its block_k may span several whole groups (triton_gemm's GROUPS)
    ring: bool = False
    # GPTQ-order 4-bit layers run gluon_rs's transposed tile (num_stages = its TMA ring): 1 with each step's wgmma
    # running while the next step is dequantized, 2 waiting for it at the end of its step, 3 warp-specialized
    # (a load warp on mbarriers) (0: not this tile)
    rs: int = 0
    # a warp-specialized tile of at most RS_POST_MAX_BLOCK_M tokens (POST) launched at gluon_rs.LEAN_WS_REGS'
    # register budget (three or four CTAs an SM instead of two) where that has the tile; the sweep decides per
    # tile (session 18: slower on GPTQ's M = 16 tiles, faster on AWQ's 8192x28672 16x64 one)
    lean: bool = False
    # > 0: a gluon_rs tile launched stream-K, this many programs an SM, each program an even share of the launch's
    # K steps across tiles (gluon_rs.w4_rs_stream_kernel, w4_rs_ws_stream_kernel for rs 3; split_k unused)
    stream: int = 0
    # > 0 (with stream): hybrid stream-K, the launch's whole waves of tiles but the last stream_tail - 1 run one
    # whole tile a program first, and only the rest (the last partial wave and stream_tail - 1 waves) streams
    # (gluon_rs.stream_whole_tiles; the wave probe of session 21: a 3.39-wave launch takes 4 waves' time)
    stream_tail: int = 0
    # 4-bit GPTQ-order layers with sequential groups take this tile instead where the table has one (gluon_rs's,
    # measured faster for them: benchmarks/diag_rs.py), and so do AutoAWQ gemm layers without an awq_rs tile;
    # every other layer (Marlin, act-order, other bit widths) keeps the tile above, which is what its own paths
    # were measured with
    gptq_rs: TileConfig | None = None
    # AutoAWQ gemm layers take this gluon_rs tile where the table has one (under "awq_rs": measured on AWQ's
    # words, e.g. M = 16, where GPTQ's own tile is not gluon_rs's), else gptq_rs (triton_gemm.AWQ_RS)
    awq_rs: TileConfig | None = None
    # a launch of this tile whose last wave is at most half full runs its whole waves' columns, then the rest on
    # this smaller tile in a second launch (triton_gemm.wave_split; under "tail" beside the entry's tile)
    tail: TileConfig | None = None

    def to_dict(self) -> dict:
        """The tile as a table entry's "config" (an entry keeps ``gptq_rs``, ``awq_rs`` and ``tail`` beside it,
        under "rs", "awq_rs" and "tail")."""
        d = asdict(self)
        del d["gptq_rs"], d["awq_rs"], d["tail"]
        return d


def bucket(M: int) -> int:
    return next((b for b in M_BUCKETS if M <= b), M_BUCKETS[-1])


def split_for(tiles: int, K: int, block_k: int, target_programs: int) -> int:
    """Programs along K so that the launch has about ``target_programs`` programs."""
    return max(1, min(math.ceil(target_programs / max(tiles, 1)), K // block_k // 2 or 1))


def heuristic(M: int, N: int, K: int, sms: int = 132) -> TileConfig:
    if M <= 4:
        bm, bn, bk, warps, stages = 1, 64, 256, 4, 3
    elif M <= 64:
        bm, bn, bk, warps, stages = 16 if M <= 16 else 32 if M <= 32 else 64, 64, 128, 4, 4
    else:
        bm, bn, bk, warps, stages = 128, 128, 64, 8, 3
    tiles = math.ceil(M / bm) * math.ceil(N / bn)
    return TileConfig(bm, bn, bk, split_for(tiles, K, bk, 2 * sms) if tiles < sms else 1, warps, stages)


@functools.lru_cache(maxsize=1)
def _table() -> dict:
    if not TUNED_FILE.exists():
        return {}
    return json.loads(TUNED_FILE.read_text())


@functools.lru_cache(maxsize=4096)
def pick_config(M: int, N: int, K: int) -> TileConfig:
    table = _table()
    tuned = sorted(int(b) for b in table)
    if not tuned:
        return heuristic(M, N, K)
    # the nearest tuned bucket at or above M (its tile covers M rows), else the largest
    entries = table[str(next((b for b in tuned if M <= b), tuned[-1]))]
    # nearest in both dimensions (log scale): K sets a program's K range, N the number of column tiles
    best = min(entries, key=lambda e: math.hypot(math.log(e["K"] / K), math.log(e["N"] / N)))
    return config_of(best, M, N, K)


def config_of(entry: dict, M: int, N: int, K: int) -> TileConfig:
    """The tile a table entry (``config`` and ``target_programs``) gives an M x K x N problem: its K split
    aims at the entry's program count on this shape (none where the target is 0), a cluster's is its size."""
    c = entry["config"]
    # a tile much wider than the layer (a 1024-wide M = 1 tile on a 576-wide layer) only idles threads
    block_n = min(c["block_n"], max(64, 1 << (N.bit_length() - 1)))
    tiles = math.ceil(M / c["block_m"]) * math.ceil(N / block_n)
    split = split_for(tiles, K, c["block_k"], entry["target_programs"]) if entry["target_programs"] else 1
    cluster = c.get("cluster", 1)
    if cluster > 1:  # a cluster's split is its size, whatever the shape
        split = cluster
    cfg = TileConfig(c["block_m"], block_n, c["block_k"], split, c["num_warps"], c["num_stages"], c.get("pipe", False),
                     c.get("ws", False), cluster, c.get("ring", False), int(c.get("rs", 0)), c.get("lean", False),
                     int(c.get("stream", 0)), int(c.get("stream_tail", 0)))
    if "rs" in entry:  # {"config": ..., "target_programs": ...}: the tile of 4-bit GPTQ-order layers
        cfg = dataclasses.replace(cfg, gptq_rs=config_of(entry["rs"], M, N, K))
    if "awq_rs" in entry:  # the same, measured on AutoAWQ's words
        cfg = dataclasses.replace(cfg, awq_rs=config_of(entry["awq_rs"], M, N, K))
    if "tail" in entry:  # the second launch of a wave split
        cfg = dataclasses.replace(cfg, tail=config_of(entry["tail"], M, N, K))
    return cfg
