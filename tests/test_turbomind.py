"""The turbomind format (lmdeploy convert workspaces, w4 and v6) end to end: every written file checked
byte for byte against the loop reference (tests/turbomind_reference.py), reading back, tp splits,
refusals and hostile workspaces."""

import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cli.main import main
from fixtures.checkpoints import awq_config, awq_tensors, base_config, float_tensors, random_layer, write_folder
from repack.convert import convert
from repack.errors import InputError, UnsupportedError
from repack.source import open_source
from repack.verify import verify
from repack.dtypes import to_torch
from tests import turbomind_reference as tref

HIDDEN, INTER, HEADS, HEAD_DIM = 512, 512, 4, 128
PARTS = {"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj", "o": "self_attn.o_proj",
         "gate": "mlp.gate_proj", "up": "mlp.up_proj", "down": "mlp.down_proj"}


def model_layers(seed=0, kv=4, inter=INTER, group_size=128, layers=1):
    rng = np.random.default_rng(seed)
    nkv = kv * HEAD_DIM
    shapes = {"q": (HIDDEN, HIDDEN), "k": (HIDDEN, nkv), "v": (HIDDEN, nkv), "o": (HIDDEN, HIDDEN),
              "gate": (HIDDEN, inter), "up": (HIDDEN, inter), "down": (inter, HIDDEN)}
    return {f"model.layers.{i}.{PARTS[p]}": random_layer(rng, K, N, 4, group_size, zero_range=(0, 15))
            for i in range(layers) for p, (K, N) in shapes.items()}


def write_model(path, kv=4, inter=INTER, group_size=128, layers=1, seed=0, extra=None, config=None):
    tensors = float_tensors(hidden=HIDDEN, layers=layers)
    tensors = {n: t.to(torch.float16) for n, t in tensors.items()}  # fp16 holds them; bf16->fp16 is checked apart
    lay = model_layers(seed, kv, inter, group_size, layers)
    for m, L in lay.items():
        tensors |= awq_tensors(m, L)
    tensors |= extra or {}
    cfg = base_config() | {"hidden_size": HIDDEN, "intermediate_size": inter, "num_hidden_layers": layers,
                           "num_attention_heads": HEADS, "num_key_value_heads": kv,
                           "quantization_config": awq_config(next(iter(lay.values())))} | (config or {})
    return write_folder(path, tensors, cfg), lay, tensors


def by_layer(lay):
    out = {}
    for m, L in lay.items():
        i = int(m.split(".")[2])
        part = next(p for p, s in PARTS.items() if m.endswith(s))
        out.setdefault(i, {})[part] = (L.q, L.z, L.s)
    return out


def weights(folder: Path) -> Path:
    return Path(folder) / "triton_models" / "weights"


def f16(t: torch.Tensor) -> bytes:
    return t.to(torch.float16).numpy().astype("<f2").tobytes()


@pytest.fixture(scope="module")
def awq_model(tmp_path_factory):
    return write_model(tmp_path_factory.mktemp("tm") / "awq")


@pytest.mark.parametrize("variant", ["w4", "v6"])
@pytest.mark.parametrize("tp", [1, 2, 4])
def test_workspace_bytes_match_reference_and_read_back(awq_model, tmp_path, variant, tp):
    src, lay, floats = awq_model
    out = tmp_path / "ws"
    plan = convert(src, out, "turbomind", variant, tp=tp)
    assert plan.exact and plan.written
    expected = tref.workspace_files(by_layer(lay), {"head_dim": HEAD_DIM}, variant, tp)
    # float tensors: fp16, the norms as they are; embedding/output split per rank in v6 only
    expected["norm.weight"] = f16(floats["model.norm.weight"])
    expected["layers.0.attention_norm.weight"] = f16(floats["model.layers.0.input_layernorm.weight"])
    expected["layers.0.ffn_norm.weight"] = f16(floats["model.layers.0.post_attention_layernorm.weight"])
    emb, head = floats["model.embed_tokens.weight"], floats["lm_head.weight"]
    if variant == "w4":
        expected["tok_embeddings.weight"], expected["output.weight"] = f16(emb), f16(head)
    else:
        for r in range(tp):
            expected[f"tok_embeddings.{r}.weight"] = f16(emb.chunk(tp, dim=1)[r].contiguous())
            expected[f"output.{r}.weight"] = f16(head.chunk(tp, dim=0)[r].contiguous())
    files = {p.name for p in weights(out).iterdir()} - {"config.ini", "config.yaml"}
    assert files == set(expected)
    for name, data in expected.items():
        got = (weights(out) / name).read_bytes()
        assert got == data, f"{name} differs at byte {next(i for i, (a, b) in enumerate(zip(got, data)) if a != b)}"
    assert (weights(out) / ("config.ini" if variant == "w4" else "config.yaml")).is_file()
    assert (out / "triton_models" / "tokenizer" / "tokenizer.json").is_file()

    s = open_source(out)
    assert (s.detection.format, s.detection.variant) == ("turbomind", variant)
    assert sorted(s.modules()) == sorted(lay)
    for m, L in lay.items():
        qt = s.read(m)
        assert np.array_equal(qt.codes(), L.q) and np.array_equal(qt.zeros, L.z), m
        assert qt.scales.dtype == np.float16 and np.array_equal(qt.scales, L.s), m
    for n in ("model.embed_tokens.weight", "lm_head.weight", "model.layers.0.input_layernorm.weight"):
        assert torch.equal(to_torch(s.ckpt.get(n)), floats[n]), n


