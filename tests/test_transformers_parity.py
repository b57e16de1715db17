"""Our plain-torch decoder against transformers' own models of each architecture in the table:
random tiny models from ``AutoModelForCausalLM.from_config``, every parameter randomised (norms and
biases too), saved with ``save_pretrained`` and read back by repack. Skipped where transformers is
not installed (CI): the project never imports it."""

import pytest
import torch

transformers = pytest.importorskip("transformers")

from repack.evaluate import generate  # noqa: E402
from repack.quantize.model import Spec, block_forward, embed, logits, plain_linear  # noqa: E402
from repack.quantize.weights import ModelWeights  # noqa: E402
from repack.source import open_source  # noqa: E402

COMMON = dict(vocab_size=300, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=64,
              bos_token_id=1, eos_token_id=2, pad_token_id=0)
CONFIGS = {
    "llama": dict(model_type="llama", intermediate_size=96, num_key_value_heads=2, rope_theta=500000.0),
    "mistral-window": dict(model_type="mistral", intermediate_size=96, num_key_value_heads=2, sliding_window=5),
    "qwen2-bias": dict(model_type="qwen2", intermediate_size=96, num_key_value_heads=2),
    "phi3-partial": dict(model_type="phi3", intermediate_size=96, num_key_value_heads=2, partial_rotary_factor=0.5),
    "phi3-window": dict(model_type="phi3", intermediate_size=96, sliding_window=6),
    "gemma": dict(model_type="gemma", intermediate_size=96, num_key_value_heads=1, head_dim=32),
    "gemma-gelu": dict(model_type="gemma", intermediate_size=96, num_key_value_heads=4, head_dim=16, hidden_act="gelu"),
    "opt": dict(model_type="opt", ffn_dim=96, word_embed_proj_dim=64),
    "opt-untied-gelu": dict(model_type="opt", ffn_dim=96, tie_word_embeddings=False, activation_function="gelu"),
    # rope scalings; windows of 14 tokens, original contexts of 8-16 so each scaling's long-range
    # branch is taken (longrope switches to its long factors past 8 positions)
    "llama-rope-llama3": dict(model_type="llama", intermediate_size=96, rope_parameters=dict(
        rope_type="llama3", rope_theta=500000.0, factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
        original_max_position_embeddings=16)),
    "llama-rope-linear": dict(model_type="llama", intermediate_size=96,
                              rope_parameters=dict(rope_type="linear", rope_theta=10000.0, factor=4.0)),
    "llama-rope-yarn": dict(model_type="llama", intermediate_size=96, rope_parameters=dict(
        rope_type="yarn", rope_theta=10000.0, factor=4.0, original_max_position_embeddings=16)),
    "llama-rope-dynamic": dict(model_type="llama", intermediate_size=96,
                               rope_parameters=dict(rope_type="dynamic", rope_theta=10000.0, factor=2.0)),
    "phi3-longrope": dict(model_type="phi3", intermediate_size=96, original_max_position_embeddings=8, rope_parameters=dict(
        rope_type="longrope", rope_theta=10000.0, short_factor=[1.0 + 0.1 * i for i in range(8)],
        long_factor=[1.0 + 3.0 * i for i in range(8)])),
}
DIFFS: dict[str, float] = {}


def _hf_model(name, path):
    kw = dict(CONFIGS[name])
    cfg = transformers.AutoConfig.for_model(kw.pop("model_type"), **COMMON, **kw)
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.float32, attn_implementation="eager").eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for pname, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if "norm" in pname and pname.endswith("weight"):
                p.copy_(0.2 * noise if cfg.model_type == "gemma" else 1 + 0.2 * noise)
            else:
                p.copy_(0.1 * noise)
    model.save_pretrained(path)
    return model


@pytest.mark.parametrize("name", list(CONFIGS))
def test_logits_match_transformers(tmp_path, name):
    model = _hf_model(name, tmp_path)
    ids = torch.randint(3, COMMON["vocab_size"], (2, 14), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = model(ids).logits
        src = open_source(tmp_path)
        spec, w = Spec.from_config(src.ckpt.config, str(tmp_path)), ModelWeights(src)
        x = embed(spec, ids, w.get)
        for i in range(spec.layers):
            x = block_forward(spec, i, x, w.get, plain_linear(w.get, w.bias))
        ours = logits(spec, x, w.get)
    diff = float((ours - ref).abs().max())
    DIFFS[name] = diff
    print(f"\n{name}: max |logit diff| {diff:.2e} (logits up to {float(ref.abs().max()):.1f})")
    assert diff < 1e-5 * max(1.0, float(ref.abs().max())), diff


@pytest.mark.parametrize("name", ["phi3-partial", "gemma", "opt", "phi3-longrope", "llama-rope-yarn"])
def test_greedy_generation_matches_transformers(tmp_path, name):
    """The KV cache path (positions after the prompt, learned or rotary) against transformers' generate."""
    model = _hf_model(name, tmp_path)
    prompt = "hello"  # no tokenizer: ids are the UTF-8 bytes
    ids = torch.tensor([list(prompt.encode())])
    with torch.no_grad():
        ref = model.generate(ids, max_new_tokens=8, do_sample=False, eos_token_id=None, pad_token_id=0)[0, ids.shape[1]:]
    assert generate(tmp_path, prompt, 8).ids == ref.tolist()


@pytest.mark.parametrize("name", ["phi3-partial", "gemma", "opt"])
def test_an_awq_checkpoint_means_to_transformers_what_it_means_to_us(tmp_path, name):
    """AWQ rewrites norms (Gemma's 1 + w, OPT's LayerNorm bias) and fused rows: dequantized to a dense
    fp32 folder, transformers must compute the logits our eval computes from the quantized checkpoint,
    and they must stay near the float model's."""
    from repack.convert import convert
    from repack.quantize.driver import quantize
    model = _hf_model(name, tmp_path / "float")
    quantize(tmp_path / "float", tmp_path / "awq", "awq", 8, 32, False, nsamples=16, seqlen=32)
    convert(tmp_path / "awq", tmp_path / "dense", "dense", "fp32")
    ids = torch.randint(3, COMMON["vocab_size"], (2, 14), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        theirs = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "dense", dtype=torch.float32)(ids).logits
        src = open_source(tmp_path / "awq")
        spec, w = Spec.from_config(src.ckpt.config), ModelWeights(src)
        x = embed(spec, ids, w.get)
        for i in range(spec.layers):
            x = block_forward(spec, i, x, w.get, plain_linear(w.get, w.bias))
        ours = logits(spec, x, w.get)
        ref = model(ids).logits
    assert float((ours - theirs).abs().max()) < 1e-5 * float(theirs.abs().max())
    assert float((theirs - ref).abs().max()) < 0.05 * float(ref.abs().max())
