"""Phi-3, Gemma and OPT through the decoder, the quantizer and eval, on the tiny models of
repack.synthetic (whose tensor names are written out there, not taken from the table).

The forward pass is checked against a loop-by-position re-implementation written here from the
transformers modeling files; quality checks recompute errors from the written checkpoints, as
tests/test_quantize.py does for Llama."""

import random

import pytest
import numpy as np
import torch
from click.testing import CliRunner

from cli.main import main
from repack.convert import convert
from repack.evaluate import evaluate
from repack.quantize import fold, norms
from repack.quantize.calib import from_model
from repack.quantize.driver import quantize
from repack.quantize.model import Spec, block_forward, embed, logits, plain_linear
from repack.source import open_source
from repack.synthetic import WEIGHTS, gemma_config, opt_config, phi3_config, write_float_model
from repack.verify import verify
from repack.dtypes import to_torch
from tests.quantize_checks import model_of, rtn_and_awq_block_errors

CONFIGS = {"phi3": phi3_config, "gemma": gemma_config, "opt": opt_config}
BLOCK = {"phi3": "model.layers.{i}.", "gemma": "model.layers.{i}.", "opt": "model.decoder.layers.{i}."}
LINEARS = {  # as transformers names them (Phi3Attention.qkv_proj, Phi3MLP.gate_up_proj, OPTDecoderLayer.fc1/fc2)
    "phi3": ["self_attn.qkv_proj", "self_attn.o_proj", "mlp.gate_up_proj", "mlp.down_proj"],
    "gemma": ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
              "mlp.up_proj", "mlp.down_proj"],
    "opt": ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj", "fc1", "fc2"],
}
HALVES = {  # tensors of the attention half and the MLP half of a block
    "phi3": (("self_attn.", "input_layernorm"), ("mlp.", "post_attention_layernorm")),
    "gemma": (("self_attn.", "input_layernorm"), ("mlp.", "post_attention_layernorm")),
    "opt": (("self_attn.", "self_attn_layer_norm"), ("fc1", "fc2", "final_layer_norm")),
}
SETTINGS = dict(bits=4, group_size=64, sym=False, nsamples=8, seqlen=64, seed=0)
WORDS = "the a river stone quick slow light dark runs falls over under and of to".split()


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module", params=list(CONFIGS))
def work(request, tmp_path_factory):
    name = request.param
    d = tmp_path_factory.mktemp(name)
    float_dir = write_float_model(d / "float", CONFIGS[name]())
    (d / "text.txt").write_text(" ".join(random.Random(5).choice(WORDS) for _ in range(300)))
    outs = {}
    for method in ("rtn", "gptq", "awq"):
        outs[method] = d / method
        quantize(float_dir, outs[method], method=method, **SETTINGS)
    return name, d, float_dir, outs