@pytest.mark.parametrize("variant", ["w4", "v6"])
def test_each_rank_is_the_conversion_of_its_slice(awq_model, tmp_path, variant):
    """Rank r of a tp=2 workspace == the tp=1 reference of rank r's own slice of every linear (whole
    heads of q/k/v, columns of gate/up, input rows and their groups of o/down)."""
    src, lay, _ = awq_model
    convert(src, tmp_path / "ws", "turbomind", variant, tp=2)
    full = by_layer(lay)[0]
    for r in range(2):
        part = {}
        for p, (q, z, s) in full.items():
            if p in ("o", "down"):
                k, g = q.shape[0] // 2, z.shape[0] // 2
                part[p] = (q[r * k:(r + 1) * k], z[r * g:(r + 1) * g], s[r * g:(r + 1) * g])
            else:
                n = q.shape[1] // 2
                part[p] = (q[:, r * n:(r + 1) * n], z[:, r * n:(r + 1) * n], s[:, r * n:(r + 1) * n])
        for name, data in tref.workspace_files({0: part}, {"head_dim": HEAD_DIM}, variant, 1).items():
            stem, _, kind = name.rsplit(".", 2)
            assert (weights(tmp_path / "ws") / f"{stem}.{r}.{kind}").read_bytes() == data, (r, name)


@pytest.mark.parametrize("variant", ["w4", "v6"])
def test_awq_to_turbomind_to_awq_is_bit_identical(awq_model, tmp_path, variant):
    src, lay, _ = awq_model
    convert(src, tmp_path / "ws", "turbomind", variant, tp=2)
    convert(tmp_path / "ws", tmp_path / "back", "auto_awq")
    a, b = open_source(src), open_source(tmp_path / "back")
    for m in lay:
        for part in ("qweight", "qzeros", "scales"):
            assert np.array_equal(a.ckpt.get(f"{m}.{part}"), b.ckpt.get(f"{m}.{part}")), (m, part)
        assert np.array_equal(a.read(m).dequantize(), b.read(m).dequantize())


def test_verify_accepts_a_workspace(awq_model, tmp_path):
    src, _, _ = awq_model
    convert(src, tmp_path / "ws", "turbomind", "w4", tp=2)
    result = verify(src, tmp_path / "ws", backend="reference", ms=(1,))
    assert result.ok, result.failures
    assert all(l.integers_equal for l in result.layers) and len(result.layers) == 7


def test_cli_convert_and_verify(awq_model, tmp_path):
    src, _, _ = awq_model
    r = CliRunner().invoke(main, ["convert", str(src), str(tmp_path / "ws"), "--to", "turbomind", "--variant", "v6",
                                  "--tp", "2", "--quiet"])
    assert r.exit_code == 0, r.output
    assert (weights(tmp_path / "ws") / "layers.0.feed_forward.w1.1.qweight").is_file()
    r = CliRunner().invoke(main, ["verify", str(tmp_path / "ws"), str(src), "--backend", "reference"])
    assert r.exit_code == 0 and "OK" in r.output, r.output


# -- refusals, each naming the tensor -----------------------------------------------------------------

def test_kv_heads_that_do_not_split_are_refused(tmp_path):
    src, _, _ = write_model(tmp_path / "awq", kv=2)
    with pytest.raises(UnsupportedError, match=r"k_proj.*kv heads do not divide into tp=4"):
        convert(src, tmp_path / "ws", "turbomind", "w4", tp=4)
    assert not (tmp_path / "ws").exists()
    convert(src, tmp_path / "ws2", "turbomind", "w4", tp=2)  # 2 kv heads over 2 ranks is fine


