"""GPT2LMHeadModel: a plain sequential GPT (one tower, sequential blocks, no reductions, one head count
and MLP width; LayerNorm, learned positions, full multi-head attention, GELU) is exactly GPT-2's block,
so it leaves as transformers' own class with no custom code."""

from __future__ import annotations

from typing import Any

import torch

from search_space import Decoder, DecoderConfig
from search_space.config import mlp_hidden

from .standard import alike, one_plain_tower

CLASS = "GPT2LMHeadModel"
LAYER_NORM_EPS = 1e-5  # torch's nn.LayerNorm default, which search_space.model uses


def fits(config: DecoderConfig) -> bool:
    """True when GPT2LMHeadModel computes exactly what this config does."""
    return (one_plain_tower(config) and config.norm == "layernorm" and config.position == "learned"
            and alike(config.layers, "n_head", "mlp_ratio")
            and all(layer.mixer == "attention" and layer.kv_heads == layer.n_head and layer.window is None
                    and not layer.qk_norm and layer.mlp == "gelu" for layer in config.layers))


def build(transformers: Any, model: Decoder) -> Any:
    """A GPT2LMHeadModel holding `model`'s weights."""
    config = model.config
    layer = config.layers[0]
    gpt2_config = transformers.GPT2Config(
        vocab_size=config.vocab_size, n_positions=config.block_size, n_embd=config.d_model,
        n_layer=len(config.layers), n_head=layer.n_head, n_inner=mlp_hidden(config.d_model, layer.mlp_ratio),
        activation_function="gelu",  # exact (erf) GELU, as F.gelu; GPT-2's own is the tanh approximation
        resid_pdrop=config.dropout, embd_pdrop=config.dropout, attn_pdrop=config.dropout,
        layer_norm_epsilon=LAYER_NORM_EPS, tie_word_embeddings=config.tie_head,
        bos_token_id=None, eos_token_id=None,
    )
    gpt2 = transformers.GPT2LMHeadModel(gpt2_config)
    gpt2.load_state_dict(gpt2_weights(model))  # strict: every GPT-2 weight comes from ours
    return gpt2


def gpt2_weights(model: Decoder) -> dict[str, torch.Tensor]:
    """Our names and layouts as GPT-2's: its Conv1D keeps weights [in, out]; where we have no bias it has zeros."""
    ours = model.state_dict()

    def bias(name: str, width: int) -> torch.Tensor:
        return ours.get(name, torch.zeros(width))

    weights = {"transformer.wte.weight": ours["tok_emb.weight"], "transformer.wpe.weight": ours["pos_emb.weight"],
               "transformer.ln_f.weight": ours["ln_f.weight"],
               "transformer.ln_f.bias": bias("ln_f.bias", model.config.d_model),
               "lm_head.weight": ours["head.weight"]}
    for index in range(len(model.config.layers)):
        src, dst = f"towers.0.layers.{index}.", f"transformer.h.{index}."
        for ours_name, theirs in (("attn.qkv", "attn.c_attn"), ("attn.proj", "attn.c_proj"),
                                  ("mlp.fc", "mlp.c_fc"), ("mlp.proj", "mlp.c_proj")):
            weight = ours[f"{src}{ours_name}.weight"]
            weights[f"{dst}{theirs}.weight"] = weight.t().contiguous()
            weights[f"{dst}{theirs}.bias"] = bias(f"{src}{ours_name}.bias", weight.size(0))
        for norm in ("ln_1", "ln_2"):
            weights[f"{dst}{norm}.weight"] = ours[f"{src}{norm}.weight"]
            weights[f"{dst}{norm}.bias"] = bias(f"{src}{norm}.bias", model.config.d_model)
    return weights