# -- an independent forward pass -------------------------------------------------------------------
def reference_logits(cfg: dict, t: dict, ids: torch.Tensor) -> torch.Tensor:
    """Logits [B, L, V] one position and one head at a time, from the transformers modeling files:
    phi3 (fused qkv / gate_up, partial rotary, optional sliding window), gemma ((1 + w) RMSNorm,
    sqrt(hidden) embedding scale in the model dtype, GeLU-tanh, tied head), opt (pre-LayerNorm,
    learned positions at offset 2, biases, ReLU, tied head)."""
    mt, H, nh = cfg["model_type"], cfg["hidden_size"], cfg["num_attention_heads"]
    nkv, hd = cfg.get("num_key_value_heads") or nh, cfg.get("head_dim") or H // nh
    top = "model.decoder." if mt == "opt" else "model."
    act = {"phi3": torch.nn.functional.silu, "opt": torch.nn.functional.relu,
           "gemma": lambda x: torch.nn.functional.gelu(x, approximate="tanh")}[mt]
    rot = int(hd * cfg.get("partial_rotary_factor", 1.0)) if mt == "phi3" else hd
    window = cfg.get("sliding_window")

    def lin(name, x):
        return t[name + ".weight"] @ x + (t[name + ".bias"] if name + ".bias" in t else 0)

    def norm(name, x):
        if mt == "opt":
            mu = x.mean()
            return (x - mu) / torch.sqrt(((x - mu) ** 2).mean() + 1e-5) * t[name + ".weight"] + t[name + ".bias"]
        w = t[name + ".weight"]
        return x / torch.sqrt((x * x).mean() + cfg["rms_norm_eps"]) * (1 + w if mt == "gemma" else w)

    def rope(v, pos):  # pairs (j, j + rot/2) turn by pos * theta^(-2j/rot); dims past rot stay
        half = rot // 2
        a = pos / cfg["rope_theta"] ** (torch.arange(half, dtype=torch.float64) * 2 / rot)
        cos, sin, x, y = a.cos().float(), a.sin().float(), v[:half], v[half:rot]
        return torch.cat([x * cos - y * sin, y * cos + x * sin, v[rot:]])

    result = []
    for row in ids.tolist():
        xs = [t[top + "embed_tokens.weight"][tok] for tok in row]
        if mt == "gemma":
            scale = float(torch.tensor(H**0.5).to(getattr(torch, cfg["torch_dtype"])))
            xs = [x * scale for x in xs]
        if mt == "opt":
            xs = [x + t[top + "embed_positions.weight"][pos + 2] for pos, x in enumerate(xs)]
        for i in range(cfg["num_hidden_layers"]):
            p = f"{top}layers.{i}."
            attn_norm, mlp_norm = ("self_attn_layer_norm", "final_layer_norm") if mt == "opt" else \
                ("input_layernorm", "post_attention_layernorm")
            qs, ks, vs = [], [], []
            for x in xs:
                h = norm(p + attn_norm, x)
                if mt == "phi3":
                    q, k, v = lin(p + "self_attn.qkv_proj", h).split([nh * hd, nkv * hd, nkv * hd])
                else:
                    q, k, v = (lin(p + f"self_attn.{n}_proj", h) for n in "qkv")
                qs.append(q.view(nh, hd)), ks.append(k.view(nkv, hd)), vs.append(v.view(nkv, hd))
            if mt != "opt":
                qs = [torch.stack([rope(hq, pos) for hq in q]) for pos, q in enumerate(qs)]
                ks = [torch.stack([rope(hk, pos) for hk in k]) for pos, k in enumerate(ks)]
            new = []
            for pos, x in enumerate(xs):
                heads = []
                for head in range(nh):
                    kvh = head // (nh // nkv)
                    seen = [j for j in range(pos + 1) if window is None or j > pos - window]
                    scores = torch.stack([qs[pos][head] @ ks[j][kvh] for j in seen]) / hd**0.5
                    w = torch.softmax(scores, 0)
                    heads.append(sum(wj * vs[j][kvh] for wj, j in zip(w, seen)))
                x = x + lin(p + ("self_attn.out_proj" if mt == "opt" else "self_attn.o_proj"), torch.cat(heads))
                h = norm(p + mlp_norm, x)
                if mt == "phi3":
                    gate, up = lin(p + "mlp.gate_up_proj", h).split(cfg["intermediate_size"])
                    x = x + lin(p + "mlp.down_proj", act(gate) * up)
                elif mt == "gemma":
                    x = x + lin(p + "mlp.down_proj", act(lin(p + "mlp.gate_proj", h)) * lin(p + "mlp.up_proj", h))
                else:
                    x = x + lin(p + "fc2", act(lin(p + "fc1", h)))
                new.append(x)
            xs = new
        head = t.get("lm_head.weight", t[top + "embed_tokens.weight"])
        final = top + ("final_layer_norm" if mt == "opt" else "norm")
        result.append(torch.stack([head @ norm(final, x) for x in xs]))
    return torch.stack(result)


def _float_tensors(cfg: dict, louder: float = 5.0) -> dict[str, torch.Tensor]:
    """fp32 weights of the synthetic model with the linears made louder, so that each block moves
    the residual stream enough for a wrong detail to show in the logits."""
    t = {n: w.float() for n, w in WEIGHTS[cfg["model_type"]](cfg).items()}
    return {n: w * louder if w.dim() == 2 and "embed" not in n and n != "lm_head.weight" else w for n, w in t.items()}


def _forward(spec: Spec, t: dict, ids: torch.Tensor, cache: dict | None = None, start: int = 0) -> torch.Tensor:
    with torch.no_grad():
        x = embed(spec, ids, t.__getitem__, start)
        for i in range(spec.layers):
            x = block_forward(spec, i, x, t.__getitem__, plain_linear(t.__getitem__, lambda m: t.get(m + ".bias")), cache)
        return logits(spec, x, t.__getitem__)


