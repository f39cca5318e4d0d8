"""Windows as transformers' sliding-window classes (mistral.py, ministral.py, qwen3.py) declare them:
one `sliding_window` W for the model, and per layer `layer_types` "sliding_attention" (a window of W)
or "full_attention". Their W means ours: a token attends to the last W tokens, itself included
(masking_utils.sliding_window_overlay: kv_idx > q_idx - W); their cache keeps W - 1 tokens between
steps and adds the new one, so a decoding step sees the same W keys as ours (docs/export.md). A window
of 1 is the exception: transformers 5.25's cache keeps `[-0:]`, all of its keys, and generation differs."""

from __future__ import annotations

from search_space import DecoderConfig

from .llama import llama_stack


def windows(config: DecoderConfig) -> set[int]:
    """The distinct windows of the config's layers."""
    return {layer.window for layer in config.layers if layer.window is not None}


def one_sliding_window(config: DecoderConfig) -> bool:
    """At most one distinct window (a class has one `sliding_window`), and none of 1 (see above)."""
    return len(windows(config)) <= 1 and 1 not in windows(config)


def windowed_stack(config: DecoderConfig) -> bool:
    """Llama's stack as the sliding-window classes hold it: no biases, at most one window, none of 1."""
    return llama_stack(config) and not config.bias.blocks and one_sliding_window(config)


def layer_types(config: DecoderConfig) -> list[str]:
    return ["sliding_attention" if layer.window is not None else "full_attention" for layer in config.layers]


def sliding_window(config: DecoderConfig) -> int | None:
    """The one window of a config that has at most one (`windows`), None without any."""
    return next(iter(windows(config)), None)
