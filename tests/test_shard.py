"""pytest --shard I/N (tests/conftest.py), which splits the GPU kernel suite over device calls: the shards of a
collection are disjoint and together are the whole of it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _collected(*extra: str) -> list[str]:
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "--co", "-p", "no:cacheprovider",
                          "tests/test_tuned.py", *extra], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    return [line for line in out.stdout.splitlines() if "::" in line]


def test_shards_split_the_collection_without_overlap():
    whole = _collected()
    shards = [_collected("--shard", f"{i}/3") for i in (1, 2, 3)]
    assert len(whole) >= 3 and all(shards)
    assert sorted(t for s in shards for t in s) == sorted(whole)


def test_a_shard_outside_one_to_n_is_refused():
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "--co", "tests/test_tuned.py", "--shard", "4/3"],
                         cwd=ROOT, capture_output=True, text=True)
    assert out.returncode != 0 and "I must be 1 to N" in out.stdout + out.stderr
