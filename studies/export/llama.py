"""LlamaForCausalLM: one tower of sequential attention blocks with rope, RMSNorm, SwiGLU and one head
count, KV-head count and MLP width (the `llama` preset's shape) is Llama's decoder, so it leaves as
transformers' own class with no custom code. Mistral, Ministral and Qwen3 are this stack with windows
or qk-norm (mistral.py, ministral.py, qwen3.py): the stack, its config fields and its weight names are
defined here once."""

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
    return llama_stack(config) and all(layer.window is None and not layer.qk_norm for layer in config.layers)


def llama_stack(config: DecoderConfig) -> bool:
    """One plain tower of attention blocks with rope, RMSNorm and SwiGLU, one head count, KV-head count and
    MLP width: Llama's stack, whatever its windows, qk-norm and biases."""
    return (one_plain_tower(config) and config.norm == "rmsnorm" and config.position == "rope"
            and alike(config.layers, "n_head", "kv_heads", "mlp_ratio")
            and all(layer.mixer == "attention" and layer.mlp == "swiglu" for layer in config.layers))


def stack_config(config: DecoderConfig) -> dict[str, Any]:
    """The config fields of Llama's stack, named alike in the Llama, Mistral, Ministral and Qwen3 configs."""
    layer = config.layers[0]
    return dict(**rope_family_config(config), num_attention_heads=layer.n_head, num_key_value_heads=layer.kv_heads,
                head_dim=config.d_model // layer.n_head,
                intermediate_size=mlp_hidden(config.d_model, layer.mlp_width_ratio), hidden_act="silu",
                rms_norm_eps=NORM_EPS, attention_dropout=config.dropout)


def build(transformers: Any, model: Decoder) -> Any:
    """A LlamaForCausalLM holding `model`'s weights."""
    bias = model.config.bias.blocks
    return build_stack(transformers.LlamaForCausalLM, transformers.LlamaConfig(
        **stack_config(model.config), attention_bias=bias, mlp_bias=bias), model)


def build_stack(model_class: Any, hf_config: Any, model: Decoder) -> Any:
    """`model_class` (Llama's stack under any of its names) built from `hf_config`, holding `model`'s weights."""
    hf_model = model_class(hf_config)
    hf_model.load_state_dict(llama_weights(model))  # strict: every weight of theirs comes from ours
    return hf_model


def llama_weights(model: Decoder) -> dict[str, torch.Tensor]:
    """Our names as Llama's: SwiGLU's gate, fc and proj as gate_proj, up_proj and down_proj; qk-norm's gains
    (Qwen3) as q_norm and k_norm."""
    return rope_family_weights(model, "model.norm.weight", {
        "attn.proj": "self_attn.o_proj", "attn.q_norm": "self_attn.q_norm", "attn.k_norm": "self_attn.k_norm",
        "mlp.gate": "mlp.gate_proj", "mlp.fc": "mlp.up_proj", "mlp.proj": "mlp.down_proj",
        "ln_1": "input_layernorm", "ln_2": "post_attention_layernorm"})
