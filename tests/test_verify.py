"""repack verify on the CPU (reference backend): equal pairs pass, one changed element fails and is named.

Both sides of each pair are written independently by the reference packers from the same
integers (never one converted from the other by the code under test), then one element of one
layer is changed on one side."""

import copy
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cli.main import main
from fixtures.checkpoints import random_model, write_awq, write_folder, write_gptq
from repack.errors import InputError
from repack.kernels import triton_available
from repack.verify import verify

ROOT = Path(__file__).resolve().parents[1]
LAYER = "model.layers.1.mlp.up_proj"


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def layers():
    return random_model(seed=31, bits=4, group_size=32)


@pytest.fixture
def pair(tmp_path, layers, hashed):
    return (hashed(write_gptq(tmp_path / "gptq", layers, "v1")), hashed(write_awq(tmp_path / "awq", layers, "gemm")))


def test_gptq_and_awq_of_the_same_quantization_agree(pair):
    report = verify(*pair, backend="reference")
    assert report.ok, report.verdict()
    assert len(report.layers) == 14 and all(l.integers_equal and l.weight_max_abs == 0 for l in report.layers)
    assert [g.m for g in report.layers[0].gemm] == [1, 16, 128]
    assert report.tensors_compared == 7 and not report.tensors_differing


def test_cli_exit_zero_and_json(pair):
    r = run("verify", *pair, "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    auto = "triton" if triton_available() else "reference"  # what --backend auto resolves to here
    assert data["ok"] and data["backend"] == auto and data["a_format"] == "auto_gptq/v1"
    assert data["b_format"] == "auto_awq/gemm"


def changed(layers, what: str):
    out = copy.deepcopy(layers)
    L = out[LAYER]
    if what == "nibble":
        L.q[5, 3] = (L.q[5, 3] + 1) % 16
    elif what == "scale":
        L.s[1, 2] = np.float16(float(L.s[1, 2]) * 1.5)
    return out


@pytest.mark.parametrize("what", ["nibble", "scale"])
def test_one_changed_element_fails_and_names_the_layer(tmp_path, layers, what, hashed):
    a = hashed(write_gptq(tmp_path / "gptq", layers, "v1"))
    b = hashed(write_awq(tmp_path / "awq", changed(layers, what), "gemm"))
    report = verify(a, b, backend="reference")
    assert not report.ok
    bad = [l for l in report.layers if not l.ok]
    assert [l.module for l in bad] == [LAYER]
    key = {"nibble": "codes", "scale": "scales"}[what]
    assert bad[0].differing[key] == 1 and sum(bad[0].differing.values()) == 1
    assert bad[0].weight_max_abs > 0
    r = run("verify", a, b)
    assert r.exit_code == 1
    assert f"MISMATCH: layer '{LAYER}'" in r.output.splitlines()[-1]


def test_one_changed_g_idx_entry_fails(tmp_path, hashed):
    layers = random_model(seed=32, bits=4, group_size=32, act_order=True)
    other = copy.deepcopy(layers)
    g = other[LAYER].g_idx
    g[7] = (g[7] + 1) % (g.max() + 1)
    a = hashed(write_gptq(tmp_path / "v1", layers, "v1", act_order=True))
    b = hashed(write_gptq(tmp_path / "v2", other, "v2", act_order=True))
    report = verify(a, b, backend="reference")
    bad = [l for l in report.layers if not l.ok]
    assert [l.module for l in bad] == [LAYER]
    assert bad[0].differing == {"codes": 0, "scales": 0, "zeros": 0, "groups": 1}
    assert verify(a, write_gptq(tmp_path / "same", layers, "v2", act_order=True), backend="reference").ok


def test_changed_passthrough_tensor_fails(tmp_path, layers):
    from safetensors.torch import load_file
    a = write_gptq(tmp_path / "a", layers, "v1")
    tensors = load_file(str(a / "model.safetensors"))
    tensors["model.norm.weight"] = tensors["model.norm.weight"].clone()
    tensors["model.norm.weight"][0] += 1
    b = write_folder(tmp_path / "b", tensors, json.loads((a / "config.json").read_text()))
    report = verify(a, b, backend="reference")
    assert report.failures == ["tensor 'model.norm.weight' differs"]


def test_against_float_reports_sqnr(tmp_path, pair, layers):
    from repack.convert import convert
    dense = tmp_path / "dense"
    convert(pair[0], dense, "dense", "fp32")
    report = verify(*pair, against=dense, backend="reference", ms=(1,))
    assert report.ok
    for l in report.layers:  # the dense model is the dequantized weight itself: zero error
        assert l.against_a.rel == 0 and l.against_b.rel == 0 and l.against_a.sqnr_db == float("inf")
    r = run("verify", *pair, "--against", dense, "--m", "1")
    assert r.exit_code == 0 and "SQNR A" in r.output


def test_weight_tolerance_accepts_a_lossy_pair(tmp_path, layers):
    a = write_gptq(tmp_path / "gptq", layers, "v1")
    b = write_awq(tmp_path / "awq", changed(layers, "nibble"), "gemm")
    w = verify(a, b, backend="reference").layers
    worst = max(l.weight_max_abs for l in w)
    assert verify(a, b, backend="reference", weight_atol=worst, rtol=1e-2).ok


def test_float_model_as_a_side_is_one_line(tmp_path, pair):
    from repack.convert import convert
    convert(pair[0], tmp_path / "dense", "dense")
    r = run("verify", pair[0], tmp_path / "dense")
    assert r.exit_code == 2 and "has no quantized layers" in r.output and "Traceback" not in r.output
    with pytest.raises(InputError):
        verify(pair[0], tmp_path / "dense")


def test_cpu_verify_never_imports_triton(pair):
    code = ("import sys; from repack.verify import verify; "
            f"r = verify({str(pair[0])!r}, {str(pair[1])!r}, ms=(1,)); "
            "assert r.ok and r.backend == 'reference'; assert 'triton' not in sys.modules, 'triton imported'")
    env = {"CUDA_VISIBLE_DEVICES": "", "PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env=env)
