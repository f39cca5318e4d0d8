"""LlamaForCausalLM: one tower of sequential attention blocks with rope, RMSNorm, SwiGLU and one head
count, KV-head count and MLP width (the `llama` preset's shape) is Llama's decoder, so it leaves as
transformers' own class with no custom code."""

from __future__ import annotations

from typing import Any

import torch

from search_space import Decoder, DecoderConfig
from search_space.config import mlp_hidden
from search_space.model import NORM_EPS

from .standard import alike, one_plain_tower, rope_family_config, rope_family_weights

CLASS = "LlamaForCausalLM"


def fits(config: DecoderConfig) -> bool:
    """True when LlamaForCausalLM computes exactly what this config does."""
    return (one_plain_tower(config) and config.norm == "rmsnorm" and config.position == "rope"
            and alike(config.layers, "n_head", "kv_heads", "mlp_ratio")
            and all(layer.mixer == "attention" and layer.window is None and not layer.qk_norm
                    and layer.mlp == "swiglu" for layer in config.layers))


def build(transformers: Any, model: Decoder) -> Any:
    """A LlamaForCausalLM holding `model`'s weights."""
    config = model.config
    layer = config.layers[0]
    llama_config = transformers.LlamaConfig(
        **rope_family_config(config), num_attention_heads=layer.n_head, num_key_value_heads=layer.kv_heads,
        head_dim=config.d_model // layer.n_head, intermediate_size=mlp_hidden(config.d_model, layer.mlp_width_ratio),
        hidden_act="silu", rms_norm_eps=NORM_EPS, attention_bias=config.bias.blocks, mlp_bias=config.bias.blocks,
        attention_dropout=config.dropout,
    )
    llama = transformers.LlamaForCausalLM(llama_config)
    llama.load_state_dict(llama_weights(model))  # strict: every Llama weight comes from ours
    return llama


def llama_weights(model: Decoder) -> dict[str, torch.Tensor]:
    """Our names as Llama's: SwiGLU's gate, fc and proj as gate_proj, up_proj and down_proj."""
    return rope_family_weights(model, "model.norm.weight", {
        "attn.proj": "self_attn.o_proj", "mlp.gate": "mlp.gate_proj", "mlp.fc": "mlp.up_proj",
        "mlp.proj": "mlp.down_proj", "ln_1": "input_layernorm", "ln_2": "post_attention_layernorm"})
