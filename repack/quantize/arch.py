"""Decoder architectures the quantizer and eval can run, as data: tensor names and the order of
the linears inside a block. Llama, Mistral and Qwen2 share one block shape (RMSNorm, rotary
attention with grouped KV heads, SiLU-gated MLP); they differ only in q/k/v biases."""

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
    o: str = "self_attn.o_proj"
    gate: str = "mlp.gate_proj"
    up: str = "mlp.up_proj"
    down: str = "mlp.down_proj"
    qkv_bias: bool = False

    @property
    def stages(self) -> tuple[Stage, ...]:
        """The linears of one block in the order their inputs are computed."""
        return (Stage((self.q, self.k, self.v), self.attn_norm, True), Stage((self.o,), self.v, False),
                Stage((self.gate, self.up), self.mlp_norm, True), Stage((self.down,), self.up, False))

    @property
    def linears(self) -> tuple[str, ...]:
        return tuple(name for stage in self.stages for name in stage.linears)

    def prefix(self, i: int) -> str:
        return self.block.format(i=i)


ARCHS = (Arch(("llama", "mistral")), Arch(("qwen2",), qkv_bias=True))


def arch_for(config: dict, where: str = "") -> Arch:
    model_type = str(config.get("model_type", ""))
    for arch in ARCHS:
        if model_type in arch.model_types:
            return arch
    known = ", ".join(t for a in ARCHS for t in a.model_types)
    raise UnsupportedError(f"{where}: model_type {model_type!r} has no block table yet (known: {known})")
