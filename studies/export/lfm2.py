"""Lfm2ForCausalLM: one tower of sequential blocks with rope, RMSNorm and SwiGLU at one MLP width, each
block's mixer either attention with qk-norm (one head count and KV-head count) or a gated short conv
(one kernel) — the `lfm2` preset's shape, attention in any layers — is LFM2's decoder, so it leaves as
transformers' own class with no custom code. LFM2 has no biases but the conv mixer's (`conv_bias`, on
in_proj, the conv and out_proj), so a config with `bias.blocks` stays custom; so does a stack of conv
mixers only, which transformers 5.25's LFM2 cannot run (its cache asks an attention layer for the mask)."""

from __future__ import annotations

from typing import Any

import torch

from search_space import Decoder, DecoderConfig
from search_space.config import DEFAULT_CONV_KERNEL, mlp_hidden
from search_space.model import NORM_EPS

from .standard import alike, attention_layers, one_plain_tower, rope_family_config, rope_family_weights

CLASS = "Lfm2ForCausalLM"


def fits(config: DecoderConfig) -> bool:
    """True when Lfm2ForCausalLM computes exactly what this config does."""
    attention = attention_layers(config)
    convs = [layer for layer in config.layers if layer.mixer == "conv"]
    return (one_plain_tower(config) and config.norm == "rmsnorm" and config.position == "rope"
            and not config.bias.blocks and bool(attention) and alike(config.layers, "mlp_ratio")
            and all(layer.mlp == "swiglu" for layer in config.layers)
            and alike(attention, "n_head", "kv_heads") and alike(convs, "conv_kernel")
            and all(layer.qk_norm and layer.window is None for layer in attention))


def build(transformers: Any, model: Decoder) -> Any:
    """An Lfm2ForCausalLM holding `model`'s weights."""
    config = model.config
    attention = attention_layers(config)[0]
    kernel = next((layer.conv_kernel for layer in config.layers if layer.mixer == "conv"), DEFAULT_CONV_KERNEL)
    lfm2_config = transformers.Lfm2Config(
        **rope_family_config(config), num_attention_heads=attention.n_head, num_key_value_heads=attention.kv_heads,
        layer_types=["full_attention" if layer.mixer == "attention" else "conv" for layer in config.layers],
        conv_L_cache=kernel, conv_bias=False, norm_eps=NORM_EPS, block_auto_adjust_ff_dim=False,
        intermediate_size=mlp_hidden(config.d_model, config.layers[0].mlp_width_ratio),
    )
    lfm2 = transformers.Lfm2ForCausalLM(lfm2_config)
    lfm2.load_state_dict(lfm2_weights(model))  # strict: every LFM2 weight comes from ours
    return lfm2


def lfm2_weights(model: Decoder) -> dict[str, torch.Tensor]:
    """Our names as LFM2's: SwiGLU's gate, fc and proj as w1, w3 and w2; `embedding_norm` is its final norm."""
    return rope_family_weights(model, "model.embedding_norm.weight", {
        "attn.proj": "self_attn.out_proj", "attn.q_norm": "self_attn.q_layernorm",
        "attn.k_norm": "self_attn.k_layernorm", "conv.in_proj": "conv.in_proj", "conv.conv": "conv.conv",
        "conv.out_proj": "conv.out_proj", "mlp.gate": "feed_forward.w1", "mlp.fc": "feed_forward.w3",
        "mlp.proj": "feed_forward.w2", "ln_1": "operator_norm", "ln_2": "ffn_norm"})
