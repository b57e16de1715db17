"""Killing a conversion at any moment, a full disk and two writers of one target lose nothing:
no partial target, the source byte-identical, and the next run cleans up after the dead one."""

import random
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fixtures.checkpoints import llama_shapes, random_model, write_gptq
from repack.checkpoint import _lock_target
from repack.convert import convert
from repack.errors import OutputError
from repack.verify import verify
from tests.conftest import leftovers, tree_hash

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-c", "from cli.main import main; main()"]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """Big enough that a conversion spends a while writing (many small shards)."""
    shapes = llama_shapes(hidden=512, inter=1024, kv=256, layers=3)
    return write_gptq(tmp_path_factory.mktemp("crash") / "src", random_model(seed=80, shapes=shapes), "v1")


def convert_cmd(src, dst, *extra):
    return CLI + ["convert", str(src), str(dst), "--to", "auto_awq", "--shard-size", "100KB", "--quiet", *extra]


def test_kill_at_random_moments(source, tmp_path):
    digest = tree_hash(source)
    t0 = time.time()
    subprocess.run(convert_cmd(source, tmp_path / "timing"), cwd=ROOT, check=True, capture_output=True)
    full = time.time() - t0
    rng = random.Random()
    for i in range(6):
        dst = tmp_path / f"out{i}"
        proc = subprocess.Popen(convert_cmd(source, dst), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        delay = rng.uniform(0.2, full)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if dst.exists():  # killed after the final rename: the output is complete
            assert verify(source, dst, ms=(1,)).ok
        assert tree_hash(source) == digest
        # the next run into the same target cleans the dead run's temporary folder and succeeds
        r = subprocess.run(convert_cmd(source, dst, "--force"), cwd=ROOT, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert not leftovers(tmp_path), (delay, leftovers(tmp_path))
        assert verify(source, dst, ms=(1,)).ok


def _children(pid: int) -> list[int]:
    kids = []
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and f"PPid:\t{pid}\n" in (d / "status").read_text():
                kids.append(int(d.name))
        except OSError:
            pass
    return kids


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the process table from /proc")
def test_write_processes_die_with_a_killed_parent(source, tmp_path):
    """SIGKILL of the parent during the forked write pass: its workers end too (an orphan would
    hold the output's lock and keep writing), and the next run into the target succeeds."""
    dst = tmp_path / "out"
    proc = subprocess.Popen(convert_cmd(source, dst), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, kids = time.time() + 60, []
    while len(kids) < 2 and proc.poll() is None and time.time() < deadline:
        kids = _children(proc.pid)
        time.sleep(0.005)
    assert len(kids) >= 2, "the write pass never started its processes"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 10
    while any(Path(f"/proc/{k}").exists() and "State:\tZ" not in _status(k) for k in kids) and time.time() < deadline:
        time.sleep(0.05)
    assert not any(Path(f"/proc/{k}").exists() and "State:\tZ" not in _status(k) for k in kids), "orphaned write processes"
    r = subprocess.run(convert_cmd(source, dst, "--force"), cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert not leftovers(tmp_path)


def _status(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "status").read_text()
    except OSError:
        return ""


def _limit_file_size():
    resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, 60_000))  # a "disk" that fills at 60 kB per file
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def test_full_disk_is_one_line_and_leaves_nothing(source, tmp_path):
    digest = tree_hash(source)
    r = subprocess.run(convert_cmd(source, tmp_path / "out"), cwd=ROOT, capture_output=True, text=True,
                       preexec_fn=_limit_file_size)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "writing failed: File too large; nothing was written" in lines[0], r.stderr
    assert not (tmp_path / "out").exists() and not leftovers(tmp_path)
    assert tree_hash(source) == digest


def test_a_second_writer_of_the_same_target_is_refused(source, tmp_path):
    target = tmp_path / "out"
    held = _lock_target(target)  # another process is writing it
    try:
        with pytest.raises(OutputError, match="another repack process is writing this output"):
            convert(source, target, "auto_awq", force=True)
    finally:
        held.close()
    assert not target.exists()
    assert convert(source, target, "auto_awq").exact


def test_two_concurrent_conversions_cannot_both_succeed(source, tmp_path):
    dst = tmp_path / "out"
    procs = [subprocess.Popen(convert_cmd(source, dst), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    results = [(p.wait(), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    loser = next(err for code, err in results if code == 2)
    assert "already exists" in loser or "another repack process" in loser
    assert verify(source, dst, ms=(1,)).ok and not leftovers(tmp_path)
