"""inspect --target: each engine's rules pass and fail on small checkpoints, the proposed fix is
a real exact conversion (run it, re-inspect, it loads), and the CLI exit codes and JSON."""

import json
import shlex

import pytest
from click.testing import CliRunner

from cli.main import main
from repack import formats
from repack.formats.base import Capabilities, any_shape, full_zero_range
from repack.targets import Profile, check, inspect_targets
from fixtures.checkpoints import (random_model, write_auto_round, write_awq, write_compressed,
                                  write_gptq)

Q, O, DOWN = "model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.o_proj", "model.layers.0.mlp.down_proj"


def report(path, engine):
    _, (r,) = inspect_targets(str(path), [engine])
    return r


def modules(r, rule):
    return {f.module for f in r.failures if f.rule == rule}


def apply_fix(r, tmp_path):
    """Run the proposed command (with OUT under tmp_path) and return the output folder."""
    args = shlex.split(r.fix)
    assert args[:2] == ["repack", "convert"] and "--allow-lossy" not in args
    args[3] = str(tmp_path / "fixed")
    res = CliRunner().invoke(main, args[1:])
    assert res.exit_code == 0, res.output
    return tmp_path / "fixed"


def assert_fixed(r, tmp_path, engine, kernel):
    fixed = report(apply_fix(r, tmp_path), engine)
    assert fixed.loads and fixed.kernel == kernel, fixed.to_dict()


def gptq(tmp_path, variant="v1", name="g", **kw):
    sym, act = kw.pop("sym", False), kw.pop("act_order", False)
    label = kw.pop("label", None)
    return write_gptq(tmp_path / name, random_model(seed=3, sym=sym, act_order=act, **kw), variant, sym=sym,
                      act_order=act, label=label)


# -- vLLM -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("bits", [4, 8])
def test_vllm_symmetric_gptq_gets_marlin(tmp_path, bits):
    r = report(gptq(tmp_path, sym=True, bits=bits, group_size=128), "vllm")
    assert r.loads and r.kernel == "gptq_marlin" and r.fix is None


def test_vllm_act_order_is_fine_for_marlin(tmp_path):
    r = report(gptq(tmp_path, sym=True, act_order=True, group_size=64), "vllm")
    assert r.loads and r.kernel == "gptq_marlin"


def test_vllm_marlin_needs_desc_act_stated(tmp_path):
    src = gptq(tmp_path, sym=True, group_size=128)
    config = json.loads((src / "config.json").read_text())
    del config["quantization_config"]["desc_act"]
    (src / "config.json").write_text(json.dumps(config))
    (src / "quantize_config.json").unlink(missing_ok=True)
    r = report(src, "vllm")
    assert r.loads and r.kernel == "gptq"


def test_vllm_asymmetric_gptq_runs_the_gptq_method(tmp_path):
    r = report(gptq(tmp_path, sym=False, group_size=32), "vllm")
    assert r.loads and r.kernel == "gptq"


def test_vllm_marlin_shape_falls_back_to_exllama_per_module(tmp_path):
    src = gptq(tmp_path, sym=True, group_size=64, shapes={Q: (128, 128), DOWN: (256, 128), O: (128, 96)})
    r = report(src, "vllm")
    assert r.loads and r.kernel == "gptq_marlin (exllama: 1 module)"
    assert any(O in n and "multiple of 64" in n for n in r.notes)


def test_vllm_marlin_shape_without_fallback_fails_and_awq_fixes_it(tmp_path):
    src = gptq(tmp_path, sym=True, group_size=-1, shapes={Q: (128, 128), O: (128, 96)})
    r = report(src, "vllm")
    assert not r.loads and modules(r, "marlin-shape") == {O}
    assert "channelwise" in r.failures[0].reason
    assert r.fix.endswith("--to auto_awq --variant gemm")
    assert_fixed(r, tmp_path, "vllm", "awq")


def test_vllm_sym_label_over_asymmetric_zeros_fails(tmp_path):
    src = write_gptq(tmp_path / "g", random_model(seed=4, sym=False, group_size=128), "v1", sym=True)
    r = report(src, "vllm")
    assert not r.loads and len(modules(r, "marlin-sym-label")) == 14
    assert r.fix.endswith("--to auto_gptq --variant v1")  # rewriting the config is enough
    assert_fixed(r, tmp_path, "vllm", "gptq")


