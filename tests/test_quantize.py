"""repack quantize (RTN, GPTQ, AWQ) and repack eval on the tiny synthetic Llama.

The quality checks recompute the errors here, from the written checkpoints and the float model,
instead of trusting the driver's own report: per layer on the float block's inputs (GPTQ), and per
stage / per block with each checkpoint's own norms (AWQ folds scales into them)."""

import json
import random

import pytest
import numpy as np
import torch
from click.testing import CliRunner

from cli.main import main
from repack.checkpoint import Checkpoint
from repack.convert import convert
from repack.errors import OutputError, UnsupportedError
from repack.evaluate import evaluate, generate
from repack.quantize.calib import from_model
from repack.quantize.driver import quantize
from repack.quantize.model import block_forward, embed, plain_linear
from repack.source import open_source
from repack.synthetic import llama_config, write_float_model
from repack.verify import verify
from tests.quantize_checks import model_of, rtn_and_awq_block_errors

SETTINGS = dict(bits=4, group_size=64, sym=False, nsamples=16, seqlen=64, seed=0)
SMALL = dict(bits=4, group_size=64, sym=False, nsamples=4, seqlen=32, seed=0)
WORDS = "the a river stone quick slow light dark runs falls over under and of to".split()


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    d = tmp_path_factory.mktemp("quantize")
    float_dir = write_float_model(d / "float")
    rng = random.Random(5)
    (d / "text.txt").write_text(" ".join(rng.choice(WORDS) for _ in range(3000)))
    outs = {}
    for name, kw in {"rtn": dict(method="rtn"), "gptq": dict(method="gptq"), "awq": dict(method="awq"),
                     "gptq-act": dict(method="gptq", act_order=True, static_groups=False),
                     "gptq-natural": dict(method="gptq", act_order=False)}.items():
        outs[name] = d / name
        quantize(float_dir, outs[name], **kw, **SETTINGS)
    return d, float_dir, outs


def _calibration_input(float_dir):
    spec, w = model_of(float_dir)
    ids = from_model(spec, w.get, w.bias, SETTINGS["nsamples"], SETTINGS["seqlen"], SETTINGS["seed"], 1)
    return embed(spec, ids, w.get)


def _layer_inputs(spec, w, i, x):
    """module -> the inputs it sees in block i of the float model, [T, K]."""
    seen = {}
    lin = plain_linear(w.get, w.bias)

    def capture(name, h):
        seen[name] = h.reshape(-1, h.shape[-1])
        return lin(name, h)
    with torch.no_grad():
        out = block_forward(spec, i, x, w.get, capture)
    return seen, out


def _err(x, w_ref, w_q):
    return float((x @ w_ref.t() - x @ w_q.t()).norm())


# -- the written folders ---------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["rtn", "gptq", "awq", "gptq-act", "gptq-natural"])
def test_output_verifies_against_the_float_model_and_converts(work, method):
    d, float_dir, outs = work
    assert open_source(outs[method]).detection.format == "auto_gptq"
    other = d / f"{method}-ct"
    assert convert(outs[method], other, "compressed_tensors").exact
    report = verify(outs[method], other, against=float_dir, backend="reference", ms=(1, 16))
    assert report.ok, report.verdict()
    assert len(report.layers) == 14
    floor = 8.0 if method == "awq" else 15.0  # AWQ's weights are rescaled per input channel
    assert all(l.against_a.sqnr_db > floor for l in report.layers), report.table()
    r = run("verify", outs[method], other, "--against", float_dir, "--backend", "reference", "--quiet")
    assert r.exit_code == 0 and r.output.startswith("OK"), r.output


def test_act_order_output_has_a_group_map(work):
    _, _, outs = work
    src = open_source(outs["gptq-act"])
    assert all(src.read(m).act_order for m in src.modules())
    assert not any(open_source(outs["gptq"]).read(m).act_order for m in src.modules())