@pytest.mark.parametrize("variant,tensor", [("w4", "mlp.down_proj.qweight"), ("v6", "mlp.down_proj.qweight")])
def test_dims_that_do_not_split_are_refused(tmp_path, variant, tensor):
    src, _, _ = write_model(tmp_path / "awq", inter=256)
    with pytest.raises(UnsupportedError, match=tensor.replace(".", r"\.")):
        convert(src, tmp_path / "ws", "turbomind", variant, tp=4, dry_run=True)
    with pytest.raises(UnsupportedError, match=tensor.replace(".", r"\.")):
        convert(src, tmp_path / "ws", "turbomind", variant, tp=4)
    assert not (tmp_path / "ws").exists()


def test_group_size_other_than_128_is_refused(tmp_path):
    src, _, _ = write_model(tmp_path / "awq", group_size=64)
    with pytest.raises(UnsupportedError, match=r"layer 'model\.layers\.0\..*group size 64.*128 only"):
        convert(src, tmp_path / "ws", "turbomind")


def test_tp_is_refused_for_other_formats(awq_model, tmp_path):
    src, _, _ = awq_model
    with pytest.raises(UnsupportedError, match="turbomind only"):
        convert(src, tmp_path / "out", "auto_gptq", tp=2)


def test_bf16_float_tensor_that_fp16_cannot_hold_is_refused(tmp_path):
    big = {"model.norm.weight": torch.full((HIDDEN,), 1e6, dtype=torch.bfloat16)}
    src, _, _ = write_model(tmp_path / "awq", extra=big)
    with pytest.raises(UnsupportedError, match=r"'model\.norm\.weight'.*fp16"):
        convert(src, tmp_path / "ws", "turbomind")
    assert not (tmp_path / "ws").exists()


# -- architectures -------------------------------------------------------------------------------------