FORWARD_CASES = {
    "phi3": phi3_config(dtype="float32"),
    "phi3-window": {**phi3_config(dtype="float32", kv_heads=2), "sliding_window": 4},
    "gemma": gemma_config(dtype="float32"),
    "gemma-bf16": gemma_config(dtype="bfloat16"),  # the embedding scale is sqrt(hidden) rounded to bf16
    "opt": opt_config(dtype="float32"),
}


@pytest.mark.parametrize("case", list(FORWARD_CASES))
def test_forward_matches_an_independent_implementation(case):
    cfg = FORWARD_CASES[case]
    t = _float_tensors(cfg)
    spec = Spec.from_config(cfg)
    ids = torch.randint(0, cfg["vocab_size"], (2, 10), generator=torch.Generator().manual_seed(3))
    ref = reference_logits(cfg, t, ids)
    ours = _forward(spec, t, ids)
    scale = float(ref.abs().max())
    assert float((ours - ref).abs().max()) < 1e-5 * scale, float((ours - ref).abs().max()) / scale
    kv = {}  # prefill 4, then one token at a time: positions (rotary or learned) continue after the cache
    steps = [_forward(spec, t, ids[:, :4], kv)] + [_forward(spec, t, ids[:, s:s + 1], kv, s) for s in range(4, 10)]
    assert float((torch.cat(steps, 1) - ref).abs().max()) < 1e-5 * scale


def test_norm_folds_divide_the_output_by_the_scales():
    g = torch.Generator().manual_seed(0)
    x, w, b = torch.randn(5, 32, generator=g), 0.3 * torch.randn(32, generator=g), torch.randn(32, generator=g)
    s = torch.exp(torch.randn(32, generator=g))
    for kind in norms.KINDS:
        bias = b if kind == "layer" else None
        want = norms.apply(kind, x, w, bias, 1e-6) / s
        assert torch.allclose(norms.apply(kind, x, *norms.fold(kind, w, bias, s), 1e-6), want, rtol=1e-5, atol=1e-6), kind
    # Gemma's (1 + w): dividing w alone would be wrong
    assert not torch.allclose(norms.apply("rms+1", x, w / s, None, 1e-6), norms.apply("rms+1", x, w, None, 1e-6) / s, atol=1e-3)


@pytest.mark.parametrize("name,folds", [("phi3", 4), ("gemma", 3), ("opt", 4)])
def test_awq_folds_keep_the_float_logits(name, folds):
    """Every stage whose producer feeds it channel for channel (norm -> q/k/v or qkv, v rows of qkv
    -> o, up rows of gate_up or fc1 -> down/fc2) folds random scales; the logits do not move.
    Gemma's grouped KV heads leave v -> o out."""
    cfg = CONFIGS[name](dtype="float32")
    t = _float_tensors(cfg)
    spec = Spec.from_config(cfg)
    if name == "phi3":  # Phi-3 has no biases, but a fused producer's bias must fold into its part too
        g = torch.Generator().manual_seed(6)
        for i in range(spec.layers):
            for m in ("self_attn.qkv_proj", "mlp.gate_up_proj"):
                w = t[f"model.layers.{i}.{m}.weight"]
                t[f"model.layers.{i}.{m}.bias"] = 0.1 * torch.randn(w.shape[0], generator=g)
    ids = torch.randint(0, cfg["vocab_size"], (2, 12), generator=torch.Generator().manual_seed(4))
    before = _forward(spec, t, ids)
    g, done = torch.Generator().manual_seed(5), 0
    original = dict(t)
    for i in range(spec.layers):
        p = spec.arch.prefix(i)
        for stage in spec.stages:
            first, stop = fold.prev_rows(t, p, stage)
            if stop - first != t[p + stage.linears[0] + ".weight"].shape[1]:
                continue
            fold.fold(t, p, stage, torch.exp(0.5 * torch.randn(stop - first, generator=g)), spec.arch.norm)
            done += 1
    assert done == folds * spec.layers
    assert sum(not torch.equal(t[n], original[n]) for n in t) >= (folds + 2) * spec.layers
    after = _forward(spec, t, ids)
    assert float((after - before).abs().max()) < 1e-5 * float(before.abs().max())


