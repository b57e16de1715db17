"""The tuned tile table (repack/kernels/tuned.py): pure Python, so it runs without a GPU."""

import json

import pytest

from repack.kernels import tuned
from repack.kernels.tuned import M_BUCKETS, TileConfig, bucket, pick_config


def test_every_shipped_entry_gives_a_launchable_tile():
    table = json.loads(tuned.TUNED_FILE.read_text())
    assert set(table) <= {str(b) for b in M_BUCKETS}
    for b, entries in table.items():
        for e in entries:
            cfg = pick_config(int(b), e["N"], e["K"])
            # M = 1 entries are GEMV_H2 tiles (8 columns and up, K steps up to 4096); the others tensor-core tiles
            assert cfg.block_n >= (8 if b == "1" else 64) and cfg.block_k >= 32, (b, e)
            assert cfg.num_warps in ((2, 4, 8) if b == "1" else (4, 8)), (b, e)
            assert all(v & (v - 1) == 0 for v in (cfg.block_n, cfg.block_k, cfg.num_warps)), (b, e)
            assert cfg.cluster in (1, 2, 4, 8), (b, e)
            # a cluster's K split is its size, whatever target_programs would give
            assert cfg.split_k == cfg.cluster if cfg.cluster > 1 else cfg.split_k >= 1, (b, e)


@pytest.fixture
def table(monkeypatch):
    """A small table in place of the shipped one (pick_config and the table are memoised)."""
    entries = {"16": [{"K": 4096, "N": 4096, "ms": 0.01, "target_programs": 264,
                       "config": {"block_m": 16, "block_n": 128, "block_k": 128, "split_k": 8, "num_warps": 4,
                                  "num_stages": 1, "cluster": 8}},
                      {"K": 8192, "N": 28672, "ms": 0.06, "target_programs": 1056,
                       "config": {"block_m": 16, "block_n": 128, "block_k": 128, "split_k": 5, "num_warps": 4,
                                  "num_stages": 1}}]}
    monkeypatch.setattr(tuned, "_table", lambda: entries)
    pick_config.cache_clear()
    yield entries
    pick_config.cache_clear()


def test_a_cluster_entry_splits_k_by_its_cluster(table):
    cfg = pick_config(16, 4096, 4096)
    assert (cfg.cluster, cfg.split_k) == (8, 8)
    # the nearest entry serves a nearby shape too, with the same cluster
    assert pick_config(9, 3072, 4096).cluster == 8


def test_an_entry_without_cluster_keeps_the_global_split(table):
    cfg = pick_config(16, 28672, 8192)
    assert cfg.cluster == 1
    # 224 column tiles of 128: 1056 programs aimed at gives a split of 5
    assert cfg.split_k == 5


def test_buckets_round_up():
    assert [bucket(m) for m in (1, 2, 3, 16, 17, 1000, 5000)] == [1, 2, 4, 16, 32, 1024, 1024]
    assert TileConfig(16, 128, 128).cluster == 1


def test_an_untuned_shape_takes_the_entry_nearest_in_both_dimensions(monkeypatch):
    """K and N are matched separately (log scale): a tall layer takes the tall entry even where a wide
    entry has the nearer product K·N (11008x4096 and 4096x11008 have the same product)."""
    def entry(K, N, block_n):
        return {"K": K, "N": N, "ms": 0.01, "target_programs": 0,
                "config": {"block_m": 1, "block_n": block_n, "block_k": 1024, "split_k": 1, "num_warps": 4,
                           "num_stages": 3}}
    entries = {"1": [entry(4096, 14336, 64), entry(14336, 4096, 32)]}
    monkeypatch.setattr(tuned, "_table", lambda: entries)
    pick_config.cache_clear()
    try:
        assert pick_config(1, 4096, 11008).block_n == 32  # K = 11008, N = 4096: the 14336x4096 entry
        assert pick_config(1, 11008, 4096).block_n == 64  # K = 4096, N = 11008: the 4096x14336 entry
        assert pick_config(1, 4096, 12288).block_n == 32
    finally:
        pick_config.cache_clear()


def test_an_entry_with_a_transposed_tile_keeps_its_own_tile_for_other_layouts(monkeypatch):
    """An entry's "rs" tile (gluon_rs, for 4-bit GPTQ-order layers) rides along as TileConfig.gptq_rs with its
    own K split, its "awq_rs" tile (gluon_rs on AutoAWQ words) as TileConfig.awq_rs; the entry's tile is unchanged
    (the other paths' tile)."""
    entries = {"256": [{"K": 4096, "N": 4096, "ms": 0.03, "target_programs": 0,
                        "config": {"block_m": 128, "block_n": 64, "block_k": 128, "split_k": 1, "num_warps": 4,
                                   "num_stages": 4},
                        "rs": {"target_programs": 384, "ms": 0.02,
                               "config": {"block_m": 128, "block_n": 64, "block_k": 64, "split_k": 3, "num_warps": 4,
                                          "num_stages": 4, "rs": 1}},
                        "awq_rs": {"target_programs": 0, "ms": 0.025,
                                   "config": {"block_m": 64, "block_n": 128, "block_k": 128, "split_k": 1,
                                              "num_warps": 4, "num_stages": 3, "rs": 3}}}]}
    monkeypatch.setattr(tuned, "_table", lambda: entries)
    pick_config.cache_clear()
    try:
        cfg = pick_config(256, 4096, 4096)
        assert (cfg.block_m, cfg.block_n, cfg.block_k, cfg.rs, cfg.split_k) == (128, 64, 128, 0, 1)
        # 2 x 64 tiles, 384 programs aimed at: a split of 3
        assert cfg.gptq_rs == TileConfig(128, 64, 64, 3, 4, 4, rs=1)
        assert pick_config(256, 4096, 4096).gptq_rs.gptq_rs is None
        # a tile written back to a table is its own "config"; the rs tile stays beside it
        assert "gptq_rs" not in cfg.to_dict() and cfg.gptq_rs.to_dict()["rs"] == 1
        # the AWQ slot rides along the same way, its own split (none: target 0)
        assert cfg.awq_rs == TileConfig(64, 128, 128, 1, 4, 3, rs=3) and cfg.gptq_rs.awq_rs is None
        assert "awq_rs" not in cfg.to_dict()
    finally:
        pick_config.cache_clear()
