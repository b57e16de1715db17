"""The command line: each command works, and every kind of bad input gets one line, a non-zero
exit, no traceback, no output folder, and an untouched input."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import main
from fixtures.checkpoints import random_model, set_index_entry, write_gptq
from tests.conftest import leftovers, tree_hash

ROOT = Path(__file__).resolve().parents[1]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def gptq(tmp_path):
    return write_gptq(tmp_path / "gptq", random_model(seed=21), "v1")


def test_formats_lists_every_format():
    r = run("formats", "--json")
    assert r.exit_code == 0
    names = {f["name"]: f["variants"] for f in json.loads(r.stdout)}
    assert names["auto_gptq"] == ["v1", "v2"] and names["auto_awq"] == ["gemm", "gemv"] and "dense" in names


def test_inspect(gptq):
    r = run("inspect", gptq, "--json")
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert (info["format"], info["variant"], info["bits"], info["group_size"], info["sym"], info["act_order"]) == \
        ("auto_gptq", "v1", 4, 64, False, False)
    assert info["quantized_layers"] == 14 and info["scale_dtype"] == "fp16"
    assert info["targets"]["auto_awq/gemm"] == "exact" and info["targets"]["dense/auto"] == "exact"
    text = run("inspect", gptq)
    assert text.exit_code == 0 and "model.layers.1.mlp.down_proj" in text.stdout and "auto_awq/gemv" in text.stdout


def test_inspect_says_when_config_and_data_disagree(tmp_path):
    src = write_gptq(tmp_path / "g", random_model(seed=2, sym=True), "v2", sym=True, label="gptq")
    info = json.loads(run("inspect", src, "--json").stdout)
    assert info["variant"] == "v2"
    assert any("config says checkpoint_format 'gptq' (v1) but the stored zeros are v2" in n for n in info["notes"])


def test_convert_and_dry_run(gptq, tmp_path):
    r = run("convert", gptq, tmp_path / "awq", "--to", "auto_awq", "--json")
    assert r.exit_code == 0, r.output
    plan = json.loads(r.stdout)
    assert plan["exact"] and plan["written"] and plan["target_variant"] == "gemm"
    r = run("convert", gptq, tmp_path / "dry", "--to", "auto_gptq", "--variant", "v2", "--dry-run")
    assert r.exit_code == 0 and "would write" in r.stdout and "model.layers.0.mlp.up_proj" in r.stdout
    assert not (tmp_path / "dry").exists()


def test_lossy_refusal_prints_table(tmp_path):
    src = write_gptq(tmp_path / "src", random_model(seed=3, group_size=32, act_order=True), "v1", act_order=True)
    r = run("convert", src, tmp_path / "out", "--to", "auto_awq")
    assert r.exit_code == 3 and "cannot be written exactly" in r.stderr and "--allow-lossy" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()
    r = run("convert", src, tmp_path / "out", "--to", "auto_awq", "--dry-run")
    assert r.exit_code == 0 and "lossy" in r.stdout and "act-order" in r.stdout
    r = run("convert", src, tmp_path / "out", "--to", "auto_awq", "--allow-lossy")
    assert r.exit_code == 0 and (tmp_path / "out" / "config.json").exists()


def test_demo():
    r = run("demo", "--json")
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    seen = {(x["format"], x["variant"]) for x in rows}
    assert {("auto_gptq", "v1"), ("auto_gptq", "v2"), ("auto_awq", "gemm"), ("auto_awq", "gemv"), ("dense", "auto")} <= seen
    assert all(x["exact"] and x["max_abs_diff"] == 0 and x["bytes"] > 0 for x in rows)


# -- bad input ------------------------------------------------------------------------------------
def _sharded(tmp_path):
    return write_gptq(tmp_path / "src", random_model(seed=4), "v1", shards=2)


def _set_quant_config(src, key, value):
    config = json.loads((src / "config.json").read_text())
    config["quantization_config"][key] = value
    (src / "config.json").write_text(json.dumps(config))


def missing_shard(tmp_path):
    src = _sharded(tmp_path)
    (src / "model-00002-of-00002.safetensors").unlink()
    return src, "model-00002-of-00002.safetensors: missing shard"


def truncated_shard(tmp_path):
    src = _sharded(tmp_path)
    f = src / "model-00001-of-00002.safetensors"
    f.write_bytes(f.read_bytes()[:-100])
    return src, "model-00001-of-00002.safetensors: truncated"


def corrupted_header(tmp_path):
    src = write_gptq(tmp_path / "src", random_model(seed=4), "v1")
    f = src / "model.safetensors"
    data = bytearray(f.read_bytes())
    data[8:20] = b"!!garbage!!!"
    f.write_bytes(bytes(data))
    return src, "model.safetensors: corrupted safetensors header"


def huge_header_length(tmp_path):
    src = write_gptq(tmp_path / "src", random_model(seed=4), "v1")
    f = src / "model.safetensors"
    f.write_bytes((2**40).to_bytes(8, "little") + f.read_bytes()[8:])
    return src, "declares 1099511627776 header bytes"


def index_names_missing_tensor(tmp_path):
    src = _sharded(tmp_path)
    set_index_entry(src, "model.layers.9.mlp.up_proj.qweight", "model-00001-of-00002.safetensors")
    return src, "tensor 'model.layers.9.mlp.up_proj.qweight': listed in model.safetensors.index.json but not in the file"


def index_path_traversal(tmp_path):
    src = _sharded(tmp_path)
    set_index_entry(src, "model.norm.weight", "../outside.safetensors")
    return src, "is not a plain file name inside the folder"


def group_size_contradicts_config(tmp_path):
    src = write_gptq(tmp_path / "src", random_model(seed=4, group_size=64), "v1")
    _set_quant_config(src, "group_size", 32)
    return src, "contradicts group_size 32"


def bits_contradict_config(tmp_path):
    src = write_gptq(tmp_path / "src", random_model(seed=4), "v1")
    _set_quant_config(src, "bits", 8)
    return src, "config says 8-bit but the shape is 4-bit"


def missing_config(tmp_path):
    src = write_gptq(tmp_path / "src", random_model(seed=4), "v1")
    (src / "config.json").unlink()
    return src, "config.json: missing"


def unknown_quant_method(tmp_path):
    src = write_gptq(tmp_path / "src", random_model(seed=4), "v1")
    for f in src.glob("*.safetensors"):
        f.unlink()
    from safetensors.torch import save_file
    import torch
    save_file({"model.layers.0.mlp.up_proj.weight": torch.zeros(4, 4, dtype=torch.uint8)}, str(src / "model.safetensors"))
    config = json.loads((src / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "bitsandbytes"}
    (src / "config.json").write_text(json.dumps(config))
    return src, "unknown quant_method 'bitsandbytes'"


def no_such_folder(tmp_path):
    return tmp_path / "nope", "nope: no such file or folder"


BAD = [missing_shard, truncated_shard, corrupted_header, huge_header_length, index_names_missing_tensor,
       index_path_traversal, group_size_contradicts_config, bits_contradict_config, missing_config,
       unknown_quant_method, no_such_folder]


@pytest.mark.parametrize("make", BAD, ids=[f.__name__ for f in BAD])
@pytest.mark.parametrize("command", ["convert", "inspect"])
def test_bad_input_one_line(tmp_path, make, command):
    src, message = make(tmp_path)
    before = tree_hash(src) if src.exists() else None
    args = ["convert", src, tmp_path / "out", "--to", "auto_awq"] if command == "convert" else ["inspect", src]
    r = run(*args)
    assert r.exit_code != 0 and r.exit_code != 70, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("repack: error: ") and message in lines[0], r.stderr
    assert "Traceback" not in r.output
    assert not (tmp_path / "out").exists() and not leftovers(tmp_path)
    if before is not None:
        assert tree_hash(src) == before


def test_unknown_target_format(gptq, tmp_path):
    r = run("convert", gptq, tmp_path / "out", "--to", "nope")
    assert r.exit_code == 2
    assert r.stderr.strip() == "repack: error: unknown format 'nope'; known formats: auto_awq, auto_gptq, auto_round, compressed_tensors, dense, gguf, marlin, turbomind"
    r = run("convert", gptq, tmp_path / "out", "--to", "auto_awq", "--variant", "exllama")
    assert "has no variant 'exllama'; its variants: gemm, gemv" in r.stderr
    assert not (tmp_path / "out").exists()


def test_indivisible_dims_one_line(tmp_path):
    src = write_gptq(tmp_path / "src", random_model(seed=1, shapes={"model.layers.0.mlp.down_proj": (96, 64)}), "v1")
    r = run("convert", src, tmp_path / "out", "--to", "auto_awq")
    assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "'model.layers.0.mlp.down_proj'" in r.stderr and "not a multiple of group_size 64" in r.stderr


def test_real_process_has_no_traceback(tmp_path):
    src, message = truncated_shard(tmp_path)
    p = subprocess.run([sys.executable, "-m", "cli.main", "convert", str(src), str(tmp_path / "out"), "--to", "auto_awq"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.count("\n") == 1 and message in p.stderr and "Traceback" not in p.stderr