def test_gptq_beats_rtn_per_layer_on_the_calibration_inputs(work):
    _, float_dir, outs = work
    spec, wf = model_of(float_dir)
    x = _calibration_input(float_dir)
    rtn = model_of(outs["rtn"])[1]
    gptqs = [model_of(outs[k])[1] for k in ("gptq", "gptq-act", "gptq-natural")]
    for i in range(spec.layers):
        inputs, x = _layer_inputs(spec, wf, i, x)
        for name, xi in inputs.items():
            ref = wf.get(name + ".weight")
            e_rtn = _err(xi, ref, rtn.get(name + ".weight"))
            for g in gptqs:
                assert _err(xi, ref, g.get(name + ".weight")) < 0.95 * e_rtn, name


def test_gptq_default_is_act_order_with_static_groups(work, tmp_path):
    """The default is act-order processing with sequential groups on disk: the same bytes as asking
    for it, different codes from natural order, and no g_idx."""
    d, float_dir, outs = work
    explicit = tmp_path / "explicit"
    report = quantize(float_dir, explicit, method="gptq", **SETTINGS)
    assert report.act_order and report.static_groups and report.to_dict()["static_groups"]
    explicit2 = tmp_path / "explicit2"
    quantize(float_dir, explicit2, method="gptq", act_order=True, static_groups=True, **SETTINGS)
    assert (explicit2 / "model.safetensors").read_bytes() == (explicit / "model.safetensors").read_bytes()
    assert (explicit / "model.safetensors").read_bytes() == (outs["gptq"] / "model.safetensors").read_bytes()
    a, b = open_source(outs["gptq"]), open_source(outs["gptq-natural"])
    assert not any(a.read(m).act_order or b.read(m).act_order for m in a.modules())
    assert sum(not np.array_equal(a.read(m).qweight, b.read(m).qweight) for m in a.modules()) == len(a.modules())
    for method in ("rtn", "awq"):
        with pytest.raises(UnsupportedError, match="gptq only"):
            quantize(float_dir, tmp_path / "x", method=method, act_order=True, **SETTINGS)
    r = run("quantize", float_dir, tmp_path / "x", "--method", "awq", "--static-groups", "--quiet")
    assert r.exit_code != 0 and "gptq only" in r.output and "Traceback" not in r.output
    for flags, words in ((), "act-order (static groups)"), (("--dynamic-groups",), "act-order (g_idx)"):
        r = run("quantize", float_dir, tmp_path / f"cli{len(flags)}", "--asym", "--group-size", "64", "--nsamples", "4",
                "--seqlen", "32", "--device", "cpu", "--quiet", *flags)
        assert r.exit_code == 0 and words in r.output, r.output
    r = run("quantize", float_dir, tmp_path / "cli-natural", "--no-act-order", "--asym", "--group-size", "64",
            "--nsamples", "4", "--seqlen", "32", "--device", "cpu", "--quiet")
    assert r.exit_code == 0 and "act-order" not in r.output, r.output


def _hybrid(wf, wq, part):
    """Weights of the float model, with the attention (``self_attn``/``input_layernorm``) or the MLP
    (``mlp``/``post_attention_layernorm``) tensors taken from a quantized checkpoint."""
    keys = ("self_attn.", "input_layernorm") if part == "attn" else ("mlp.", "post_attention_layernorm")

    def get(name):
        return (wq if any(k in name for k in keys) else wf).get(name)

    def bias(module):
        return (wq if any(k in module for k in keys) else wf).bias(module)
    return get, bias


def test_awq_beats_rtn_on_the_calibration_inputs(work):
    """AWQ changes the norms and the preceding linears as well as the quantized ones, so each half of
    the block is compared whole: attention (norm, q/k/v, o) and MLP (norm, gate/up, down)."""
    _, float_dir, outs = work
    spec, wf = model_of(float_dir)
    a = spec.arch
    x = _calibration_input(float_dir)
    rtn, awq = model_of(outs["rtn"])[1], model_of(outs["awq"])[1]
    assert not torch.equal(awq.get("model.layers.0." + a.attn_norm), wf.get("model.layers.0." + a.attn_norm))
    for i in range(spec.layers):
        with torch.no_grad():
            ref = block_forward(spec, i, x, wf.get, plain_linear(wf.get, wf.bias))
            for part in ("attn", "mlp"):
                err = {}
                for k, wq in (("rtn", rtn), ("awq", awq)):
                    get, bias = _hybrid(wf, wq, part)
                    err[k] = float((block_forward(spec, i, x, get, plain_linear(get, bias)) - ref).norm())
                assert err["awq"] < err["rtn"], (i, part, err)
        x = ref


