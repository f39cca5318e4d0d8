"""Qwen3ForCausalLM: Llama's stack (llama.py) with qk-norm in every layer, no biases, and at most one
window W (in any layers) is Qwen3's decoder: RMSNorm over each head's queries and keys before rope, as
ours (`q_norm`, `k_norm`), windows by `layer_types`. So it leaves as transformers' own class with no
custom code. Qwen3's `attention_bias` would put biases on q, k, v and o but none on the MLP, so a config
with `bias.blocks` stays custom."""

from __future__ import annotations

from typing import Any

from search_space import Decoder, DecoderConfig

from .llama import build_stack, stack_config
from .sliding import layer_types, sliding_window, windowed_stack

CLASS = "Qwen3ForCausalLM"


def fits(config: DecoderConfig) -> bool:
    """True when Qwen3ForCausalLM computes exactly what this config does."""
    return windowed_stack(config) and all(layer.qk_norm for layer in config.layers)


def build(transformers: Any, model: Decoder) -> Any:
    """A Qwen3ForCausalLM holding `model`'s weights."""
    config = model.config
    types = layer_types(config)
    # layer_types decides in transformers; max_window_layers (the older rule: layers from that index on are
    # windowed) is set to the first windowed layer, so readers of the older rule agree when windows are a suffix.
    first_window = types.index("sliding_attention") if "sliding_attention" in types else len(types)
    return build_stack(transformers.Qwen3ForCausalLM, transformers.Qwen3Config(
        **stack_config(config), attention_bias=False, use_sliding_window=first_window < len(types),
        sliding_window=sliding_window(config), layer_types=types, max_window_layers=first_window), model)
