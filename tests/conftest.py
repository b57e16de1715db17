import hashlib
from pathlib import Path

import pytest
import torch

torch.manual_seed(0)


def tree_hash(path: Path) -> str:
    """Hash of every file name and byte under path: inputs must be identical after every run."""
    h = hashlib.sha256()
    for p in sorted(Path(path).rglob("*")):
        h.update(str(p.relative_to(path)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture
def hashed():
    """Register input folders; after the test, assert they are byte-identical."""
    seen: dict[Path, str] = {}

    def add(path):
        seen[Path(path)] = tree_hash(path)
        return path

    yield add
    for path, digest in seen.items():
        assert tree_hash(path) == digest, f"input {path} was modified"


def leftovers(parent: Path) -> list[str]:
    return [p.name for p in Path(parent).iterdir() if ".repack-" in p.name]


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache, offline: fill it with tests.test_hub.populate_cache."""
    cache = tmp_path / "hf-cache"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as c
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    return cache


def pytest_addoption(parser):
    parser.addoption("--shard", default=None, metavar="I/N",
                     help="run every N-th collected test from the I-th (1-based): the GPU suite split over device "
                          "calls of 10 minutes (benchmarks/gpu_session.sh)")


def pytest_collection_modifyitems(config, items):
    shard = config.getoption("--shard")
    if shard:
        i, n = (int(v) for v in shard.split("/"))
        if not 1 <= i <= n:
            raise pytest.UsageError(f"--shard {shard}: I must be 1 to N")
        # interleaved, so that each shard gets a share of every file's slow (compiling) tests
        config.hook.pytest_deselected(items=[item for k, item in enumerate(items) if k % n != i - 1])
        items[:] = [item for k, item in enumerate(items) if k % n == i - 1]