def test_vllm_zero_convention_on_the_gptq_method(tmp_path):
    # 2-bit takes the plain gptq method, which uses the zeros; v2 zeros under a v1 label
    src = gptq(tmp_path, "v2", sym=True, bits=2, group_size=64, label="gptq")
    r = report(src, "vllm")
    assert not r.loads and len(modules(r, "gptq-zero-convention")) == 14
    assert r.fix.endswith("--to auto_gptq --variant v1")
    assert_fixed(r, tmp_path, "vllm", "gptq")


def test_vllm_awq(tmp_path):
    r = report(write_awq(tmp_path / "a", random_model(seed=5, group_size=128)), "vllm")
    assert r.loads and r.kernel == "awq_marlin"
    r = report(write_awq(tmp_path / "s", random_model(seed=5, group_size=128, sym=True), sym=True), "vllm")
    assert r.loads and r.kernel == "awq"  # zero_point false: no AWQ-Marlin type without zero points
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    del config["quantization_config"]["zero_point"]
    (tmp_path / "a" / "config.json").write_text(json.dumps(config))
    assert report(tmp_path / "a", "vllm").kernel == "awq"


def test_vllm_awq_gemv_fails_and_gemm_fixes_it(tmp_path):
    r = report(write_awq(tmp_path / "a", random_model(seed=6, group_size=64), "gemv"), "vllm")
    assert not r.loads and [f.rule for f in r.failures] == ["awq-layout"]
    assert r.fix.endswith("--to auto_awq --variant gemm")
    assert_fixed(r, tmp_path, "vllm", "awq_marlin")


@pytest.mark.parametrize("variant", ["gptqmodel", "native"])
def test_vllm_auto_round_packing(tmp_path, variant):
    ok = report(write_auto_round(tmp_path / "ok", random_model(seed=7, sym=True, group_size=128), "gptq", sym=True), "vllm")
    assert ok.loads and ok.kernel == "gptq_marlin"
    r = report(write_auto_round(tmp_path / "r", random_model(seed=7, sym=True, group_size=128), variant, sym=True), "vllm")
    assert not r.loads and [f.rule for f in r.failures] == ["auto-round-packing"]
    assert r.fix.endswith("--to auto_round --variant gptq")
    assert_fixed(r, tmp_path, "vllm", "gptq_marlin")


def test_vllm_compressed_tensors(tmp_path):
    r = report(write_compressed(tmp_path / "c", random_model(seed=8, sym=True, group_size=128), sym=True), "vllm")
    assert r.loads and r.kernel == "compressed-tensors WNA16 marlin"
    r = report(write_compressed(tmp_path / "z", random_model(seed=8, group_size=64)), "vllm")
    assert r.loads and r.kernel == "compressed-tensors WNA16 marlin"  # 4-bit zero points: uint4


def test_vllm_compressed_tensors_2bit_fails_and_gptq_fixes_it(tmp_path):
    src = write_compressed(tmp_path / "c", random_model(seed=9, sym=True, bits=2, group_size=64), sym=True)
    r = report(src, "vllm")
    assert not r.loads and len(modules(r, "wna16-bits")) == 14
    assert r.fix.endswith("--to auto_gptq --variant v1")
    assert_fixed(r, tmp_path, "vllm", "gptq")


def test_vllm_compressed_tensors_8bit_zero_points_fail(tmp_path):
    r = report(write_compressed(tmp_path / "c", random_model(seed=10, bits=8, group_size=128)), "vllm")
    assert not r.loads and len(modules(r, "wna16-zero-points")) == 14
    assert r.fix.endswith("--to auto_gptq --variant v1")
    assert_fixed(r, tmp_path, "vllm", "gptq")


