"""A Hugging Face repo id as the source, from a pre-populated offline cache (no network in tests)."""

import hashlib
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import main
from fixtures.checkpoints import random_model, write_gptq
from repack.convert import convert
from repack.errors import InputError
from repack.source import open_source
from repack.verify import verify

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def populate_cache(cache: Path, repo: str, folder: Path, revision: str = "main", commit: str = COMMIT,
                   repo_type: str = "model") -> Path:
    """The hub cache layout huggingface_hub documents: blobs by content hash, snapshot files (in
    their folders) as relative symlinks to them, refs/<revision> holding the commit."""
    repo_dir = cache / f"{repo_type}s--{repo.replace('/', '--')}"
    (repo_dir / "blobs").mkdir(parents=True, exist_ok=True)
    snap = repo_dir / "snapshots" / commit
    snap.mkdir(parents=True, exist_ok=True)
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = f.read_bytes()
        blob = repo_dir / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        link = snap / f.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(blob, link.parent), link)
    (repo_dir / "refs").mkdir(exist_ok=True)
    (repo_dir / "refs" / revision).write_text(commit)
    return snap


def test_repo_id_resolves_from_offline_cache(tmp_path, offline_cache):
    layers = random_model(seed=95)
    local = write_gptq(tmp_path / "local", layers, "v1")
    populate_cache(offline_cache, "acme/tiny-gptq", local)
    source = open_source("acme/tiny-gptq")
    assert source.detection.format == "auto_gptq" and len(source.modules()) == 14
    plan = convert("acme/tiny-gptq", tmp_path / "awq", "auto_awq")
    assert plan.exact
    assert verify(local, tmp_path / "awq", ms=(1,)).ok
    assert (tmp_path / "awq" / "tokenizer.json").exists()  # side files come through the cache links


def test_revision_selects_a_snapshot(tmp_path, offline_cache):
    a = write_gptq(tmp_path / "a", random_model(seed=96), "v1")
    b = write_gptq(tmp_path / "b", random_model(seed=97, group_size=32), "v1")
    populate_cache(offline_cache, "acme/m", a, "main", COMMIT)
    populate_cache(offline_cache, "acme/m", b, "v2", "f" * 40)
    assert open_source("acme/m").read("model.layers.0.mlp.up_proj").group_size == 64
    assert open_source("acme/m@v2").read("model.layers.0.mlp.up_proj").group_size == 32


def test_missing_repo_or_revision_is_one_line(tmp_path, offline_cache):
    populate_cache(offline_cache, "acme/m", write_gptq(tmp_path / "a", random_model(seed=98), "v1"))
    for src in ("acme/nope", "acme/m@nope"):
        with pytest.raises(InputError, match="not in the local Hugging Face cache"):
            open_source(src)
        r = CliRunner().invoke(main, ["inspect", src])
        assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.output


def test_a_local_folder_wins_over_a_repo_id(tmp_path, monkeypatch, offline_cache):
    monkeypatch.chdir(tmp_path)
    write_gptq(tmp_path / "acme" / "local", random_model(seed=99), "v1")
    assert open_source("acme/local").detection.format == "auto_gptq"


def test_links_leaving_the_cache_repo_are_still_refused(tmp_path, offline_cache):
    local = write_gptq(tmp_path / "local", random_model(seed=100), "v1")
    snap = populate_cache(offline_cache, "acme/evil", local)
    outside = tmp_path / "outside.safetensors"
    shutil.copy(local / "model.safetensors", outside)
    (snap / "model.safetensors").unlink()
    os.symlink(outside, snap / "model.safetensors")
    with pytest.raises(InputError, match="symlink leaves the model folder"):
        open_source("acme/evil")


class FakeApi:
    calls: list = []
    fail = False

    def create_repo(self, repo, **kw):
        FakeApi.calls.append(("create", repo, kw))
        return f"https://huggingface.co/{repo}"

    def upload_folder(self, **kw):
        if FakeApi.fail:
            raise RuntimeError("401 Client Error: Unauthorized\nmore detail")
        FakeApi.calls.append(("upload", kw["repo_id"], sorted(p.name for p in Path(kw["folder_path"]).iterdir())))


def test_push_to_hub_uploads_the_finished_folder(tmp_path, monkeypatch):
    import huggingface_hub
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    FakeApi.calls, FakeApi.fail = [], False
    src = write_gptq(tmp_path / "src", random_model(seed=101), "v1")
    r = CliRunner().invoke(main, ["convert", str(src), str(tmp_path / "out"), "--to", "auto_awq", "--push-to-hub", "me/tiny-awq"])
    assert r.exit_code == 0, r.output
    assert "uploaded to https://huggingface.co/me/tiny-awq" in r.output
    assert FakeApi.calls[0][:2] == ("create", "me/tiny-awq")
    assert FakeApi.calls[1][0] == "upload" and "model.safetensors" in FakeApi.calls[1][2] and "config.json" in FakeApi.calls[1][2]
    FakeApi.fail = True
    r = CliRunner().invoke(main, ["convert", str(src), str(tmp_path / "out2"), "--to", "auto_awq", "--push-to-hub", "me/x"])
    assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "upload failed (RuntimeError: 401 Client Error: Unauthorized)" in r.stderr and "kept at" in r.stderr
    assert (tmp_path / "out2" / "model.safetensors").exists()


def test_quantize_pushes_too_and_refuses_a_bad_repo_id_first(tmp_path, monkeypatch):
    import huggingface_hub

    from repack.synthetic import llama_config, write_float_model
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    FakeApi.calls, FakeApi.fail = [], False
    float_dir = write_float_model(tmp_path / "float", llama_config(layers=1))
    args = ["quantize", str(float_dir), str(tmp_path / "q"), "--method", "rtn", "--nsamples", "2", "--seqlen", "16"]
    r = CliRunner().invoke(main, args + ["--push-to-hub", "not a repo"])
    assert r.exit_code == 2 and "not a repo id" in r.output and not (tmp_path / "q").exists()
    assert FakeApi.calls == []
    r = CliRunner().invoke(main, args + ["--push-to-hub", "me/tiny-rtn"])
    assert r.exit_code == 0 and "uploaded to https://huggingface.co/me/tiny-rtn" in r.output, r.output
    assert FakeApi.calls[1][0] == "upload" and "model.safetensors" in FakeApi.calls[1][2]
