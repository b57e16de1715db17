"""Rotary scalings (repack/quantize/rope.py) against the published formulas written out here per
frequency in Python floats; the logits of whole models with each scaling are compared with
transformers in test_transformers_parity.py (where transformers is installed)."""

import math

import pytest

from repack.errors import UnsupportedError
from repack.evaluate import evaluate
from repack.quantize.model import Spec
from repack.quantize.rope import rope_from_config
from repack.synthetic import llama_config, write_float_model

DIM, THETA = 16, 10000.0


def base(i, theta=THETA, dim=DIM):  # frequency pair i turns theta^(-2i/dim) radians per position
    return theta ** (-2 * i / dim)


def close(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g == pytest.approx(w, rel=2e-6), (got, want)


def test_default_and_linear():
    close(rope_from_config({"rope_theta": THETA}, DIM).inv_freq, [base(i) for i in range(DIM // 2)])
    r = rope_from_config({"rope_theta": THETA, "rope_scaling": {"type": "linear", "factor": 4.0}}, DIM)
    close(r.inv_freq, [base(i) / 4 for i in range(DIM // 2)])


def test_llama3_bands():
    """Llama 3.1: wavelengths under old/high kept, over old/low slowed by the factor, blended between."""
    theta, factor, low, high, old = 500000.0, 8.0, 1.0, 4.0, 16
    want = []
    for i in range(DIM // 2):
        f = base(i, theta)
        wavelen = 2 * math.pi / f
        if wavelen < old / high:
            want.append(f)
        elif wavelen > old / low:
            want.append(f / factor)
        else:
            s = (old / wavelen - low) / (high - low)
            want.append((1 - s) * f / factor + s * f)
    kinds = {("kept" if w == base(i, theta) else "slowed" if w == base(i, theta) / factor else "blended")
             for i, w in enumerate(want)}
    assert kinds == {"blended", "slowed"}  # this theta and old context exercise two of the three bands
    r = rope_from_config({"rope_theta": theta, "rope_scaling": {
        "rope_type": "llama3", "factor": factor, "low_freq_factor": low, "high_freq_factor": high,
        "original_max_position_embeddings": old}}, DIM)
    close(r.inv_freq, want)
    assert r.attention_factor == 1.0


def test_yarn_ramp_and_attention_factor():
    factor, old, fast, slow = 4.0, 4096, 32.0, 1.0

    def dim_for(rotations):
        return DIM * math.log(old / (rotations * 2 * math.pi)) / (2 * math.log(THETA))
    lo, hi = max(math.floor(dim_for(fast)), 0), min(math.ceil(dim_for(slow)), DIM - 1)
    want = []
    for i in range(DIM // 2):
        ramp = min(max((i - lo) / (hi - lo), 0.0), 1.0)  # 0: keep the frequency, 1: divide it by the factor
        want.append(base(i) * (1 - ramp) + base(i) / factor * ramp)
    r = rope_from_config({"rope_theta": THETA, "max_position_embeddings": 16384, "rope_parameters": {
        "rope_type": "yarn", "rope_theta": THETA, "factor": factor, "original_max_position_embeddings": old}}, DIM)
    close(r.inv_freq, want)
    assert r.attention_factor == pytest.approx(0.1 * math.log(factor) + 1.0)
    assert 0 < lo < hi < DIM // 2  # some pairs kept, some interpolated, some between


def test_longrope_picks_factors_by_length():
    short, long = [1.0 + 0.1 * i for i in range(8)], [1.0 + 3.0 * i for i in range(8)]
    cfg = {"rope_theta": THETA, "max_position_embeddings": 128, "original_max_position_embeddings": 8,
           "rope_scaling": {"type": "longrope", "short_factor": short, "long_factor": long}}
    r = rope_from_config(cfg, DIM)
    close(r.frequencies(8).tolist(), [base(i) / short[i] for i in range(8)])
    close(r.frequencies(9).tolist(), [base(i) / long[i] for i in range(8)])
    assert r.attention_factor == pytest.approx(math.sqrt(1 + math.log(128 / 8) / math.log(8)))


def test_both_config_spellings_give_the_same_frequencies():
    params = {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 16}
    v4 = rope_from_config({"rope_theta": 500000.0, "rope_scaling": {"type": "llama3", **params}}, DIM)
    v5 = rope_from_config({"rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, **params}}, DIM)
    assert v4 == v5


def test_dynamic_is_plain_within_the_context_and_refused_past_it(tmp_path):
    cfg = {"rope_theta": THETA, "max_position_embeddings": 32, "rope_scaling": {"type": "dynamic", "factor": 2.0}}
    r = rope_from_config(cfg, DIM)
    close(r.frequencies(32).tolist(), [base(i) for i in range(DIM // 2)])
    with pytest.raises(UnsupportedError, match="max_position_embeddings 32"):
        r.frequencies(33)
    float_dir = write_float_model(tmp_path / "f", llama_config(layers=1) | {
        "max_position_embeddings": 16, "rope_scaling": {"type": "dynamic", "factor": 2.0}})
    (tmp_path / "t.txt").write_text("some words " * 40)
    assert evaluate(float_dir, tmp_path / "t.txt", seqlen=16).windows > 0
    with pytest.raises(UnsupportedError, match="dynamic rope scaling"):
        evaluate(float_dir, tmp_path / "t.txt", seqlen=32)


def test_a_scaled_model_quantizes_and_evaluates(tmp_path):
    """Llama 3.1-style config end to end: its Spec carries the scaled frequencies, and eval runs."""
    cfg = llama_config(layers=1) | {"rope_theta": 500000.0, "rope_scaling": {
        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 16}}
    float_dir = write_float_model(tmp_path / "f", cfg)
    spec = Spec.from_config(cfg)
    assert spec.rope.kind == "llama3" and spec.rope != Spec.from_config(llama_config(layers=1)).rope
    (tmp_path / "t.txt").write_text("some words " * 40)
    assert math.isfinite(evaluate(float_dir, tmp_path / "t.txt", seqlen=16).perplexity)


@pytest.mark.parametrize("scaling, words", [
    ({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 4.0, "high_freq_factor": 4.0,
      "original_max_position_embeddings": 8192}, "low_freq_factor < high_freq_factor"),
    ({"rope_type": "llama3", "factor": "eight", "low_freq_factor": 1.0, "high_freq_factor": 4.0,
      "original_max_position_embeddings": 8192}, "numeric 'factor'"),
    ({"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16, "beta_fast": "fast"}, "unusable rope"),
    ({"rope_type": "yarn", "factor": -1.0, "original_max_position_embeddings": 16}, "positive factor"),
    ({"rope_type": "longrope", "short_factor": ["a"] * 8, "long_factor": [1.0] * 8,
      "original_max_position_embeddings": 16}, "short_factor and long_factor"),
    ({"rope_type": "mrope"}, "'mrope' is not implemented"),
    ("linear", "must be an object"),
])
def test_bad_rope_parameters_are_one_line(tmp_path, scaling, words):
    from click.testing import CliRunner

    from cli.main import main
    float_dir = write_float_model(tmp_path / "f", llama_config(layers=1) | {"rope_scaling": scaling})
    with pytest.raises(UnsupportedError, match=words):
        Spec.from_config(llama_config(layers=1) | {"rope_scaling": scaling}, "x")
    r = CliRunner().invoke(main, ["eval", str(float_dir), "--generate", "hi", "--max-new-tokens", "1"])
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1 and str(float_dir) in r.output, r.output
