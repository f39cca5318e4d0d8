"""MistralForCausalLM: Llama's stack (llama.py) with the same window W in every layer and no biases is
Mistral's decoder, whose `sliding_window` applies to every layer, so it leaves as transformers' own
class with no custom code."""

from __future__ import annotations

from typing import Any

from search_space import Decoder, DecoderConfig

from .llama import build_stack, stack_config
from .sliding import sliding_window, windowed_stack

CLASS = "MistralForCausalLM"


def fits(config: DecoderConfig) -> bool:
    """True when MistralForCausalLM computes exactly what this config does."""
    return windowed_stack(config) and all(layer.window is not None and not layer.qk_norm for layer in config.layers)


def build(transformers: Any, model: Decoder) -> Any:
    """A MistralForCausalLM holding `model`'s weights."""
    return build_stack(transformers.MistralForCausalLM, transformers.MistralConfig(
        **stack_config(model.config), sliding_window=sliding_window(model.config)), model)