# -- transformers -------------------------------------------------------------------------------
def test_transformers_recognises_every_format(tmp_path):
    layers = random_model(seed=11, group_size=128)
    assert report(gptq(tmp_path), "transformers").kernel.startswith("gptq")
    assert report(write_awq(tmp_path / "a", layers), "transformers").kernel == "awq (autoawq gemm)"
    assert report(write_auto_round(tmp_path / "r", layers, "awq"), "transformers").kernel.startswith("auto-round")
    assert report(write_compressed(tmp_path / "c", layers), "transformers").kernel == "compressed-tensors"
    dense = tmp_path / "d"
    assert CliRunner().invoke(main, ["convert", str(gptq(tmp_path)), str(dense), "--to", "dense"]).exit_code == 0
    r = report(dense, "transformers")
    assert r.loads and r.kernel.startswith("no quantizer")


def test_transformers_gptq_zero_convention_label(tmp_path):
    r = report(gptq(tmp_path, "v2", sym=True, group_size=128, label="gptq"), "transformers")
    assert not r.loads and [f.rule for f in r.failures] == ["zero-convention-label"]
    assert r.fix.endswith("--to auto_gptq --variant v1")
    assert_fixed(r, tmp_path, "transformers", "gptq (optimum + gptqmodel/auto-gptq)")


def test_transformers_awq_version_label(tmp_path):
    src = write_awq(tmp_path / "a", random_model(seed=12, group_size=64))
    config = json.loads((src / "config.json").read_text())
    config["quantization_config"]["version"] = "gemv"
    (src / "config.json").write_text(json.dumps(config))
    r = report(src, "transformers")
    assert not r.loads and [f.rule for f in r.failures] == ["awq-version-label"]
    assert r.fix.endswith("--to auto_awq --variant gemm")
    assert_fixed(r, tmp_path, "transformers", "awq (autoawq gemm)")


# -- LMDeploy TurboMind -------------------------------------------------------------------------
def test_lmdeploy_loads_awq_gemm_and_symmetric_gptq_g128(tmp_path):
    r = report(write_awq(tmp_path / "a", random_model(seed=13, group_size=128)), "lmdeploy")
    assert r.loads and r.kernel == "turbomind awq w4a16"
    r = report(gptq(tmp_path, sym=True, group_size=128), "lmdeploy")
    assert r.loads and r.kernel == "turbomind gptq w4a16"
    assert any("tensor parallelism" in n for n in r.notes)


def test_lmdeploy_refuses_other_formats_and_awq_fixes_it(tmp_path):
    src = write_compressed(tmp_path / "c", random_model(seed=14, group_size=128))
    r = report(src, "lmdeploy")
    assert not r.loads and [f.rule for f in r.failures] == ["quant-method"]
    assert r.fix.endswith("--to auto_awq --variant gemm")
    assert_fixed(r, tmp_path, "lmdeploy", "turbomind awq w4a16")


def test_lmdeploy_awq_gemv(tmp_path):
    r = report(write_awq(tmp_path / "a", random_model(seed=15, group_size=128), "gemv"), "lmdeploy")
    assert not r.loads and [f.rule for f in r.failures] == ["awq-version"]
    assert_fixed(r, tmp_path, "lmdeploy", "turbomind awq w4a16")


def test_lmdeploy_gptq_v2_zeros(tmp_path):
    r = report(gptq(tmp_path, "v2", sym=True, group_size=128), "lmdeploy")
    assert not r.loads and [f.rule for f in r.failures] == ["gptq-zero-convention"]
    assert r.fix.endswith("--to auto_gptq --variant v1")
    assert_fixed(r, tmp_path, "lmdeploy", "turbomind gptq w4a16")


def test_lmdeploy_asymmetric_gptq_fixed_by_awq(tmp_path):
    r = report(gptq(tmp_path, sym=False, group_size=128), "lmdeploy")
    assert not r.loads and len(modules(r, "gptq-sym")) == 14
    assert r.fix.endswith("--to auto_awq --variant gemm")
    assert_fixed(r, tmp_path, "lmdeploy", "turbomind awq w4a16")


def test_lmdeploy_act_order_has_only_a_lossy_way(tmp_path):
    r = report(gptq(tmp_path, sym=True, act_order=True, group_size=128), "lmdeploy")
    assert not r.loads and [f.rule for f in r.failures] == ["gptq-act-order"]
    assert r.fix is None and "--to auto_awq --variant gemm --allow-lossy" in r.no_fix


