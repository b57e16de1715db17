"""gluon_rs's transposed tile (weights dequantized into wgmma's A registers) against cuBLAS fp16 and the
default dispatch, kernel-only graph times; every tile checked against the default's output first.

    python benchmarks/diag_rs.py [--m 16,64,256,1024] [--shapes 4096x4096,...] [--quick] [--ws | --ws-only] [--awq] [--jobs 12]
        [--k-stages 128:4,128:8] [--post 32] [--splits 2,3,5] [--clusters 2,4] [--block-m 16] [--warps 4] [--lean-regs] [--atomics] [--stream 1,2,3] [--stream-tail 1,2] [--top 4]
        [--budget-s 90] [--flushed] [--slot-values 33554432]
        [--merge-into repack/kernels/tuned.json]

``--ws`` adds the warp-specialized tile (TileConfig.rs 3, K splits too since session 17) to the candidates;
``--ws-only`` sweeps only it (with ``--merge-into`` it then goes in where it beats the table's current choice).
``--awq`` sweeps the tile on AutoAWQ gemm words against AWQ's default dispatch; with ``--merge-into`` a winner goes into the
entry's ``awq_rs`` slot (AWQ layers take it before the entry's ``rs``). ``--jobs N`` compiles each shape's
candidates in N processes before timing them. ``--k-stages BK:STAGES,...`` replaces the (K tile, ring depth)
pairs swept (deep rings: ``128:6,128:8,128:12``; session 16: no gain over 4 stages at M = 16). ``--post N``
sweeps with gluon_rs's POST on for tiles of at most N tokens (merge only if RS_POST_MAX_BLOCK_M is then set so).
``--lean-regs`` adds each warp-specialized POST tile at gluon_rs.LEAN_WS_REGS' budget too (TileConfig.lean: more
CTAs an SM; a winner is merged with it). ``--atomics`` splits K by atomics into the zeroed workspace instead of
gluon_rs's slots (triton_gemm.RS_SPLIT_SLOTS off: the way before session 18). ``--splits S,...`` adds these K
splits to every tile (by default each tile unsplit and, for launches of fewer programs than SMs, split to about
one or two waves), e.g. to even out a launch of 1.7 programs an SM (8192x28672 M = 16, session 17: slower), or
past two waves (14336x4096 M = 16's 16x64 tile split 8, session 23: 6 % faster than split 5).
``--clusters C,...`` adds each one-tile (rs 1/2) tile split C ways inside a thread-block cluster too (TileConfig.cluster,
gluon_rs._cluster_store: the partial sums meet in distributed shared memory; session 23: a 2-CTA cluster 0.7-1.3 us
faster than slots on 4096x14336 M = 16, clusters of 4-8 slower than slots on 14336x4096); only where the cluster's
CTAs split K evenly, as the dispatch requires. ``--block-m B,...`` keeps only tiles of these token counts (at M = 16
the 32-token tiles have never won: half their MMA rows are padding, and they halve a sweep's candidates);
``--warps W,...`` keeps only tiles of these warp counts (no 8-warp rs tile has won at M = 16).
``--stream P,...`` adds each tile launched stream-K at P programs an SM (TileConfig.stream,
gluon_rs.w4_rs_stream_kernel, w4_rs_ws_stream_kernel with --ws: every SM the same number of K steps, tiles cut between programs
wherever the ranges fall; session 20: slower than the one-tile launches wherever it streamed); ``--stream-only`` sweeps only those, against the
default dispatch (with ``--stream``); a stream tile whose slots would pass triton_gemm.RS_SLOT_VALUES is left out
and counted (the dispatch would launch it one tile a program: session 20's M = 1024 stream sweep timed exactly
that), ``--slot-values V`` raises that budget for the sweep. ``--stream-tail T,...`` launches each stream tile
hybrid too (TileConfig.stream_tail: the whole waves but the last T - 1 one tile a program, only the rest
streamed; 0 in the list keeps the pure launch). ``--top N`` prints the N fastest tiles of each shape (4). ``--budget-s S`` gives each (shape, M) S seconds,
compiling included: the tiles not compiled or timed by then are left out, and the best of those timed is printed
and merged as usual (session 19: three sweeps of 200-290 candidate tiles ran past their `timeout 110` compiling and printed
nothing at all). ``--flushed`` times every tile, the default and cuBLAS as do_bench's GPU side sees them (one
weight copy, each call after the L2 flush, no host time: gemm_common.flushed_ms) instead of in a CUDA graph over
warm code and x; the benchmark's ratios are do_bench's (session 20: its flush adds 3.5-5 us at 4096²).

With ``--merge-into``, the best tile of each (shape, M) goes into the tuned table where it beats the
default dispatch by 3 % or more, as the entry's ``rs`` tile (4-bit GPTQ-order layers only; the entry's
own tile stays for the other layouts; target_programs recorded so that other shapes split alike).
"""

