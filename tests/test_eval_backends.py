"""repack eval through the kernels: the reference backend anywhere, Triton on CUDA reading each
checkpoint's own packed layout (GPTQ, AWQ, Marlin of the same integers must agree to 4 significant
digits, and with the fp32 reference to the kernel's fp16 tolerance)."""

import random

import pytest
from click.testing import CliRunner

from cli.main import main
from repack.convert import convert
from repack.errors import UnsupportedError
from repack.evaluate import evaluate
from repack.kernels import triton_available
from repack.quantize.driver import quantize
from repack.synthetic import write_float_model

WORDS = "the a river stone quick slow light dark runs falls over under and of to".split()


@pytest.fixture(scope="module")
def gptq(tmp_path_factory):
    d = tmp_path_factory.mktemp("evalk")
    float_dir = write_float_model(d / "float")
    rng = random.Random(7)
    (d / "text.txt").write_text(" ".join(rng.choice(WORDS) for _ in range(2000)))
    quantize(float_dir, d / "gptq", method="gptq", bits=4, group_size=64, sym=True, nsamples=4, seqlen=32, seed=0,
             device="cpu")
    return d


def test_reference_backend_on_cpu_is_the_default_without_cuda(gptq):
    r = evaluate(gptq / "gptq", gptq / "text.txt", seqlen=64, device="cpu")
    assert (r.backend, r.device) == ("reference", "cpu")
    assert r.perplexity == evaluate(gptq / "gptq", gptq / "text.txt", seqlen=64, device="cpu", backend="reference").perplexity


def test_triton_backend_on_cpu_is_refused_in_one_line(gptq):
    with pytest.raises(UnsupportedError, match="triton backend needs a CUDA device"):
        evaluate(gptq / "gptq", gptq / "text.txt", seqlen=64, device="cpu", backend="triton")
    r = CliRunner().invoke(main, ["eval", str(gptq / "gptq"), "--text", str(gptq / "text.txt"), "--device", "cpu",
                                  "--backend", "triton"])
    assert r.exit_code != 0 and len(r.output.strip().splitlines()) == 1 and "triton" in r.output


@pytest.mark.skipif(not triton_available(), reason="needs a CUDA GPU and triton")
def test_triton_eval_agrees_across_layouts_and_with_the_reference(gptq, tmp_path):
    text = gptq / "text.txt"
    convert(gptq / "gptq", tmp_path / "awq", "auto_awq")
    convert(gptq / "gptq", tmp_path / "marlin", "marlin", "gptq")
    ref = evaluate(gptq / "gptq", text, seqlen=64, device="cpu", backend="reference").perplexity
    got = {}
    for name, path in (("gptq", gptq / "gptq"), ("awq", tmp_path / "awq"), ("marlin", tmp_path / "marlin")):
        r = evaluate(path, text, seqlen=64, device="cuda", backend="triton")
        assert (r.backend, r.device) == ("triton", "cuda")
        got[name] = r.perplexity
    assert len({f"{p:.4g}" for p in got.values()}) == 1, got
    assert got["gptq"] == pytest.approx(ref, rel=2e-3), (got, ref)


def test_generate_takes_the_backend_and_device(gptq):
    from repack.evaluate import generate
    a = generate(gptq / "gptq", "the river", 6, device="cpu", backend="reference")
    assert len(a.ids) == 6 and a.ids == generate(gptq / "gptq", "the river", 6, device="cpu").ids
    with pytest.raises(UnsupportedError, match="triton backend needs a CUDA device"):
        generate(gptq / "gptq", "the river", 6, device="cpu", backend="triton")


@pytest.mark.skipif(not triton_available(), reason="needs a CUDA GPU and triton")
def test_triton_generation_matches_the_reference_on_the_gpu(gptq):
    from repack.evaluate import generate
    ref = generate(gptq / "gptq", "the river stone", 8, device="cpu", backend="reference")
    got = generate(gptq / "gptq", "the river stone", 8, device="cuda", backend="triton")
    # greedy paths may part where two logits tie within fp16 rounding; the first tokens agree
    assert got.ids[:2] == ref.ids[:2] and len(got.ids) == 8