def _qwen2_with_biases(path):
    """Qwen2-shaped: q/k/v biases, and as many KV heads as heads so that AWQ also folds o into v."""
    from safetensors.torch import load_file, save_file
    cfg = llama_config(dtype="float32", kv_heads=4)
    cfg["model_type"] = "qwen2"
    float_dir = write_float_model(path, cfg)
    sd = load_file(float_dir / "model.safetensors")
    g = torch.Generator().manual_seed(1)
    for i in range(cfg["num_hidden_layers"]):
        for p in "qkv":
            w = sd[f"model.layers.{i}.self_attn.{p}_proj.weight"]
            sd[f"model.layers.{i}.self_attn.{p}_proj.bias"] = torch.randn(w.shape[0], generator=g) * 0.1
    save_file(sd, str(float_dir / "model.safetensors"), metadata={"format": "pt"})
    return float_dir


@pytest.mark.parametrize("model", ["llama-gqa", "qwen2-bias"])
def test_awq_folding_keeps_the_float_function(tmp_path, model):
    """At 8 bits rounding is small, so a block's error is about the rounding alone: AWQ's must be no
    larger than RTN's; a wrongly folded scale (norm, v/up rows, v bias) would change the block's function."""
    if model == "llama-gqa":
        float_dir = write_float_model(tmp_path / "float", llama_config(dtype="float32"))
    else:
        float_dir = _qwen2_with_biases(tmp_path / "float")
    spec, wf = model_of(float_dir)
    x = _calibration_input(float_dir)[:4, :32]
    err = rtn_and_awq_block_errors(float_dir, tmp_path, spec, wf, x)
    assert err["awq"] < 1.1 * err["rtn"], err
    if model == "qwen2-bias":  # o was folded into v: v's rows and bias were rescaled
        wq = model_of(tmp_path / "awq")[1]
        assert not torch.equal(wq.get("model.layers.0.self_attn.v_proj.bias"), wf.get("model.layers.0.self_attn.v_proj.bias"))


# -- the driver ------------------------------------------------------------------------------------
def test_seeded_runs_are_identical_and_seeds_matter(work, tmp_path):
    _, float_dir, outs = work
    again = tmp_path / "again"
    quantize(float_dir, again, method="gptq", **SETTINGS)
    assert (again / "model.safetensors").read_bytes() == (outs["gptq"] / "model.safetensors").read_bytes()
    d = work[0]
    runs = [(tmp_path / f"awq{k}", seed) for k, seed in enumerate((0, 0, 1))]
    for out, seed in runs:
        quantize(float_dir, out, method="awq", calib=str(d / "text.txt"), **{**SMALL, "seed": seed})
    data = [(out / "model.safetensors").read_bytes() for out, _ in runs]
    assert data[0] == data[1] and data[0] != data[2]