@pytest.mark.parametrize("name", list(CONFIGS))
def test_awq_at_8_bits_is_the_rounding_alone(tmp_path, name):
    """Through the driver: at 8 bits a block's error is about the rounding alone, so AWQ's must be no
    larger than RTN's; a wrongly folded norm, bias or row would change the block's function."""
    float_dir = write_float_model(tmp_path / "float", CONFIGS[name](dtype="float32"))
    spec, wf = model_of(float_dir)
    ids = from_model(spec, wf.get, wf.bias, 4, 32, 0, 1)
    x = embed(spec, ids, wf.get)
    err = rtn_and_awq_block_errors(float_dir, tmp_path, spec, wf, x)
    assert err["awq"] < 1.1 * err["rtn"], err
    wq = model_of(tmp_path / "awq")[1]
    changed = [n for n in ("input_layernorm.weight", "self_attn_layer_norm.weight", "self_attn_layer_norm.bias",
                           "fc1.bias") if wf.has(BLOCK[name].format(i=0) + n)]
    for n in changed:  # the norms (weight and LayerNorm bias) and fc1's bias absorbed scales
        assert not torch.equal(wq.get(BLOCK[name].format(i=0) + n), wf.get(BLOCK[name].format(i=0) + n)), n


# -- the quantized checkpoints ---------------------------------------------------------------------
@pytest.mark.parametrize("method", ["rtn", "gptq", "awq"])
def test_output_keeps_the_names_and_verifies_against_the_float_model(work, tmp_path, method):
    name, d, float_dir, outs = work
    src = open_source(outs[method])
    assert src.detection.format == "auto_gptq"
    assert sorted(src.modules()) == sorted(BLOCK[name].format(i=i) + m for i in range(2) for m in LINEARS[name])
    other = tmp_path / "ct"
    assert convert(outs[method], other, "compressed_tensors").exact
    report = verify(outs[method], other, against=float_dir, backend="reference", ms=(1, 16))
    assert report.ok and len(report.layers) == 2 * len(LINEARS[name]), report.verdict()
    if method != "awq":  # AWQ stores weights rescaled per input channel (OPT's fc2: 0.26x to 3.8x)
        assert all(l.against_a.sqnr_db > 15.0 for l in report.layers), report.table()
    r = run("verify", outs[method], other, "--against", float_dir, "--backend", "reference", "--quiet")
    assert r.exit_code == 0 and r.output.startswith("OK"), r.output
    fsrc = open_source(float_dir)  # every other tensor comes through with its dtype and shape
    kept = set(fsrc.ckpt.names()) - {m + ".weight" for m in src.modules()}
    assert kept <= set(src.ckpt.names())
    for n in kept:
        a, b = fsrc.ckpt.get(n), src.ckpt.get(n)
        assert a.dtype == b.dtype and a.shape == b.shape, n
        if method != "awq":
            assert np.array_equal(a, b), n


def test_gptq_beats_rtn_per_layer_on_the_calibration_inputs(work):
    name, _, float_dir, outs = work
    spec, wf = model_of(float_dir)
    x = embed(spec, from_model(spec, wf.get, wf.bias, SETTINGS["nsamples"], SETTINGS["seqlen"], 0,
                               int(open_source(float_dir).ckpt.config["bos_token_id"])), wf.get)
    rtn, gptq = model_of(outs["rtn"])[1], model_of(outs["gptq"])[1]
    lin = plain_linear(wf.get, wf.bias)
    checked = 0
    for i in range(spec.layers):
        seen = {}

        def capture(module, h):
            seen[module] = h.reshape(-1, h.shape[-1])
            return lin(module, h)
        with torch.no_grad():
            x = block_forward(spec, i, x, wf.get, capture)
        for module, xi in seen.items():
            ref = wf.get(module + ".weight")
            e = {k: float((xi @ ref.t() - xi @ w.get(module + ".weight").t()).norm()) for k, w in (("rtn", rtn), ("gptq", gptq))}
            assert e["gptq"] < 0.95 * e["rtn"], (module, e)
            checked += 1
    assert checked == 2 * len(LINEARS[name])


