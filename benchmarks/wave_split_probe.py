"""Does a layer split in two launches beat its partial last wave? The table's tile over the columns of its
whole waves, then the remaining columns in a second launch on a smaller tile (or a K split), against the one
launch (needs CUDA; graph times, both launches in one graph, outputs compared with the one launch's).

    python benchmarks/wave_split_probe.py [--m 1024] [--shapes 4096x14336,3584x18944] [--merge-into tuned.json]
    python benchmarks/wave_split_probe.py --awq [--m 1024] [--shapes ...]     (AutoAWQ gemm words; measures only)

Session 21's wave probe: M = 1024 4096x14336 (448 tiles of 256x128, 3.39 waves on 132 SMs) takes as long as 4
waves, and stream-K, pure or hybrid, loses what balancing gains to its cut tiles' fixup. Here the first launch
runs 3 whole waves (columns [0, 12672)) and the second fills the 0.39 wave that is left (session 21: 128x64
tiles, 194.4 against 205.2 µs; the same tile in the second launch 213.4). triton_gemm.wave_split decides where
a layer splits (its last wave at most half full); a shape it would not split is reported and skipped.

``--merge-into`` writes the fastest tail into the table entry's rs tile (TileConfig.tail, under "tail") where the
split beats the one launch by 3 % or more; the dispatch then splits that shape and the shapes nearest it.
"""

import dataclasses
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks.gemm_common import copies_for, graph_ms, option, packed_weight, parse_shapes, warm_clocks  # noqa: E402
from repack.kernels import triton_gemm as tg  # noqa: E402
from repack.kernels.tuned import TileConfig, bucket, pick_config  # noqa: E402

TAILS = [TileConfig(128, 64, 64, 1, 4, 4, rs=3), TileConfig(128, 128, 64, 1, 8, 4, rs=3),
         TileConfig(128, 64, 64, 1, 4, 4, rs=1), TileConfig(64, 64, 128, 1, 4, 4, rs=3),
         TileConfig(64, 128, 64, 1, 8, 4, rs=3), TileConfig(256, 64, 64, 1, 4, 4, rs=3)]


def probe(M: int, K: int, N: int, layout: str = "gptq") -> tuple[TileConfig, float, float] | None:
    """(the fastest tail, its split's µs, the one launch's µs) for this shape, or None where it does not split.
    ``layout`` "awq": AutoAWQ gemm words on the tile AWQ layers take (awq_rs, else the GPTQ rs tile)."""
    picked = pick_config(M, N, K)
    rs = (picked.awq_rs or picked.gptq_rs) if layout == "awq" else picked.gptq_rs
    cfg = dataclasses.replace(rs or picked, tail=None)
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    tiles = math.ceil(M / cfg.block_m) * (N // cfg.block_n)
    splits = {t: tg.wave_split(M, N, dataclasses.replace(cfg, tail=t), sms) for t in TAILS}
    splits = {t: f for t, f in splits.items() if f}
    print(f"{layout} {K}x{N} M={M}: {cfg.block_m}x{cfg.block_n}x{cfg.block_k} rs{cfg.rs}, {tiles} tiles = "
          f"{tiles / sms:.2f} waves on {sms} SMs" + ("" if splits else ": no split (wave_split)"), flush=True)
    if not splits:
        return None
    ws = [packed_weight(K, N, layout) for _ in range(copies_for(K * N // 2))]
    x = torch.randn(M, K, device="cuda", dtype=torch.float16)
    y = torch.empty(M, N, device="cuda", dtype=torch.float16)
    want = tg.triton_gemm(x, ws[0], cfg, path_override=tg.DOT_RS).float()
    one = graph_ms([lambda w=w: tg.triton_gemm(x, w, cfg, out=y, path_override=tg.DOT_RS) for w in ws]) * 1e3
    print(f"  one launch: {one:7.1f} us", flush=True)
    best = None
    for tail, first in splits.items():
        parts = [(w.columns(0, first), w.columns(first, N)) for w in ws]

        def both(p, tail=tail, first=first):
            tg.triton_gemm(x, p[0], cfg, out=y[:, :first], path_override=tg.DOT_RS)
            tg.triton_gemm(x, p[1], tail, out=y[:, first:], path_override=tg.DOT_RS)
        name = f"[{first}, {N}) on {tail.block_m}x{tail.block_n}x{tail.block_k} w{tail.num_warps} rs{tail.rs}"
        try:
            y.fill_(float("nan"))
            both(parts[0])
            err = float((y.float() - want).abs().max())
            t = graph_ms([lambda p=p: both(p) for p in parts]) * 1e3
        except Exception as e:  # noqa: BLE001  (a tile that does not launch on the tail is reported, not fatal)
            print(f"  {name}: failed ({type(e).__name__}: {str(e)[:100]})", flush=True)
            continue
        ok = math.isfinite(err) and err <= 0.05 * float(want.abs().max())
        print(f"  {name}: {t:7.1f} us ({one / t:.3f}x the one launch; max |diff| {err:.3g}"
              f"{'' if ok else ', WRONG'})", flush=True)
        if ok and (best is None or t < best[1]):
            best = (tail, t)
    return (best[0], best[1], one) if best else None


def merge(path: Path, M: int, K: int, N: int, tail: TileConfig, split_us: float, one_us: float) -> None:
    if split_us > 0.97 * one_us:
        return
    table = json.loads(path.read_text())
    own = [e for e in table.get(str(bucket(M)), []) if (e["K"], e["N"]) == (K, N) and "rs" in e]
    if not own:
        print(f"  not merged: no rs entry for {K}x{N} in bucket {bucket(M)}", flush=True)
        return
    own[0]["rs"]["tail"] = dict(config=tail.to_dict(), target_programs=0, ms=round(split_us / 1e3, 4))
    path.write_text(json.dumps(table, indent=1))
    print(f"  merged the tail into {K}x{N} M={M}", flush=True)


def main() -> None:
    args = sys.argv[1:]

    ms = [int(v) for v in option(args, "--m", "1024").split(",")]
    shapes = parse_shapes(option(args, "--shapes", "4096x14336"))
    target = Path(option(args, "--merge-into", "")) if "--merge-into" in args else None
    layout = "awq" if "--awq" in args else "gptq"
    if layout == "awq" and target:
        sys.exit("--awq measures only: a tail lives in the entry's rs tile, which GPTQ layers take too")
    warm_clocks()
    for K, N in shapes:
        for M in ms:
            found = probe(M, K, N, layout)
            if found and target:
                merge(target, M, K, N, *found)
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
