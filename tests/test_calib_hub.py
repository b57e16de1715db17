"""--calib (and eval --text) from a Hugging Face dataset file, hf://datasets/ORG/NAME[@REV]/PATH,
resolved from a pre-populated offline cache (no network in tests); .jsonl and .parquet records."""

import json
import sys

import pytest
from click.testing import CliRunner

from cli.main import main
from repack.errors import InputError
from repack.evaluate import evaluate
from repack.quantize.corpus import read_corpus
from repack.quantize.driver import quantize
from repack.synthetic import write_float_model
from tests.test_hub import populate_cache

RECORDS = [f"record {i}: the river runs over the stone and the light falls" for i in range(40)]
SMALL = dict(method="awq", bits=4, group_size=64, sym=False, nsamples=2, seqlen=16)


@pytest.fixture
def hub(tmp_path, offline_cache):
    repo = tmp_path / "repo"
    (repo / "data").mkdir(parents=True)
    (repo / "data" / "train.txt").write_text("\n\n".join(RECORDS))
    (repo / "data" / "train.jsonl").write_text("".join(json.dumps({"text": t, "id": i}) + "\n" for i, t in enumerate(RECORDS)))
    (repo / "bad.jsonl").write_text(json.dumps({"text": "fine"}) + "\n" + json.dumps({"body": "no text"}) + "\n")
    populate_cache(offline_cache, "acme/corpus", repo, repo_type="dataset")
    other = tmp_path / "v2"
    (other / "data").mkdir(parents=True)
    (other / "data" / "train.txt").write_text("version two " * 200)
    populate_cache(offline_cache, "acme/corpus", other, "v2", "f" * 40, repo_type="dataset")
    local = tmp_path / "local.txt"
    local.write_text("\n\n".join(RECORDS))
    return local


def test_a_hub_text_file_calibrates_as_the_same_local_file(tmp_path, hub):
    model = write_float_model(tmp_path / "float")
    a = quantize(model, tmp_path / "hub", calib="hf://datasets/acme/corpus/data/train.txt", **SMALL)
    quantize(model, tmp_path / "local", calib=str(hub), **SMALL)
    quantize(model, tmp_path / "jsonl", calib="hf://datasets/acme/corpus/data/train.jsonl", **SMALL)
    data = {k: (tmp_path / k / "model.safetensors").read_bytes() for k in ("hub", "local", "jsonl")}
    assert data["hub"] == data["local"] == data["jsonl"]
    assert a.calib == "hf://datasets/acme/corpus/data/train.txt"
    quantize(model, tmp_path / "rev2", calib="hf://datasets/acme/corpus@v2/data/train.txt", **SMALL)
    assert (tmp_path / "rev2" / "model.safetensors").read_bytes() != data["hub"]
    hub_ppl = evaluate(model, "hf://datasets/acme/corpus/data/train.txt", seqlen=32).perplexity
    assert hub_ppl == evaluate(model, hub, seqlen=32).perplexity


def test_jsonl_records_are_their_text_fields(hub):
    assert read_corpus("hf://datasets/acme/corpus/data/train.jsonl") == hub.read_text()
    with pytest.raises(InputError, match="line 2 has no string field 'text'"):
        read_corpus("hf://datasets/acme/corpus/bad.jsonl")
    (hub.parent / "broken.jsonl").write_text('{"text": "a"}\n{"text": \n')
    with pytest.raises(InputError, match="line 2 is not JSON"):
        read_corpus(hub.parent / "broken.jsonl")


@pytest.mark.parametrize("ref,words", [
    ("hf://datasets/acme/nope/train.txt", "not in the local Hugging Face cache"),
    ("hf://datasets/acme/corpus/data/missing.txt", "not in the local Hugging Face cache"),
    ("hf://datasets/acme/corpus@v9/data/train.txt", "not in the local Hugging Face cache"),
    ("hf://datasets/acme/corpus", "hf://datasets/ORG/NAME/PATH"),
    ("hf://models/acme/corpus/x.txt", "hf://datasets/ORG/NAME/PATH"),
])
def test_missing_hub_files_are_one_line(tmp_path, hub, ref, words):
    model = write_float_model(tmp_path / "float")
    r = CliRunner().invoke(main, ["quantize", str(model), str(tmp_path / "out"), "--method", "rtn", "--calib", ref,
                                  "--nsamples", "2", "--seqlen", "8"])
    assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.output, r.output
    assert words in r.stderr and ref in r.stderr
    assert not (tmp_path / "out").exists()


def test_parquet_without_pyarrow_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow fails, installed or not
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    (tmp_path / "t.parquet").write_bytes(b"PAR1")
    with pytest.raises(InputError, match=r"t.parquet: reading Parquet needs pyarrow \(pip install pyarrow\)"):
        read_corpus(tmp_path / "t.parquet")


def test_parquet_text_column(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq
    pq.write_table(pa.table({"id": list(range(3)), "text": ["one", "two", "three"]}), tmp_path / "t.parquet")
    assert read_corpus(tmp_path / "t.parquet") == "one\n\ntwo\n\nthree"
    pq.write_table(pa.table({"body": ["x"]}), tmp_path / "u.parquet")
    with pytest.raises(InputError, match="no column 'text'"):
        read_corpus(tmp_path / "u.parquet")