@pytest.mark.parametrize("method", ["gptq", "awq"])
def test_one_block_at_a_time(work, tmp_path, monkeypatch, method):
    """Block i+1's weights are read only after block i is done, and the driver's peak holding stays
    within one block's tensors plus the calibration batch."""
    d, float_dir, _ = work
    events = []
    real_get = Checkpoint.get

    def spy(self, name, rows=None):
        if self.root == float_dir and ".layers." in name:
            events.append(("read", int(name.split(".layers.")[1].split(".")[0])))
        return real_get(self, name, rows)
    monkeypatch.setattr(Checkpoint, "get", spy)
    reports = []
    quantize(float_dir, tmp_path / "out", method=method, calib=str(d / "text.txt"),
             on_block=lambda b: (events.append(("done", b.index)), reports.append(b)), **SETTINGS)
    assert ("read", 1) in events
    done = -1
    for kind, i in events:
        if kind == "done":
            done = i
        else:
            assert i <= done + 1, events
    cfg = llama_config()
    H, I, n, L = cfg["hidden_size"], cfg["intermediate_size"], SETTINGS["nsamples"], SETTINGS["seqlen"]
    kv = H // cfg["num_attention_heads"] * cfg["num_key_value_heads"]
    block = 4 * (2 * H * H + 2 * kv * H + 3 * I * H + 2 * H)
    batch = 4 * n * L * H
    hessians = 8 * (3 * H * H + I * I)
    captured = 4 * n * L * (3 * H + I)
    assert len(reports) == cfg["num_hidden_layers"]
    for b in reports:
        assert 0 < b.held_bytes <= 2 * block + 2 * batch + hessians + captured, b


def test_target_format_and_refusals(work, tmp_path):
    d, float_dir, _ = work
    small = dict(calib=str(d / "text.txt"), **SMALL)
    out = tmp_path / "awq-out"
    quantize(float_dir, out, method="awq", to="auto_awq", **small)
    assert open_source(out).detection.format == "auto_awq"
    with pytest.raises(OutputError):
        quantize(float_dir, out, method="rtn", **small)
    with pytest.raises(UnsupportedError, match="act-order"):
        quantize(float_dir, tmp_path / "x", method="gptq", act_order=True, static_groups=False, to="auto_awq", **small)
    with pytest.raises(UnsupportedError, match="asymmetric zeros"):
        quantize(float_dir, tmp_path / "x", method="rtn", to="marlin", **small)
    static = tmp_path / "static"
    quantize(float_dir, static, method="gptq", act_order=True, static_groups=True, to="auto_awq", **small)
    src = open_source(static)
    assert not any(src.read(m).act_order for m in src.modules())
    assert not (tmp_path / "x").exists()


def test_unknown_architecture_is_one_line(tmp_path):
    cfg = llama_config()
    cfg["model_type"] = "gpt_bigcode"
    float_dir = write_float_model(tmp_path / "float", cfg)
    r = run("quantize", float_dir, tmp_path / "out", "--method", "rtn", "--nsamples", "2", "--seqlen", "8")
    assert r.exit_code == 2
    assert r.output.strip().splitlines() == [r.output.strip()] and "gpt_bigcode" in r.output and "llama" in r.output


# -- eval -------------------------------------------------------------------------------------------
def test_eval_is_the_same_for_every_format_of_one_checkpoint(work, tmp_path):
    d, _, outs = work
    text = d / "text.txt"
    base = evaluate(outs["gptq-act"], text, seqlen=128)
    assert base.windows == len(text.read_bytes()) // 128 and base.tokenizer == "bytes"
    for to in ("auto_awq", "compressed_tensors", "auto_round"):
        other = tmp_path / to
        try:
            convert(outs["gptq"], other, to)
        except UnsupportedError:
            continue
        assert f"{evaluate(other, text, seqlen=128).perplexity:.4g}" == f"{evaluate(outs['gptq'], text, seqlen=128).perplexity:.4g}"
    ct = tmp_path / "act-ct"
    convert(outs["gptq-act"], ct, "compressed_tensors")
    assert f"{evaluate(ct, text, seqlen=128).perplexity:.4g}" == f"{base.perplexity:.4g}"


