"""MinistralForCausalLM: Llama's stack (llama.py) with a window W in some layers, full attention in the
others, and no biases is Ministral's decoder (Mistral with `layer_types`), so it leaves as transformers'
own class with no custom code. A window in every layer is Mistral's (mistral.py, tried first)."""

from __future__ import annotations

from typing import Any

from search_space import Decoder, DecoderConfig

from .llama import build_stack, stack_config
from .sliding import layer_types, sliding_window, windowed_stack, windows

CLASS = "MinistralForCausalLM"


def fits(config: DecoderConfig) -> bool:
    """True when MinistralForCausalLM computes exactly what this config does."""
    return windowed_stack(config) and bool(windows(config)) and not any(layer.qk_norm for layer in config.layers)


def build(transformers: Any, model: Decoder) -> Any:
    """A MinistralForCausalLM holding `model`'s weights."""
    config = model.config
    return build_stack(transformers.MinistralForCausalLM, transformers.MinistralConfig(
        **stack_config(config), sliding_window=sliding_window(config), layer_types=layer_types(config)), model)
