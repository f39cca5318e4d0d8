"""What the standard transformers classes (gpt2.py, llama.py, lfm2.py) ask of a config, and the one
weight split they share. Each class has one tower of sequential blocks at one width, and one value
per model for the keys a layer may set differently in decoder-nas."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from search_space import DecoderConfig, LayerConfig
from search_space.model import CausalSelfAttention


def one_plain_tower(config: DecoderConfig) -> bool:
    """One tower of sequential blocks, no reductions: the residual keeps its width through depth."""
    return config.towers == 1 and all(layer.layout == "sequential" and layer.reduction is None
                                      for layer in config.layers)


def alike(layers: Iterable[LayerConfig], *keys: str) -> bool:
    """Every layer has the same value for each key (true of no layers at all)."""
    layers = list(layers)
    return all(len({getattr(layer, key) for layer in layers}) <= 1 for key in keys)


def attention_layers(config: DecoderConfig) -> list[LayerConfig]:
    return [layer for layer in config.layers if layer.mixer == "attention"]


def split_qkv(state: dict[str, torch.Tensor], prefix: str, attn: CausalSelfAttention) -> dict[str, torch.Tensor]:
    """Our fused qkv projection as separate q_proj, k_proj and v_proj (weight, and bias where we have one):
    its rows are the query heads, then the KV heads' keys, then their values."""
    widths = [attn.n_head * attn.head_dim, attn.n_kv_head * attn.head_dim, attn.n_kv_head * attn.head_dim]
    split = {}
    for kind in ("weight", "bias"):
        if f"{prefix}qkv.{kind}" in state:
            for name, part in zip(("q_proj", "k_proj", "v_proj"), state[f"{prefix}qkv.{kind}"].split(widths)):
                split[f"{name}.{kind}"] = part.contiguous()
    return split