def test_eval_of_uniform_logits_is_the_vocab_size(tmp_path):
    """A zero head gives uniform predictions: the perplexity is exactly the vocabulary size."""
    from safetensors.torch import load_file, save_file
    float_dir = write_float_model(tmp_path / "float")
    sd = load_file(float_dir / "model.safetensors")
    sd["lm_head.weight"] = torch.zeros_like(sd["lm_head.weight"])
    save_file(sd, str(float_dir / "model.safetensors"), metadata={"format": "pt"})
    (tmp_path / "t.txt").write_text("hello world " * 50)
    r = evaluate(float_dir, tmp_path / "t.txt", seqlen=16)
    assert r.perplexity == pytest.approx(512, rel=1e-9)
    assert r.tokens == (600 // 16) * 15


def test_quantization_costs_perplexity_and_gptq_costs_less(work):
    d, float_dir, outs = work
    ppl = {k: evaluate(p, d / "text.txt", seqlen=128).perplexity for k, p in (("float", float_dir), *outs.items())}
    assert ppl["float"] < ppl["rtn"]
    assert abs(ppl["gptq"] - ppl["float"]) < abs(ppl["rtn"] - ppl["float"]), ppl


def test_cli_quantize_and_eval(work, tmp_path):
    d, float_dir, _ = work
    out = tmp_path / "cli-out"
    r = run("quantize", float_dir, out, "--method", "gptq", "--asym", "--group-size", "64", "--nsamples", "4",
            "--seqlen", "32", "--calib", d / "text.txt", "--to", "auto_awq")
    assert r.exit_code == 0, r.output
    assert "block 0:" in r.output and "block 1:" in r.output and "wrote" in r.output
    r = run("quantize", float_dir, out, "--method", "rtn")
    assert r.exit_code == 2 and "already exists" in r.output and "Traceback" not in r.output
    r = run("eval", out, "--text", d / "text.txt", "--seqlen", "128", "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)["perplexity"]
    assert data["perplexity"] == pytest.approx(evaluate(out, d / "text.txt", seqlen=128).perplexity, rel=1e-12)
    r = run("eval", out, "--text", d / "missing.txt")
    assert r.exit_code == 2 and r.output.count("\n") == 1 and "missing.txt" in r.output
    r = run("quantize", float_dir, tmp_path / "j", "--method", "rtn", "--nsamples", "2", "--seqlen", "8", "--json")
    assert r.exit_code == 0 and len(json.loads(r.output)["blocks"]) == 2


def test_gguf_in_and_out(work, tmp_path):
    """A GGUF file is a model like any other: eval gives its source's perplexity, and it can be
    quantized again (its dequantized weights are the float model)."""
    d, float_dir, _ = work
    sym = tmp_path / "sym"
    quantize(float_dir, sym, method="gptq", calib=str(d / "text.txt"), **{**SMALL, "sym": True})
    convert(sym, tmp_path / "gguf", "gguf")
    text = d / "text.txt"
    assert f"{evaluate(tmp_path / 'gguf', text, 128).perplexity:.4g}" == f"{evaluate(sym, text, 128).perplexity:.4g}"
    again = tmp_path / "again"
    quantize(tmp_path / "gguf", again, method="rtn", **{**SMALL, "sym": True})
    a, b = open_source(again), open_source(sym)
    assert a.modules() == b.modules()
    for m in a.modules():  # the GGUF's weights re-rounded: close, not equal (GPTQ uses codes RTN's scale would not)
        wa, wb = a.read(m).dequantize(np.float32), b.read(m).dequantize(np.float32)
        assert float(np.linalg.norm(wa - wb) / np.linalg.norm(wb)) < 0.1, m


def test_generate_is_greedy_and_format_independent(work, tmp_path):
    d, _, outs = work
    convert(outs["gptq"], tmp_path / "awq", "auto_awq")
    g = generate(outs["gptq"], "the river ", 6)
    assert len(g.ids) == 6 and g.tokenizer == "bytes"
    assert generate(tmp_path / "awq", "the river ", 6).ids == g.ids
    spec, w = model_of(outs["gptq"])
    ids = torch.tensor([list(b"the river ") + g.ids[:2]])
    with torch.no_grad():
        x = embed(spec, ids, w.get)
        for i in range(spec.layers):
            x = block_forward(spec, i, x, w.get, plain_linear(w.get, w.bias))
        from repack.quantize.model import logits
        assert int(logits(spec, x, w.get)[0, -1].argmax()) == g.ids[2]
    r = run("eval", outs["gptq"], "--generate", "the river ", "--max-new-tokens", "6", "--json")
    assert r.exit_code == 0 and json.loads(r.output)["generation"]["ids"] == g.ids
    r = run("eval", outs["gptq"])
    assert r.exit_code == 2 and "--generate" in r.output


def test_kv_cache_gives_the_full_forward_logits(work):
    """Prefill then one token at a time with the cache (as sampling and generation run) equals one
    forward over the whole sequence, position by position."""
    from repack.quantize.model import logits
    _, float_dir, _ = work
    spec, w = model_of(float_dir)
    lin = plain_linear(w.get, w.bias)
    ids = torch.randint(0, spec.vocab, (3, 12), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        x = embed(spec, ids, w.get)
        for i in range(spec.layers):
            x = block_forward(spec, i, x, w.get, lin)
        full = logits(spec, x, w.get)
        kv, steps = {}, []
        for start, stop in [(0, 5)] + [(t, t + 1) for t in range(5, 9)] + [(9, 12)]:
            x = embed(spec, ids[:, start:stop], w.get)
            for i in range(spec.layers):
                x = block_forward(spec, i, x, w.get, lin, kv)
            steps.append(logits(spec, x, w.get))
    assert torch.allclose(torch.cat(steps, 1), full, atol=1e-5), float((torch.cat(steps, 1) - full).abs().max())


def test_clip_search_never_rounds_worse():
    """Shrink factor 1.0 is in the grid, so every row's |w - dequant|^2.4 sum is at most min-max's,
    and on Gaussian rows most gain from a narrower range."""
    from repack.quantize.gptq import _params
    g = torch.Generator().manual_seed(3)
    w = torch.randn(64, 64, generator=g)

    def err(s, z):  # written out here, not taken from the module
        q = torch.clamp(torch.round(w / s[:, None]) + z[:, None], 0, 15)
        return ((q - z[:, None]) * s[:, None] - w).abs().pow(2.4).sum(1)
    plain = _params(w, 4, False, torch.float16, None)
    clipped = _params(w, 4, False, torch.float16, None, clip_search=True)
    assert (err(*clipped) <= err(*plain) + 1e-6).all()
    assert (err(*clipped) < err(*plain)).sum() > 32
    assert (clipped[0] < plain[0]).sum() > 32  # a narrower range is a smaller step


def test_clip_search_takes_the_best_factor_of_the_grid():
    """Against a row-by-row scan written here: every factor 1.00, 0.99 .. 0.21 applied to the row's
    min/max, its error taken, the first factor with the least error wins. Rows wide enough that the
    search runs in several chunks."""
    from repack.quantize.gptq import _params
    from repack.quantize.rtn import minmax_params
    g = torch.Generator().manual_seed(5)
    w = torch.randn(4096, 64, generator=g) * torch.rand(4096, 1, generator=g)
    s, z = _params(w, 3, False, torch.float16, None, clip_search=True)
    for r in range(0, 4096, 257):
        row, best = w[r:r + 1], None
        for i in range(80):
            f = 1 - i / 100
            rs, rz = minmax_params(row.amin(1) * f, row.amax(1) * f, 3, False, torch.float16)
            q = torch.clamp(torch.round(row / rs) + rz, 0, 7)
            e = float(((q - rz) * rs - row).abs().pow(2.4).sum())
            if best is None or e < best[0]:
                best = (e, float(rs), float(rz))
        assert (float(s[r]), float(z[r])) == best[1:], r


def test_cli_min_max_ranges_run_and_verify(work, tmp_path):
    d, float_dir, _ = work
    out = tmp_path / "minmax"
    r = run("quantize", float_dir, out, "--method", "gptq", "--no-clip-search", "--asym", "--group-size", "64",
            "--nsamples", "4", "--seqlen", "32", "--device", "cpu", "--quiet")
    assert r.exit_code == 0, r.output
    other = tmp_path / "minmax-ct"
    assert convert(out, other, "compressed_tensors").exact
    report = verify(out, other, against=float_dir, backend="reference", ms=(1,))
    assert report.ok and all(l.against_a.sqnr_db > 15.0 for l in report.layers), report.table()
