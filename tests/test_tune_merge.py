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
