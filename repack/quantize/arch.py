"""Decoder architectures the quantizer and eval can run, as data: tensor names, the order of the
linears inside a block, and the few switches where blocks differ (norm, activation, fused linears,
positions, embedding scale). Facts are from the Hugging Face transformers modeling files named in
each entry's comment; no architecture has code of its own."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UnsupportedError


@dataclass(frozen=True)
class Stage:
    """Linears that read the same input, the op that produces that input (a norm scales it
    per channel; a linear's output rows do too), and the op whose output is scaled when AWQ
    folds its per-channel scales upstream."""

    linears: tuple[str, ...]
    prev: str  # a norm weight, or a linear whose output feeds these linears channel for channel
    prev_is_norm: bool
    prev_rows: tuple[int, int] | None = None  # the rows of a fused prev linear that make the input


@dataclass(frozen=True)
class Arch:
    model_types: tuple[str, ...]
    embed: str = "model.embed_tokens.weight"
    final_norm: str = "model.norm.weight"
    lm_head: str = "lm_head.weight"
    block: str = "model.layers.{i}."
    attn_norm: str = "input_layernorm.weight"
    mlp_norm: str = "post_attention_layernorm.weight"
    q: str = "self_attn.q_proj"
    k: str = "self_attn.k_proj"
    v: str = "self_attn.v_proj"
    qkv: str | None = None  # one linear whose output rows are q, then k, then v (q/k/v unused)
    o: str = "self_attn.o_proj"
    gate: str | None = "mlp.gate_proj"  # None: an ungated MLP, down(act(up(x)))
    up: str = "mlp.up_proj"
    gate_up: str | None = None  # one linear whose output rows are gate, then up (gate/up unused)
    down: str = "mlp.down_proj"
    # "rms": x / rms(x) * w; "rms+1": x / rms(x) * (1 + w); "layer": LayerNorm with weight and bias
    norm: str = "rms"
    eps_key: str | None = "rms_norm_eps"  # None: the eps is fixed (eps_default)
    eps_default: float = 1e-6
    act_keys: tuple[str, ...] = ("hidden_act",)  # the first one the config has names the activation
    act_default: str = "silu"
    act_aliases: tuple[tuple[str, str], ...] = ()  # config name -> the function it means here
    rotary: bool = True
    partial_rotary: bool = False  # rotate the first partial_rotary_factor * head_dim dims only
    sliding_window: bool = False  # the config's sliding_window limits attention (always, when set)
    positions: str | None = None  # learned absolute position embeddings, added to the token embeddings
    position_offset: int = 0  # the row of position 0 in that table
    embed_scale: bool = False  # token embeddings times sqrt(hidden_size), rounded to the model's dtype
    tie_default: bool = False  # tie_word_embeddings when the config does not say
    intermediate_key: str = "intermediate_size"
    requires: tuple[tuple[str, object, str], ...] = ()  # (config key, value it must have if present, why)
    same_as: tuple[tuple[str, str, str], ...] = ()  # (config key, key it must equal if present, why)

    def stages(self, q_rows: int, kv_rows: int, intermediate: int) -> tuple[Stage, ...]:
        """The linears of one block in the order their inputs are computed; the sizes locate v
        inside a fused qkv and up inside a fused gate_up."""
        if self.qkv:
            attn = Stage((self.qkv,), self.attn_norm, True)
            o = Stage((self.o,), self.qkv, False, (q_rows + kv_rows, q_rows + 2 * kv_rows))
        else:
            attn, o = Stage((self.q, self.k, self.v), self.attn_norm, True), Stage((self.o,), self.v, False)
        if self.gate_up:
            mlp = Stage((self.gate_up,), self.mlp_norm, True)
            down = Stage((self.down,), self.gate_up, False, (intermediate, 2 * intermediate))
        else:
            mlp = Stage((self.gate, self.up) if self.gate else (self.up,), self.mlp_norm, True)
            down = Stage((self.down,), self.up, False)
        return attn, o, mlp, down

    @property
    def linears(self) -> tuple[str, ...]:
        attn = (self.qkv,) if self.qkv else (self.q, self.k, self.v)
        mlp = (self.gate_up,) if self.gate_up else ((self.gate, self.up) if self.gate else (self.up,))
        return (*attn, self.o, *mlp, self.down)

    @property
    def no_clip(self) -> tuple[str, ...]:
        """Linears whose output goes through the softmax: AWQ does not clip them."""
        return (self.qkv,) if self.qkv else (self.q, self.k)

    def norm_tensors(self, norm_weight: str) -> tuple[str, ...]:
        """A norm's tensors from its weight's name: the weight, and the bias of a LayerNorm."""
        return (norm_weight, bias_of(norm_weight)) if self.norm == "layer" else (norm_weight,)

    def prefix(self, i: int) -> str:
        return self.block.format(i=i)

    def check(self, config: dict, where: str) -> None:
        model_type = config.get("model_type")
        for key, value, why in self.requires:
            if key in config and config[key] != value:
                raise UnsupportedError(f"{where}: {model_type} with {key}={config[key]!r} is not supported ({why})")
        for key, other, why in self.same_as:
            if config.get(key) is not None and config[key] != config.get(other):
                raise UnsupportedError(f"{where}: {model_type} with {key}={config[key]!r} != {other}="
                                       f"{config.get(other)!r} is not supported ({why})")


def bias_of(weight: str) -> str:
    return weight[: -len("weight")] + "bias"


ARCHS = (
    Arch(("llama",)),
    # mistral: transformers MistralModel masks with create_sliding_window_causal_mask when config.sliding_window is set
    Arch(("mistral",), sliding_window=True),
    Arch(("qwen2",)),
    # phi3/modeling_phi3.py: Phi3Attention.qkv_proj splits its output q | k | v; Phi3MLP.gate_up_proj
    # chunks gate | up and computes up * act(gate); Phi3RotaryEmbedding rotates int(head_dim *
    # partial_rotary_factor) dims; Phi3Model masks with the sliding window when set;
    # configuration_phi3.py: rms_norm_eps defaults to 1e-5
    Arch(("phi3",), qkv="self_attn.qkv_proj", gate=None, gate_up="mlp.gate_up_proj", partial_rotary=True,
         sliding_window=True, eps_default=1e-5),
    # gemma/modeling_gemma.py: GemmaRMSNorm computes in fp32 and multiplies by (1 + weight);
    # GemmaTextScaledWordEmbedding multiplies by hidden_size**0.5 cast to the weight's dtype;
    # configuration_gemma.py: hidden_act "gelu" means the tanh approximation, tie_word_embeddings
    # defaults to True; transformers 4.x read hidden_activation first
    Arch(("gemma",), norm="rms+1", embed_scale=True, tie_default=True, act_keys=("hidden_activation", "hidden_act"),
         act_default="gelu_pytorch_tanh", act_aliases=(("gelu", "gelu_pytorch_tanh"),)),
    # opt/modeling_opt.py: OPTDecoder (model.decoder.*), OPTLearnedPositionalEmbedding with offset 2,
    # nn.LayerNorm (default eps 1e-5) before attention and MLP when do_layer_norm_before, fc1 ->
    # activation_function -> fc2, biases per enable_bias, q scaled by head_dim**-0.5; OPTForCausalLM
    # ties lm_head to embed_tokens (configuration_opt.py: tie_word_embeddings defaults to True)
    Arch(("opt",), embed="model.decoder.embed_tokens.weight", final_norm="model.decoder.final_layer_norm.weight",
         block="model.decoder.layers.{i}.", attn_norm="self_attn_layer_norm.weight", mlp_norm="final_layer_norm.weight",
         o="self_attn.out_proj", gate=None, up="fc1", down="fc2", norm="layer", eps_key=None, eps_default=1e-5,
         act_keys=("activation_function",), act_default="relu", rotary=False,
         positions="model.decoder.embed_positions.weight", position_offset=2, tie_default=True, intermediate_key="ffn_dim",
         requires=(("do_layer_norm_before", True, "post-norm blocks"),
                   ("_remove_final_layer_norm", False, "no final norm"),
                   ("layer_norm_elementwise_affine", True, "norms without weights")),
         same_as=(("word_embed_proj_dim", "hidden_size", "project_in/project_out are not implemented"),)),
)


def arch_for(config: dict, where: str = "") -> Arch:
    model_type = str(config.get("model_type", ""))
    for arch in ARCHS:
        if model_type in arch.model_types:
            arch.check(config, where)
            return arch
    known = ", ".join(t for a in ARCHS for t in a.model_types)
    raise UnsupportedError(f"{where}: model_type {model_type!r} has no block table yet (known: {known})")
