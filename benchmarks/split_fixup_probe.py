"""What gluon_rs's K-split epilogue (_store_part: each program's partial tile into a slot, then the last program
adds the slots up) costs at small M, step by step, graph µs of the table's split tile:

    python benchmarks/split_fixup_probe.py MODE [--m 16] [--shapes 4096x14336,14336x4096]

gluon_rs._store_part is swapped before the kernel compiles (one mode a process): ``slots`` is the shipped protocol,
``store`` only stores each partial tile into its slot (wrong sums), ``fence`` adds every thread's GPU-scope fence and
the CTA barrier, ``counter`` the tile counter too (no program adds the slots), ``none`` writes each partial tile
straight to y with plain stores (wrong sums: what a split costs without any reduction). The same tile unsplit is
timed too. Needs CUDA.
"""

import dataclasses
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from triton.experimental import gluon  # noqa: E402
from triton.experimental.gluon import language as gl  # noqa: E402

from benchmarks.gemm_common import graph_ms, layer_with_baselines, option, parse_shapes, warm_clocks  # noqa: E402
from repack.kernels import gluon_rs  # noqa: E402
from repack.kernels.gluon_gemm import _fence_gpu  # noqa: E402
from repack.kernels.triton_gemm import DOT_RS, triton_gemm  # noqa: E402
from repack.kernels.tuned import pick_config  # noqa: E402

MODES = {"slots": 0, "store": 1, "fence": 2, "counter": 3, "none": 4}


_MODE: gl.constexpr = gl.constexpr(0)  # MODES' value, set before the kernel compiles


@gluon.jit
def _store_part_steps(acc, y_ptr, ws_ptr, cnt_ptr, M, N, m0, n0, sym, tile, part, parts, stride,
                      BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr):
    """gluon_rs._store_part cut after the step _MODE names (module docstring)."""
    if _MODE == 4:
        gluon_rs._store_out(acc, y_ptr, ws_ptr, cnt_ptr, M, N, m0, n0, sym, tile, 1, BLOCK_M, BLOCK_N, False)
    else:
        SLOT: gl.constexpr = BLOCK_M * BLOCK_N
        AL: gl.constexpr = acc.type.layout
        rows = gl.arange(0, BLOCK_N, layout=gl.SliceLayout(1, AL))
        cols = gl.arange(0, BLOCK_M, layout=gl.SliceLayout(0, AL))
        offs = rows[:, None] * BLOCK_M + cols[None, :]
        gl.store(ws_ptr + tile * stride * SLOT + part * SLOT + offs, acc)
        if _MODE >= 2:
            _fence_gpu(parts)
            gl.thread_barrier()
        if _MODE >= 3:
            gl.atomic_add(cnt_ptr + tile, 1, sem="acq_rel")


def use_mode(mode: str) -> None:
    """Swap gluon_rs._store_part for ``mode``'s steps (in a Triton cache of its own: the source is one for all)."""
    global _MODE
    if MODES[mode]:
        os.environ["TRITON_CACHE_DIR"] = tempfile.mkdtemp(prefix=f"fixup-{mode}-")
        _MODE = gl.constexpr(MODES[mode])
        gluon_rs._store_part = _store_part_steps


def main() -> None:
    args = sys.argv[1:]
    mode = args[0] if args and args[0] in MODES else sys.exit(__doc__)
    M = int(option(args, "--m", "16"))
    shapes = parse_shapes(option(args, "--shapes", "4096x14336,14336x4096"))
    use_mode(mode)
    warm_clocks()
    for K, N in shapes:
        tile = pick_config(M, N, K).gptq_rs
        if tile is None or tile.split_k < 2:
            print(f"{K}x{N} M={M}: no split gluon_rs tile in the table; skipped", flush=True)
            continue
        copies, x, ref, cub, dflt = layer_with_baselines(K, N, M)
        times = {}
        for name, cfg in (("split", tile), ("unsplit", dataclasses.replace(tile, split_k=1))):
            y = triton_gemm(x, copies[0], cfg, path_override=DOT_RS).float()
            err = float((y - ref).norm() / ref.norm())
            times[name] = (graph_ms([lambda c=c, cfg=cfg: triton_gemm(x, c, cfg, path_override=DOT_RS)
                                     for c in copies]), err)
        print(f"{K}x{N} M={M} {mode}: split {tile.split_k} {times['split'][0] * 1e3:.2f} us (rel. error "
              f"{times['split'][1]:.1e}), unsplit {times['unsplit'][0] * 1e3:.2f} us; cuBLAS {cub * 1e3:.2f}, "
              f"default {dflt * 1e3:.2f}", flush=True)


if __name__ == "__main__":
    main()