def test_lmdeploy_bits_and_group_size(tmp_path):
    r = report(gptq(tmp_path, sym=True, bits=8, group_size=128), "lmdeploy")
    assert not r.loads and len(modules(r, "bits")) == 14 and r.fix is None
    r = report(write_awq(tmp_path / "a", random_model(seed=16, group_size=64)), "lmdeploy")
    assert not r.loads and len(modules(r, "group-size")) == 14
    assert r.fix is None and r.no_fix == "no conversion repack can write makes it load"


# -- llama.cpp ----------------------------------------------------------------------------------
class _StubGguf:
    name, variants, default_variant, quantized = "gguf", ("q4_0",), "q4_0", True

    def capabilities(self, variant):
        return Capabilities(bits=(4,), zero_range=full_zero_range, act_order=False, shape_problem=any_shape)


def test_llama_cpp_needs_gguf(tmp_path, monkeypatch):
    monkeypatch.delitem(formats._REGISTRY, "gguf", raising=False)
    r = report(gptq(tmp_path, sym=True, group_size=32), "llama.cpp")
    assert not r.loads and [f.rule for f in r.failures] == ["gguf-only"] and r.fix is None
    assert "--to gguf" in r.no_fix and "no gguf writer" in r.no_fix
    monkeypatch.setitem(formats._REGISTRY, "gguf", _StubGguf())
    p = Profile("auto_gptq", "v1", ())
    assert check("llama.cpp", p, {"gguf/q4_0": "exact"}, "m").fix == "repack convert m m-gguf --to gguf"
    assert check("llama.cpp", p, {"gguf/q4_0": "lossy"}, "m").fix is None
    r = check("llama.cpp", Profile("gguf", "q4_0", ()), {}, "m")
    assert r.loads and r.kernel == "ggml q4_0"


# -- CLI ----------------------------------------------------------------------------------------
def test_cli_exit_codes_text_and_json(tmp_path):
    src = gptq(tmp_path, sym=True, group_size=128)
    ok = CliRunner().invoke(main, ["inspect", str(src), "--target", "vllm", "--target", "lmdeploy"])
    assert ok.exit_code == 0, ok.output
    assert "vllm: loads (gptq_marlin)" in ok.stdout and "lmdeploy: loads (turbomind gptq w4a16)" in ok.stdout
    bad = CliRunner().invoke(main, ["inspect", str(src), "--target", "llama.cpp", "--json"])
    assert bad.exit_code == 2 and "Traceback" not in bad.output
    (engine,) = json.loads(bad.stdout)["engines"]
    assert engine["engine"] == "llama.cpp" and engine["loads"] is False and engine["failures"][0]["rule"] == "gguf-only"
    assert bad.stderr.strip().splitlines() == [f"repack: error: {src}: does not load in llama.cpp"]
    v2 = gptq(tmp_path, "v2", name="v2", sym=True, group_size=128)
    text = CliRunner().invoke(main, ["inspect", str(v2), "--target", "lmdeploy"])
    assert text.exit_code == 2 and "fix: repack convert" in text.stdout and "--variant v1" in text.stdout
    unknown = CliRunner().invoke(main, ["inspect", str(src), "--target", "tgi"])
    assert unknown.exit_code == 2 and "Traceback" not in unknown.output


def test_per_module_override_fails_only_that_module(tmp_path):
    import numpy as np
    from fixtures.checkpoints import random_layer
    layers = random_model(seed=17, sym=True, group_size=128)
    layers[DOWN] = random_layer(np.random.default_rng(1), 256, 128, bits=8, group_size=128, sym=True)
    src = write_gptq(tmp_path / "g", layers, "v1", sym=True)
    config = json.loads((src / "config.json").read_text())
    config["quantization_config"]["dynamic"] = {r"+:^model\.layers\.0\.mlp\.down_proj$": {"bits": 8}}
    (src / "config.json").write_text(json.dumps(config))
    r = report(src, "vllm")
    assert r.loads and r.kernel == "gptq_marlin"  # uint8b128 for the 8-bit module
    r = report(src, "lmdeploy")
    assert not r.loads and [(f.rule, f.module) for f in r.failures] == [("bits", DOWN)]
    assert r.fix is None and "--allow-lossy" in r.no_fix  # 8 -> 4 bits re-quantizes
