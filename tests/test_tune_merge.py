"""benchmarks/tune_gemm.py's merge into the tuned table (pure Python): a sweep of the benchmark's shapes replaces
their entries and nothing else — not a bucket's other shapes, not the gluon_rs tiles diag_rs.py put in an entry.
The sweep itself needs a GPU."""

from __future__ import annotations

import importlib.util

import pytest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="tune_gemm imports triton")


def test_a_sweep_replaces_its_shapes_entries_only():
    from benchmarks.tune_gemm import kept_slots, merged_bucket
    bucket = [dict(K=4096, N=4096, config="old", rs="rs tile", awq_rs="awq tile"), dict(K=4096, N=11008, config="llama2"),
              dict(K=3584, N=18944, config="qwen")]
    new = kept_slots(dict(K=4096, N=4096, config="new"), [bucket[0]])
    assert new == dict(K=4096, N=4096, config="new", rs="rs tile", awq_rs="awq tile")
    merged = merged_bucket(bucket, [new])
    assert sorted((e["K"], e["N"], e["config"]) for e in merged) == [
        (3584, 18944, "qwen"), (4096, 4096, "new"), (4096, 11008, "llama2")]
    # an entry without gluon_rs tiles gains none
    assert kept_slots(dict(K=1, N=2, config="c"), []) == dict(K=1, N=2, config="c")


def test_a_wave_split_tail_goes_into_its_entrys_rs_tile_only_when_it_pays(tmp_path):
    """benchmarks/wave_split_probe.py --merge-into: the fastest tail lands under the shape's rs tile (where the
    dispatch reads TileConfig.tail) when the split is 3 % faster than the one launch, and nowhere else."""
    import json

    from benchmarks.wave_split_probe import merge
    from repack.kernels.tuned import TileConfig, config_of
    rs = dict(config=TileConfig(256, 128, 64, 1, 8, 4, rs=3).to_dict(), target_programs=0)
    table = {"1024": [dict(K=4096, N=14336, config=TileConfig(64, 64, 64).to_dict(), target_programs=0,
                           rs=dict(rs)),
                      dict(K=4096, N=4096, config=TileConfig(64, 64, 64).to_dict(), target_programs=0)]}
    path = tmp_path / "tuned.json"
    path.write_text(json.dumps(table))
    tail = TileConfig(128, 64, 64, 1, 4, 4, rs=3)
    merge(path, 1024, 4096, 14336, tail, 200.0, 205.0)  # 2.4 % faster: kept out
    assert json.loads(path.read_text()) == table
    merge(path, 1024, 4096, 4096, tail, 100.0, 205.0)  # no rs tile to split: kept out
    assert json.loads(path.read_text()) == table
    merge(path, 1000, 4096, 14336, tail, 194.4, 205.2)  # M = 1000 is bucket 1024's
    got = json.loads(path.read_text())
    assert got["1024"][1] == table["1024"][1]
    cfg = config_of(got["1024"][0], 1024, 14336, 4096)
    assert cfg.gptq_rs.tail == tail and cfg.gptq_rs.block_m == 256 and cfg.tail is None
