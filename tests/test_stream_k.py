"""gluon_rs's stream-K launch arithmetic on the CPU: the programs' ranges of (tile, K step) pairs, the owner formula
the kernel finds a tile's first and last part with, and the slots a tile the host reserves (gluon_rs.stream_slots).
The kernel itself runs on the GPU only (tests/test_kernels.py); here its partition is checked against brute force,
so that a tile's counted parts are exactly the programs that store one, and each lands in a slot of its own."""

from __future__ import annotations

import itertools

import pytest

from tests.triton_checks import has_triton

pytestmark = pytest.mark.skipif(not has_triton(), reason="gluon_rs imports triton")


def _ranges(total: int, programs: int) -> list[range]:
    """Program p's steps, as w4_rs_stream_kernel computes them: [p total / P, (p + 1) total / P), floors."""
    return [range(p * total // programs, (p + 1) * total // programs) for p in range(programs)]


def _owner(s: int, total: int, programs: int) -> int:
    """The kernel's closed form (gluon_rs._owner), written out again."""
    return ((s + 1) * programs - 1) // total


CASES = [(tiles, steps, per_sm, sms) for tiles, steps in itertools.product((1, 2, 3, 7, 18, 64), (1, 2, 5, 8, 16, 32))
         for per_sm, sms in ((1, 132), (2, 132), (3, 132), (1, 5), (4, 7))]


@pytest.mark.parametrize("tiles, steps, per_sm, sms", CASES)
def test_every_tile_is_cut_into_parts_that_meet_in_slots_of_their_own(tiles, steps, per_sm, sms):
    from repack.kernels.gluon_rs import stream_programs, stream_slots
    total = tiles * steps
    programs = stream_programs(tiles, steps, per_sm, sms)
    assert 1 <= programs <= min(total, per_sm * sms)
    slots = stream_slots(steps, total, programs)
    ranges = _ranges(total, programs)
    assert all(len(r) >= 1 for r in ranges)  # every program counted in a tile's parts stores one
    assert sorted(s for r in ranges for s in r) == list(range(total))
    for s in range(total):  # the owner formula names the program whose range holds the step
        assert s in ranges[_owner(s, total, programs)]
    for t in range(tiles):
        parts = [p for p, r in enumerate(ranges) if set(r) & set(range(t * steps, (t + 1) * steps))]
        first, last = _owner(t * steps, total, programs), _owner(t * steps + steps - 1, total, programs)
        assert parts == list(range(first, last + 1))
        assert len(parts) <= slots  # slot pid - first stays inside the tile's slots
        # a program writes the tile itself exactly when its range holds the whole tile
        assert (len(parts) == 1) == any(set(range(t * steps, (t + 1) * steps)) <= set(r) for r in ranges)


@pytest.mark.parametrize("tiles, steps, per_sm, sms", [(64, 32, 1, 132), (112, 32, 3, 132), (448, 64, 1, 132),
                                                     (64, 112, 2, 132), (18, 8, 1, 132)])
def test_the_slots_a_tile_cover_the_busiest_tile_with_at_most_one_to_spare(tiles, steps, per_sm, sms):
    """stream_slots is a bound (ranges of at least `shortest` steps), not `programs`: memory for the slots grows
    with it, so it stays within one of the busiest tile's parts on the benchmark's launches."""
    from repack.kernels.gluon_rs import stream_programs, stream_slots
    programs = stream_programs(tiles, steps, per_sm, sms)
    ranges = _ranges(tiles * steps, programs)
    most = max(sum(1 for r in ranges if r.start < (t + 1) * steps and r.stop > t * steps) for t in range(tiles))
    assert most <= stream_slots(steps, tiles * steps, programs) <= most + 1


def test_a_tuned_entry_carries_its_stream_k_programs():
    from repack.kernels.tuned import TileConfig, config_of
    rs = TileConfig(16, 128, 128, 1, 4, 3, rs=2, stream=2)
    entry = dict(K=4096, N=14336, config=dict(TileConfig(16, 128, 128, 2, 4, 3).to_dict()), target_programs=0,
                 rs=dict(config=rs.to_dict(), target_programs=0))
    cfg = config_of(entry, 16, 14336, 4096)
    assert cfg.stream == 0 and cfg.gptq_rs == rs
    assert config_of(dict(K=1, N=1, config={k: v for k, v in rs.to_dict().items() if k != "stream"},
                          target_programs=0), 16, 14336, 4096).stream == 0


@pytest.mark.parametrize("tile", [(16, 64, 4), (16, 128, 4), (32, 64, 4), (32, 128, 4), (16, 256, 8), (32, 256, 8)])
@pytest.mark.parametrize("per_sm", [1, 2, 3, 4, 6])
def test_a_streamed_post_tile_budgets_registers_for_its_programs_an_sm(tile, per_sm):
    """stream_maxnreg: a POST tile's budget lets `per_sm` programs share an SM's 64K registers (down to the least
    the tile compiles clean at: 128, or 168 with 32 accumulator values a thread), in whole 8-register steps."""
    from repack.kernels.gluon_rs import stream_maxnreg
    bm, bn, warps = tile
    regs = stream_maxnreg(warps, per_sm, True, bm, bn)
    least = 128 if bm * bn // (32 * warps) <= 16 else 168
    assert regs % 8 == 0 and least <= regs <= 255
    assert regs * 32 * warps * per_sm <= 65536 or regs == least
    assert (regs + 8) * 32 * warps * per_sm > 65536 or regs == 248  # the most that still fits


def test_tiles_that_serialize_under_a_cap_keep_ptxas_count():
    """Four 16-row repetitions a warp (16x256 on 4 warps, 32x512 on 8) and tiles without POST: no budget."""
    from repack.kernels.gluon_rs import stream_maxnreg
    assert stream_maxnreg(4, 3, True, 16, 256) is None
    assert stream_maxnreg(8, 2, True, 32, 512) is None
    assert stream_maxnreg(4, 3, False, 64, 64) is None


def test_a_stream_launch_past_the_slot_budget_is_refused(monkeypatch):
    """triton_gemm.stream_launch: a tile's slots are reserved for every tile, so a launch of many large tiles can
    pass RS_SLOT_VALUES; the dispatch then launches one tile a program, and the sweep must know (session 20: the
    M = 1024 4096x14336 sweep timed the one-tile kernel under stream labels)."""
    from repack.kernels import triton_gemm as tg
    # 448 tiles of 256x128 tokens x columns, 64 K steps, one program an SM on 132 SMs: ranges of 217 steps meet a
    # tile in at most two programs, 448 x 2 x 32768 slot values = 29.4M, past the 16.8M budget
    assert tg.stream_launch(448, 64, 1, 132, 256 * 128) is None
    monkeypatch.setattr(tg, "RS_SLOT_VALUES", 1 << 25)
    assert tg.stream_launch(448, 64, 1, 132, 256 * 128) == (132, 2, 0)
    # small tiles, two programs an SM: ranges of 13 or 14 steps meet a 32-step tile in up to four programs
    assert tg.stream_launch(112, 32, 2, 132, 16 * 128) == (264, 4, 0)
    # the kernel's step arithmetic is int32: (s + 1) * programs must stay below 2^31
    assert tg.stream_launch(1 << 16, 1 << 10, 4, 132, 1) is None


def test_a_hybrid_launch_streams_only_its_last_waves_and_fits_the_slot_budget():
    """stream_tail: the M = 1024 4096x14336 launch (448 tiles of 256x128, 3.39 waves on 132 SMs) runs three
    waves whole and streams the last 52 tiles (tail 1), or two waves whole and 184 tiles streamed (tail 2); only
    the streamed tiles take slots, so both fit the 16.8M budget the pure launch passes."""
    from repack.kernels import triton_gemm as tg
    # tail 1: 52 tiles x 64 steps over 132 programs, ranges of 25-26 steps: a tile meets at most 4 programs
    assert tg.stream_launch(448, 64, 1, 132, 256 * 128, 1) == (132, 4, 396)
    # tail 2: 184 x 64 steps, ranges of 89-90 steps: a tile meets at most 2
    assert tg.stream_launch(448, 64, 1, 132, 256 * 128, 2) == (132, 2, 264)
    # a whole number of waves and tail 1: nothing streams (a persistent launch)
    assert tg.stream_launch(264, 64, 1, 132, 256 * 128, 1) == (132, 1, 264)
    # fewer tiles than programs: every tile streams, whatever the tail
    assert tg.stream_launch(100, 64, 1, 132, 256 * 128, 1)[2] == 0


def _hybrid_work(tiles: int, steps: int, programs: int, whole: int) -> list[list[tuple[int, int]]]:
    """Each program's (tile, step) pairs as the hybrid kernel walks them: tiles pid, pid + P, ... below `whole`
    whole, then its range of the streamed steps (offset by whole x steps)."""
    total = (tiles - whole) * steps
    work = []
    for p in range(programs):
        pairs = [(t, k) for t in range(p, whole, programs) for k in range(steps)]
        pairs += [divmod(whole * steps + s, steps) for s in range(p * total // programs, (p + 1) * total // programs)]
        work.append(pairs)
    return work


@pytest.mark.parametrize("tiles, steps, per_sm, sms, tail", [c + (t,) for c in CASES[::3] for t in (1, 2, 3)]
                         + [(448, 64, 1, 132, 1), (448, 64, 1, 132, 2), (896, 64, 1, 132, 1), (7, 1, 1, 5, 1)])
def test_a_hybrid_launch_covers_every_step_once_and_its_cut_tiles_meet_in_their_own_slots(tiles, steps, per_sm,
                                                                                         sms, tail):
    """Brute force over the hybrid partition (gluon_rs.stream_whole_tiles): every (tile, step) pair is done by
    exactly one program, the whole tiles are a whole number of waves, every program's streamed range holds a step
    where anything streams, and a cut tile's parts are the programs the kernel's owner formula names from the
    streamed steps' start, within the slots the host reserves."""
    from repack.kernels.gluon_rs import stream_programs, stream_slots, stream_whole_tiles
    programs = stream_programs(tiles, steps, per_sm, sms)
    whole = stream_whole_tiles(tiles, steps, programs, tail)
    assert whole % programs == 0 and 0 <= whole <= tiles
    wanted = max(0, tiles // programs - tail + 1) * programs  # all whole waves but the last tail - 1
    # ... or fewer, only where one more wave whole would leave a program without a streamed step
    assert whole == wanted or (whole < wanted and 0 < (tiles - whole - programs) * steps < programs)
    work = _hybrid_work(tiles, steps, programs, whole)
    done = sorted(pair for pairs in work for pair in pairs)
    assert done == [(t, k) for t in range(tiles) for k in range(steps)]
    total = (tiles - whole) * steps
    if total:
        assert total >= programs  # each streamed range holds a step
        slots = stream_slots(steps, total, programs)
        for t in range(whole, tiles):
            parts = [p for p, pairs in enumerate(work) if any(pt == t for pt, _ in pairs)]
            cut = t - whole
            first, last = _owner(cut * steps, total, programs), _owner(cut * steps + steps - 1, total, programs)
            assert parts == list(range(first, last + 1))
            assert len(parts) <= slots
    for t in range(whole):  # whole tiles: one program, all steps
        assert sum(1 for pairs in work if (t, 0) in pairs) == 1