def test_awq_beats_rtn_on_the_calibration_inputs(work):
    """Each half of each block whole (its norm, the linears and what AWQ folded into them)."""
    name, _, float_dir, outs = work
    spec, wf = model_of(float_dir)
    x = embed(spec, from_model(spec, wf.get, wf.bias, SETTINGS["nsamples"], SETTINGS["seqlen"], 0,
                               int(open_source(float_dir).ckpt.config["bos_token_id"])), wf.get)
    rtn, awq = model_of(outs["rtn"])[1], model_of(outs["awq"])[1]
    for i in range(spec.layers):
        with torch.no_grad():
            ref = block_forward(spec, i, x, wf.get, plain_linear(wf.get, wf.bias))
            for keys in HALVES[name]:
                err = {}
                for k, wq in (("rtn", rtn), ("awq", awq)):
                    def pick(n):
                        return wq if any(key in n for key in keys) else wf
                    get, bias = (lambda n: pick(n).get(n)), (lambda m: pick(m).bias(m))
                    err[k] = float((block_forward(spec, i, x, get, plain_linear(get, bias)) - ref).norm())
                assert err["awq"] < err["rtn"], (i, keys, err)
        x = ref


def test_eval_matches_the_independent_forward(work):
    """Perplexity through evaluate (block by block, the head with its norm's bias) equals the
    cross-entropy of the reference logits over the same windows."""
    _, d, float_dir, outs = work
    seqlen = 24
    src = open_source(float_dir)
    cfg = src.ckpt.config
    t = {n: to_torch(src.ckpt.get(n)).float() for n in src.ckpt.names()}
    data = torch.tensor(list((d / "text.txt").read_bytes()[:3 * seqlen])) % cfg["vocab_size"]
    ref = reference_logits(cfg, t, data.view(3, seqlen))
    nll = torch.nn.functional.cross_entropy(ref[:, :-1].reshape(-1, ref.shape[-1]).double(), data.view(3, seqlen)[:, 1:].reshape(-1))
    r = evaluate(float_dir, d / "text.txt", seqlen=seqlen, max_windows=3)
    assert r.windows == 3 and r.nll == pytest.approx(float(nll), rel=1e-5)
    q = evaluate(outs["gptq"], d / "text.txt", seqlen=seqlen, max_windows=3)
    assert q.nll != r.nll and abs(q.nll - r.nll) < 0.1, (q.nll, r.nll)


# -- refusals --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,change,words", [
    ("phi3", {"rope_scaling": {"type": "longrope", "short_factor": [1.0] * 5, "long_factor": [2.0] * 5}}, "8 rotating"),
    ("phi3", {"rope_parameters": {"rope_type": "longrope", "rope_theta": 10000.0}}, "short_factor"),
    ("phi3", {"rope_scaling": {"rope_type": "mrope", "factor": 2.0}}, "'mrope' is not implemented"),
    ("phi3", {"rope_scaling": {"rope_type": "llama3", "factor": 8.0}}, "low_freq_factor"),
    ("opt", {"do_layer_norm_before": False}, "do_layer_norm_before"),
    ("opt", {"word_embed_proj_dim": 64}, "project_in"),
    ("gemma", {"hidden_act": "softsign", "hidden_activation": None}, "softsign"),
])
def test_unsupported_configs_are_one_line(tmp_path, name, change, words):
    float_dir = write_float_model(tmp_path / "float", {**CONFIGS[name](), **change})
    for args in (("quantize", float_dir, tmp_path / "out", "--method", "rtn", "--nsamples", "2", "--seqlen", "8"),
                 ("eval", float_dir, "--generate", "hi")):
        r = run(*args)
        assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1 and words in r.output, r.output
    assert not (tmp_path / "out").exists()


def test_more_tokens_than_learned_positions_is_one_line(tmp_path):
    float_dir = write_float_model(tmp_path / "float", opt_config(positions=16))
    (tmp_path / "t.txt").write_text("x" * 100)
    r = run("eval", float_dir, "--text", tmp_path / "t.txt", "--seqlen", "32")
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1 and "16 positions" in r.output, r.output
    assert evaluate(float_dir, tmp_path / "t.txt", seqlen=16).windows == 6


def test_help_lists_the_architectures_and_calibration_forms():
    r = run("quantize", "--help")
    assert r.exit_code == 0
    text = " ".join(r.output.split())
    assert "llama, mistral, qwen2, phi3, gemma, opt" in text and "hf://datasets/ORG/NAME" in text and "pyarrow" in text