def test_qwen2_attention_bias_round_trips(tmp_path):
    g = torch.Generator().manual_seed(3)
    extra = {f"model.layers.0.{PARTS[p]}.bias": torch.randn(n, generator=g).to(torch.float16)
             for p, n in (("q", HIDDEN), ("k", 4 * HEAD_DIM), ("v", 4 * HEAD_DIM))}
    src, _, _ = write_model(tmp_path / "awq", extra=extra, config={"model_type": "qwen2",
                                                                   "architectures": ["Qwen2ForCausalLM"]})
    for variant in ("w4", "v6"):
        out = tmp_path / f"ws-{variant}"
        convert(src, out, "turbomind", variant, tp=2)
        s = open_source(out)
        assert s.ckpt.config["model_type"] == "qwen2"
        for n, b in extra.items():
            assert torch.equal(to_torch(s.ckpt.get(n)), b), n
        # the q bias of rank 1 is the rotary-reordered second half of q, then k, then v halves
        rank1 = np.fromfile(weights(out) / "layers.0.attention.w_qkv.1.bias", "<f2")
        q = extra["model.layers.0.self_attn.q_proj.bias"].numpy()
        t = np.arange(HIDDEN // 2) + HIDDEN // 2
        h, w = np.divmod(t, HEAD_DIM)
        assert np.array_equal(rank1[: HIDDEN // 2], q[h * HEAD_DIM + (w % 2) * (HEAD_DIM // 2) + w // 2])
        assert "model.layers.0.self_attn.o_proj.bias" not in s.ckpt.names()


def test_internlm2_packed_wqkv_round_trips(tmp_path):
    """InternLM2's wqkv packs [kv_heads, q_per_kv + 2, head_dim] output columns; kv=2, 4 heads."""
    rng = np.random.default_rng(9)
    kv, nkv = 2, 2 * HEAD_DIM
    names = {"attention.wqkv": (HIDDEN, HIDDEN + 2 * nkv), "attention.wo": (HIDDEN, HIDDEN),
             "feed_forward.w1": (HIDDEN, INTER), "feed_forward.w3": (HIDDEN, INTER), "feed_forward.w2": (INTER, HIDDEN)}
    lay = {f"model.layers.0.{n}": random_layer(rng, K, N, 4, 128, zero_range=(0, 15)) for n, (K, N) in names.items()}
    g = torch.Generator().manual_seed(1)
    tensors = {"model.tok_embeddings.weight": torch.randn(96, HIDDEN, generator=g).half(),
               "model.norm.weight": torch.randn(HIDDEN, generator=g).half(), "output.weight": torch.randn(96, HIDDEN, generator=g).half(),
               "model.layers.0.attention_norm.weight": torch.randn(HIDDEN, generator=g).half(),
               "model.layers.0.ffn_norm.weight": torch.randn(HIDDEN, generator=g).half()}
    for m, L in lay.items():
        tensors |= awq_tensors(m, L)
    cfg = base_config() | {"model_type": "internlm2", "architectures": ["InternLM2ForCausalLM"], "hidden_size": HIDDEN,
                           "intermediate_size": INTER, "num_hidden_layers": 1, "num_attention_heads": HEADS,
                           "num_key_value_heads": kv, "quantization_config": awq_config(next(iter(lay.values())))}
    src = write_folder(tmp_path / "awq", tensors, cfg)
    convert(src, tmp_path / "ws", "turbomind", "w4", tp=2)
    # the fused file holds q, k, v gathered out of the packed columns: check against the reference
    per = HEADS // kv
    col = np.arange((per + 2) * kv * HEAD_DIM).reshape(kv, per + 2, HEAD_DIM)
    W = lay["model.layers.0.attention.wqkv"]
    split = {p: (W.q[:, c], W.z[:, c], W.s[:, c]) for p, c in
             (("q", col[:, :per].reshape(-1)), ("k", col[:, per].reshape(-1)), ("v", col[:, per + 1].reshape(-1)))}
    ref = tref.workspace_files({0: split}, {"head_dim": HEAD_DIM}, "w4", 2)
    for name, data in ref.items():
        if "w_qkv" in name:
            assert (weights(tmp_path / "ws") / name).read_bytes() == data, name
    s = open_source(tmp_path / "ws")
    for m, L in lay.items():
        qt = s.read(m)
        assert np.array_equal(qt.codes(), L.q) and np.array_equal(qt.zeros, L.z), m
    assert torch.equal(to_torch(s.ckpt.get("output.weight")), tensors["output.weight"])


# -- hostile workspaces: one line naming the file ---------------------------------------------------

@pytest.fixture()
def workspace(awq_model, tmp_path):
    src, _, _ = awq_model
    out = tmp_path / "ws"
    convert(src, out, "turbomind", "w4", tp=2)
    return out


def cli_read(path):
    r = CliRunner().invoke(main, ["convert", str(path), str(Path(path).parent / "out"), "--to", "auto_awq", "--quiet"])
    assert r.exit_code not in (0, 1) and "Traceback" not in r.output, r.output  # 1 would be an unhandled exception
    assert len(r.output.strip().splitlines()) == 1, r.output
    return r.output


def test_truncated_file_names_the_file(workspace):
    f = weights(workspace) / "layers.0.attention.w_qkv.1.qweight"
    f.write_bytes(f.read_bytes()[:-5])
    with pytest.raises(InputError, match=r"w_qkv\.1\.qweight: \d+ bytes, expected \d+ .*truncated"):
        s = open_source(workspace)
        s.read("model.layers.0.self_attn.q_proj")
    assert "w_qkv.1.qweight" in cli_read(workspace)


def test_missing_file_and_oversized_file(workspace):
    (weights(workspace) / "layers.0.feed_forward.w2.0.scales_zeros").unlink()
    with pytest.raises(InputError, match=r"w2\.0\.scales_zeros: missing"):
        open_source(workspace).read("model.layers.0.mlp.down_proj")
    f = weights(workspace) / "norm.weight"
    f.write_bytes(f.read_bytes() + b"\0\0")
    with pytest.raises(InputError, match=r"norm\.weight: \d+ bytes, expected"):
        open_source(workspace).ckpt.get("model.norm.weight")


@pytest.mark.parametrize("key", ["head_num", "num_layer", "group_size", "size_per_head"])
def test_missing_config_key_names_file_and_key(workspace, key):
    ini = weights(workspace) / "config.ini"
    ini.write_text("\n".join(l for l in ini.read_text().splitlines() if not l.startswith(f"{key} =")))
    with pytest.raises(InputError, match=rf"config\.ini: missing key '{key}'"):
        open_source(workspace)
    assert "config.ini" in cli_read(workspace)


def test_bad_config_values(workspace):
    ini = weights(workspace) / "config.ini"
    text = ini.read_text()
    ini.write_text(text.replace("head_num = 4", "head_num = four"))
    with pytest.raises(InputError, match=r"config\.ini: key 'head_num' must be a int"):
        open_source(workspace)
    ini.write_text(text.replace("weight_type = int4", "weight_type = fp16"))
    with pytest.raises(InputError, match="only int4"):
        open_source(workspace)
    ini.write_text("not an ini file")
    with pytest.raises(InputError, match=r"config\.ini: not a readable config\.ini"):
        open_source(workspace)


def test_zero_points_out_of_range_are_refused(workspace):
    f = weights(workspace) / "layers.0.attention.wo.0.scales_zeros"
    words = bytearray(f.read_bytes())
    words[0:2] = struct.pack("<e", 64.5)  # zero 0.5: not an integer
    f.write_bytes(bytes(words))
    with pytest.raises(InputError, match=r"wo\.0\.scales_zeros: zero points must be integers"):
        open_source(workspace).read("model.layers.0.self_attn.o_proj")


# -- inspect --target lmdeploy -------------------------------------------------------------------------

def test_inspect_lmdeploy_proposes_a_workspace_and_reads_one(awq_model, tmp_path):
    from repack.targets import inspect_targets
    src, _, _ = awq_model
    _, (r,) = inspect_targets(str(src), ["lmdeploy"])
    assert r.loads
    note = next(n for n in r.notes if "--to turbomind" in n)
    assert "--variant w4" in note and "v6" in note
    convert(src, tmp_path / "ws", "turbomind", "v6")
    _, (r,) = inspect_targets(str(tmp_path / "ws"), ["lmdeploy"])
    assert not r.loads and [f.rule for f in r.failures] == ["turbomind-workspace"]
    assert "0.6-0.9" in r.failures[0].reason
    assert r.fix is not None and r.fix.endswith("--to auto_awq --variant gemm")


def test_inspect_lmdeploy_no_workspace_note_for_group_64(tmp_path):
    from repack.targets import inspect_targets
    src, _, _ = write_model(tmp_path / "awq", group_size=64)
    _, (r,) = inspect_targets(str(src), ["lmdeploy"])
    assert not any("--to turbomind" in n for n in r.notes)


def test_symmetric_gptq_round_trips_through_v6(tmp_path):
    from fixtures.checkpoints import gptq_config, gptq_tensors
    rng = np.random.default_rng(11)
    shapes = {"q": (HIDDEN, HIDDEN), "k": (HIDDEN, 512), "v": (HIDDEN, 512), "o": (HIDDEN, HIDDEN),
              "gate": (HIDDEN, INTER), "up": (HIDDEN, INTER), "down": (INTER, HIDDEN)}
    lay = {f"model.layers.0.{PARTS[p]}": random_layer(rng, K, N, 4, 128, sym=True) for p, (K, N) in shapes.items()}
    tensors = {n: t.to(torch.float16) for n, t in float_tensors(hidden=HIDDEN, layers=1).items()}
    for m, L in lay.items():
        tensors |= gptq_tensors(m, L, "v1", g_idx=False)
    cfg = base_config() | {"hidden_size": HIDDEN, "intermediate_size": INTER, "num_hidden_layers": 1,
                           "num_attention_heads": HEADS, "num_key_value_heads": 4,
                           "quantization_config": gptq_config(next(iter(lay.values())), sym=True)}
    src = write_folder(tmp_path / "gptq", tensors, cfg)
    convert(src, tmp_path / "ws", "turbomind", "v6", tp=4)
    assert "model_format: gptq" in (weights(tmp_path / "ws") / "config.yaml").read_text()
    zeros = np.fromfile(weights(tmp_path / "ws") / "layers.0.attention.wo.3.zeros", "<f2")
    assert set(zeros.tolist()) == {8.0}  # true zeros (GPTQ v1 stores 7: lmdeploy's process_gptq adds 1)
    convert(tmp_path / "ws", tmp_path / "back", "auto_gptq", "v1")
    a, b = open_source(src), open_source(tmp_path / "back")
    for m in lay:
        for part in ("qweight", "qzeros", "scales"):
            assert np.array_equal(a.ckpt.get(f"{m}.{part}"), b.ckpt.get(f"{m}.{part}")), (m, part)


def test_cli_refusal_is_one_line_naming_the_tensor(tmp_path):
    src, _, _ = write_model(tmp_path / "awq", kv=2)
    r = CliRunner().invoke(main, ["convert", str(src), str(tmp_path / "ws"), "--to", "turbomind", "--tp", "4"])
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1 and "self_attn.k_proj" in r.output, r.output
    r = CliRunner().invoke(main, ["convert", str(src), str(tmp_path / "g"), "--to", "gguf", "--tp", "2"])
    assert r.exit_code == 2 and "turbomind only" in r.output
