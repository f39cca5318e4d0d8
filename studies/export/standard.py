"""What the standard transformers classes (gpt2.py, llama.py, lfm2.py) ask of a config, and what the
rope families (Llama, LFM2) share: their config's common fields and the renaming of our weights.
Each class has one tower of sequential blocks at one width, and one value per model for the keys a
layer may set differently in decoder-nas."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from search_space import Decoder, DecoderConfig, LayerConfig
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


def rope_family_config(config: DecoderConfig) -> dict[str, Any]:
    """The config fields Llama and LFM2 share: sizes, rope, the tied head, no special tokens."""
    return dict(vocab_size=config.vocab_size, hidden_size=config.d_model, num_hidden_layers=len(config.layers),
                max_position_embeddings=config.block_size,
                rope_parameters={"rope_type": "default", "rope_theta": float(config.rope_theta)},
                tie_word_embeddings=config.tie_head, bos_token_id=None, eos_token_id=None, pad_token_id=None)


def rope_family_weights(model: Decoder, final_norm: str, renamed: dict[str, str]) -> dict[str, torch.Tensor]:
    """Our weights under a Llama-like family's names: the embedding, `final_norm`, the head, and per layer
    `model.layers.{i}.` the fused qkv split into self_attn's q/k/v_proj and each other tensor of ours
    named in `renamed` (our module path within the block: theirs)."""
    ours = model.state_dict()
    weights = {"model.embed_tokens.weight": ours["tok_emb.weight"], final_norm: ours["ln_f.weight"],
               "lm_head.weight": ours["head.weight"]}
    for index, block in enumerate(model.towers[0].layers):
        src, dst = f"towers.0.layers.{index}.", f"model.layers.{index}."
        if block.attn is not None:
            weights.update({f"{dst}self_attn.{name}": tensor
                            for name, tensor in _split_qkv(ours, f"{src}attn.", block.attn).items()})
        for name, tensor in ours.items():
            path, _, kind = name.removeprefix(src).rpartition(".")
            if name.startswith(src) and path in renamed:
                weights[f"{dst}{renamed[path]}.{kind}"] = tensor
    return weights


def _split_qkv(state: dict[str, torch.Tensor], prefix: str, attn: CausalSelfAttention) -> dict[str, torch.Tensor]:
    """Our fused qkv projection as separate q_proj, k_proj and v_proj (weight, and bias where we have one):
    its rows are the query heads, then the KV heads' keys, then their values."""
    widths = [attn.n_head * attn.head_dim, attn.n_kv_head * attn.head_dim, attn.n_kv_head * attn.head_dim]
    split = {}
    for kind in ("weight", "bias"):
        if f"{prefix}qkv.{kind}" in state:
            for name, part in zip(("q_proj", "k_proj", "v_proj"), state[f"{prefix}qkv.{kind}"].split(widths)):
                split[f"{name}.{kind}"] = part.contiguous()
    return split