from __future__ import annotations

import itertools
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks.gemm_common import (flushed_ms, graph_ms, int_option, layer_with_baselines, parse_shapes,  # noqa: E402
                                     warm_clocks)
from repack.kernels import gluon_rs  # noqa: E402
from repack.kernels import triton_gemm as tgm  # noqa: E402
from repack.kernels.triton_gemm import DOT_RS, triton_gemm  # noqa: E402
from repack.kernels.tuned import TileConfig, split_for  # noqa: E402

SHAPES = [(4096, 4096), (4096, 14336), (14336, 4096), (8192, 28672)]
SMS = 132


def candidates(M: int, K: int, N: int, quick: bool, ws: bool = False, ws_only: bool = False,
               k_stages: tuple | None = None, splits: tuple = (), lean: bool = False, awq: bool = False,
               streams: tuple = (), tails: tuple = (0,), clusters: tuple = ()) -> list[TileConfig]:
    if k_stages is None:
        k_stages = ((64, 4), (128, 3), (128, 4)) if quick else ((64, 4), (64, 3), (128, 3), (128, 4), (64, 6))
    tiles = []
    # likely winners first, so that a sweep cut by --budget-s has timed them: 4-warp tiles at M <= 64, 8 above
    for warps in (4, 8) if M <= 64 else (8, 4):
        for reps in (1, 2, 4):
            bn = 16 * warps * reps
            for bm in (16, 32, 64, 128, 256):
                if bm > max(16, 2 * M) or (bm < 64 and M > 2 * bm) or N % bn:  # 16/32-token tiles at M <= 64
                    continue
                for bk, stages in k_stages:
                    if not gluon_rs.fits(bm, bn, bk, stages, warps):
                        continue
                    count = math.ceil(M / bm) * (N // bn)
                    extra = [s for s in splits if s <= max(1, K // bk // 2)]
                    # unsplit too: a one-wave launch of large tiles can beat every split (4096x14336 M = 256's
                    # 112 programs of 256x128, session 18)
                    chosen = [1] + ([split_for(count, K, bk, t) for t in (SMS, 2 * SMS)] if count < SMS else [])
                    for split in dict.fromkeys(chosen + extra):
                        # each step's wgmma left running, or waited for; warp-specialized
                        for rs in (3,) if ws_only else (1, 2, 3) if ws else (1, 2):
                            cfg = TileConfig(bm, bn, bk, split, warps, stages, rs=rs)
                            if cfg not in tiles:
                                tiles.append(cfg)
                    for c in clusters:  # (a cluster's split is its size; the dispatch sends an uneven K to slots)
                        if K % (c * bk) == 0 and not ws_only:
                            tiles += [TileConfig(bm, bn, bk, c, warps, stages, rs=rs, cluster=c) for rs in (1, 2)]
                    for per_sm, tail in itertools.product(streams, tails):
                        for rs in (3,) if ws_only else (1, 2, 3) if ws else (1, 2):
                            tiles.append(TileConfig(bm, bn, bk, 1, warps, stages, rs=rs, stream=per_sm,
                                                    stream_tail=tail))
                    regs = gluon_rs.LEAN_WS_REGS.get((bm, bn, awq))
                    if lean and (ws or ws_only) and warps == 4 and bm <= tgm.RS_POST_MAX_BLOCK_M and regs:
                        # at a lean budget more programs fit an SM: split to fill them too (a 224-program launch
                        # runs one or two a SM whatever the budget)
                        slots = SMS * resident(bm, bn, bk, stages, regs)
                        fill = [split_for(count, K, bk, slots)] if count < slots else []
                        for split in dict.fromkeys(chosen + fill + extra):
                            tiles.append(TileConfig(bm, bn, bk, split, warps, stages, rs=3, lean=True))
                        for per_sm, tail in itertools.product(streams, tails):
                            tiles.append(TileConfig(bm, bn, bk, 1, warps, stages, rs=3, lean=True, stream=per_sm,
                                                    stream_tail=tail))
    return tiles


def resident(bm: int, bn: int, bk: int, stages: int, regs: int) -> int:
    """Programs an SM of a 4-warp warp-specialized tile: 256 threads (4 MMA warps and the load warpgroup) at
    ``regs`` registers a thread, and its ring in shared memory."""
    return max(1, min(65536 // (256 * regs), 227 * 1024 // gluon_rs.smem_bytes(bm, bn, bk, stages)))


def _compile_share(job: tuple) -> int:
    """A worker process of precompile(): runs each of its tiles once on a layer of the sweep's shapes, so that
    Triton's on-disk cache holds the compiled kernel when the sweep itself launches the tile."""
    import torch

    from benchmarks.gemm_common import packed_weight
    K, N, M, layout, tiles, post, slots, deadline = job
    tgm.RS_POST_MAX_BLOCK_M, tgm.RS_SPLIT_SLOTS = post, slots  # (a spawned process starts from the defaults)
    w = packed_weight(K, N, layout)
    x = torch.randn(M, K, device="cuda", dtype=torch.float16)
    done = 0
    for cfg in tiles:
        if time.time() > deadline:  # (wall clock: the same in every process)
            break
        try:
            triton_gemm(x, w, cfg, path_override=DOT_RS)
            done += 1
        except Exception:  # noqa: BLE001  (the sweep reports the tile's failure itself)
            pass
    torch.cuda.synchronize()
    return done


def precompile(K: int, N: int, M: int, layout: str, tiles: list[TileConfig], jobs: int,
               deadline: float = math.inf) -> None:
    """Compile the sweep's tiles in ``jobs`` processes first: a tile's compile takes 0.3-1.5 s on the GPU
    machine's host, its timing ~0.1 s (session 15's M = 256 sweep ran out of its call after one shape). Each
    process stops at ``deadline`` (time.time())."""
    import concurrent.futures
    import multiprocessing
    shares = [(K, N, M, layout, tiles[j::jobs], tgm.RS_POST_MAX_BLOCK_M, tgm.RS_SPLIT_SLOTS, deadline)
              for j in range(jobs) if tiles[j::jobs]]
    try:
        with concurrent.futures.ProcessPoolExecutor(len(shares), mp_context=multiprocessing.get_context("spawn")) as ex:
            list(ex.map(_compile_share, shares))
    except Exception as e:  # noqa: BLE001  (the sweep compiles what is missing itself)
        print(f"  precompile failed ({type(e).__name__}: {str(e)[:80]}); the sweep compiles as it goes", flush=True)


def streams_at(cfg: TileConfig, M: int, N: int, K: int) -> bool:
    """Whether the dispatch launches ``cfg`` stream-K on this shape (triton_gemm.stream_launch)."""
    tiles = math.ceil(M / cfg.block_m) * math.ceil(N / cfg.block_n)
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    return tgm.stream_launch(tiles, K // cfg.block_k, cfg.stream, sms, cfg.block_m * cfg.block_n,
                             cfg.stream_tail) is not None


def label(cfg: TileConfig) -> str:
    flags = [name for name, on in ((f"cluster{cfg.cluster}", cfg.cluster > 1), ("lean", cfg.lean),
                                   (f"stream{cfg.stream}", cfg.stream), (f"tail{cfg.stream_tail}", cfg.stream_tail))
             if on]
    return " ".join([f"{cfg.block_m}x{cfg.block_n}x{cfg.block_k} w{cfg.num_warps} s{cfg.num_stages} k{cfg.split_k}"
                     f" rs{cfg.rs}", *flags])


def merge_row(path: Path, layout: str, r: dict) -> None:
    """A shape's best tile into the tuned table at ``path`` where it beats the default dispatch by 3 % or more
    (a wave split's tail under the entry's old rs tile is kept)."""
    if r["best"] > 0.97 * r["default"]:
        return
    table = json.loads(path.read_text())
    cfg = r["cfg"]
    count = math.ceil(r["M"] / cfg.block_m) * (r["N"] // cfg.block_n)
    # (a cluster's split is its size: tuned.config_of ignores the target)
    split = cfg.split_k > 1 and cfg.cluster == 1
    rs = dict(config=cfg.to_dict(), target_programs=count * cfg.split_k if split else 0, ms=r["best"])
    bucket = table.setdefault(str(r["M"]), [])
    own = [e for e in bucket if (e["K"], e["N"]) == (r["K"], r["N"])]
    if layout == "awq":  # an AWQ slot beside an entry's own tiles (an entry without it: AWQ takes "rs")
        if not own:
            return
        own[0]["awq_rs"] = rs
    else:
        # without an entry for this shape the rs tile also serves the other layouts (as a DOT_KTJ tile)
        entry = own[0] if own else dict(K=r["K"], N=r["N"], config={**rs["config"], "rs": 0},
                                         target_programs=rs["target_programs"], ms=r["best"])
        # a wave split's tail stays: triton_gemm.wave_split derives the columns from the new tile
        # (wave_split_probe.py measures it again)
        if "tail" in entry.get("rs", {}):
            rs["tail"] = entry["rs"]["tail"]
        entry["rs"] = rs
        bucket[:] = [e for e in bucket if (e["K"], e["N"]) != (r["K"], r["N"])] + [entry]
    path.write_text(json.dumps(table, indent=1) + "\n")
    print(f"merged {r['K']}x{r['N']} M={r['M']}{' (AWQ)' if layout == 'awq' else ''}: {label(cfg)} "
          f"{r['best'] * 1e3:.1f} us (default {r['default'] * 1e3:.1f})", flush=True)


def main() -> None:
    args = sys.argv[1:]
    ms = int_option(args, "--m", (64, 256, 1024))
    shapes = (parse_shapes(args[args.index("--shapes") + 1])
              if "--shapes" in args else SHAPES)
    quick = "--quick" in args
    merge = Path(args[args.index("--merge-into") + 1]) if "--merge-into" in args else None
    layout = "awq" if "--awq" in args else "gptq"
    jobs = int(args[args.index("--jobs") + 1]) if "--jobs" in args else 0
    if "--atomics" in args:  # K splits by atomics into the workspace, not through slots (triton_gemm.RS_SPLIT_SLOTS)
        tgm.RS_SPLIT_SLOTS = False
    if "--post" in args:  # gluon_rs's POST for tiles of at most this many tokens (triton_gemm.RS_POST_MAX_BLOCK_M)
        tgm.RS_POST_MAX_BLOCK_M = int(args[args.index("--post") + 1])
    k_stages = (tuple(tuple(int(v) for v in p.split(":")) for p in args[args.index("--k-stages") + 1].split(","))
                if "--k-stages" in args else None)
    splits = int_option(args, "--splits")
    streams = int_option(args, "--stream")
    tails = int_option(args, "--stream-tail", (0,))
    clusters = int_option(args, "--clusters")
    stream_only = "--stream-only" in args
    block_ms = int_option(args, "--block-m")
    warp_counts = int_option(args, "--warps")
    n_top = int(args[args.index("--top") + 1]) if "--top" in args else 4
    budget = float(args[args.index("--budget-s") + 1]) if "--budget-s" in args else math.inf
    flushed = "--flushed" in args
    if "--slot-values" in args:  # the K-split and stream-K slots' budget (triton_gemm.RS_SLOT_VALUES, floats)
        tgm.RS_SLOT_VALUES = int(args[args.index("--slot-values") + 1])
        if merge:  # the shipped dispatch keeps its budget: a tile that needs more would not launch as timed
            print("--slot-values: nothing is merged", flush=True)
            merge = None
    warm_clocks()
    for K, N in shapes:
        for M in ms:
            tiles = candidates(M, K, N, quick, "--ws" in args, "--ws-only" in args, k_stages, splits,
                               "--lean-regs" in args, layout == "awq", streams, tails, clusters)
            if stream_only:
                tiles = [c for c in tiles if c.stream]
            tiles = [c for c in tiles if (not block_ms or c.block_m in block_ms)
                     and (not warp_counts or c.num_warps in warp_counts)]
            refused = [c for c in tiles if c.stream and not streams_at(c, M, N, K)]
            if refused:  # the dispatch would launch these one tile a program: not stream-K timings
                print(f"  {K}x{N} M={M}: {len(refused)} stream tiles left out, past the slot budget "
                      f"(RS_SLOT_VALUES {tgm.RS_SLOT_VALUES}; --slot-values raises it)", flush=True)
                tiles = [c for c in tiles if c not in refused]
            deadline = time.time() + budget
            if jobs > 1:  # compiling stops early enough to leave a tenth of the budget for the timings
                precompile(K, N, M, layout, tiles, jobs, deadline - 0.1 * budget)
            copies, x, ref, cub, dflt = layer_with_baselines(K, N, M, layout)
            if flushed:  # the baselines as do_bench's GPU side sees them too
                dense = torch.randn(N, K, device="cuda", dtype=torch.float16)
                cub = flushed_ms(lambda: torch.nn.functional.linear(x, dense))
                dflt = flushed_ms(lambda: triton_gemm(x, copies[0]))
            results, cut = [], 0
            for i, cfg in enumerate(tiles):
                if time.time() > deadline:
                    cut = len(tiles) - i
                    break
                try:
                    y = triton_gemm(x, copies[0], cfg, path_override=DOT_RS).float()
                    err = float((y - ref).norm() / ref.norm())
                    if not err < 2e-3:
                        print(f"  {K}x{N} M={M} {label(cfg)}: WRONG (rel. error {err:.1e})", flush=True)
                        continue
                    g = (flushed_ms(lambda: triton_gemm(x, copies[0], cfg, path_override=DOT_RS)) if flushed
                         else graph_ms([lambda c=c: triton_gemm(x, c, cfg, path_override=DOT_RS) for c in copies]))
                except Exception as e:  # noqa: BLE001
                    print(f"  {K}x{N} M={M} {label(cfg)}: failed ({type(e).__name__}: {str(e)[:80]})", flush=True)
                    continue
                results.append((g, cfg))
            results.sort(key=lambda r: r[0])
            best = results[0] if results else (float("inf"), None)
            top = ", ".join(f"{label(c)} {g * 1e3:.1f}" for g, c in results[:n_top])
            print(f"{K}x{N} M={M}: cuBLAS {cub * 1e3:.1f} us, default {dflt * 1e3:.1f} ({cub / dflt:.2f}x), "
                  f"rs best {best[0] * 1e3:.1f} ({cub / best[0]:.2f}x) | {top}"
                  + (f" | {cut} of {len(tiles)} tiles left out at the budget" if cut else ""), flush=True)
            if merge and best[1] is not None:  # each shape as it is done: a call that runs out keeps what it merged
                merge_row(merge, layout, dict(K=K, N=N, M=M, best=best[0], default=dflt, cfg=best[1]))


if __name__ == "__main__":
    main()
