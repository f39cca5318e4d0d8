"""Reference decoders as presets: the paper's four (see PAPER.md) — gpt, pgpt, lgpt, cgpt — and two of
today's small decoders, llama and lfm2, each at any shape.

llama: rope, RMSNorm, SwiGLU at ratio 4, a quarter of the heads as KV heads (at least one), tied
head, sequential blocks. lfm2: the same with LFM2's gated short convolutions (kernel 3) in most
layers and grouped-query attention with qk-norm in the others, placed as LFM2 places them (below).
"""

from __future__ import annotations

from typing import Any, Callable

from .config import MAX_LAYERS, ConfigError, DecoderConfig, LayerConfig, Reduction

# The paper's v4 shape; every preset takes overrides for a study's own shape.
PAPER_SHAPE: dict[str, Any] = {"vocab_size": 50304, "block_size": 1024, "n_layer": 8, "n_head": 8, "d_model": 512}
SHAPE_KEYS = ("vocab_size", "block_size", "n_layer", "n_head", "d_model", "dropout")
# What a preset decides besides the shape: the layer list and any other DecoderConfig fields.
Architecture = Callable[[int, int, int], dict[str, Any]]


def _plain(n_layer: int, n_head: int, d_model: int) -> dict[str, Any]:
    return {"layers": [LayerConfig(n_head=n_head) for _ in range(n_layer)]}


def _towers(n_layer: int, n_head: int, d_model: int) -> dict[str, Any]:
    # ParallelGPT: n_layer blocks split into two full-width towers of n_layer/2.
    if n_layer % 2:
        raise ConfigError(f"n_layer: pgpt splits layers over 2 towers; {n_layer} is odd")
    return {"layers": [LayerConfig(n_head=n_head) for _ in range(n_layer // 2)], "towers": 2}


def _halving(kind: str) -> Architecture:
    # LinearGPT / ConvGPT: after every second block the width halves; the heads stay, head_dim halves.
    def architecture(n_layer: int, n_head: int, d_model: int) -> dict[str, Any]:
        result, width = [], d_model
        for index in range(n_layer):
            reduction = None
            if index % 2 == 1:
                if width % 2:
                    raise ConfigError(f"d_model: {d_model} cannot be halved {n_layer // 2} times (odd width {width})")
                width //= 2
                reduction = Reduction(kind=kind, width=width, kernel_size=1)
            result.append(LayerConfig(n_head=n_head, reduction=reduction))
        return {"layers": result}

    return architecture


MODERN = {"norm": "rmsnorm", "position": "rope", "tie_head": True}  # what llama and lfm2 share besides layers


def _llama_attention(n_head: int, qk_norm: bool = False) -> LayerConfig:
    return LayerConfig(n_head=n_head, n_kv_head=max(1, n_head // 4), qk_norm=qk_norm, mlp="swiglu")


def _llama(n_layer: int, n_head: int, d_model: int) -> dict[str, Any]:
    return {"layers": [_llama_attention(n_head) for _ in range(n_layer)], **MODERN}


def lfm2_attention_layers(n_layer: int) -> list[int]:
    """LFM2's placement: in the first half an attention layer after every two conv layers, in the second
    half every other layer, the last layer a conv; at least one. At 16 layers this is exactly the
    layer_types of LFM2-350M, -700M and -1.2B (attention at 2, 5, 8, 10, 12, 14) and at 4 layers that of
    the tiny random LFM2 test checkpoints (2); 3 of 8 layers at 8, 0.33-0.42 of them from 8 to 32 layers.
    (LFM2-2.6B's 30 layers hold 8 attention layers more sparsely placed than this rule's 12.)"""
    half = (n_layer + 1) // 2
    attention = [i for i in range(half) if i % 3 == 2] + [i for i in range(half, n_layer - 1) if (i - half) % 2 == 0]
    return attention or [n_layer - 1]


def _lfm2(n_layer: int, n_head: int, d_model: int) -> dict[str, Any]:
    attention = set(lfm2_attention_layers(n_layer))
    layers = [_llama_attention(n_head, qk_norm=True) if i in attention else LayerConfig(mixer="conv", mlp="swiglu")
              for i in range(n_layer)]
    return {"layers": layers, **MODERN}


PRESETS: dict[str, Architecture] = {
    "gpt": _plain,
    "pgpt": _towers,
    "lgpt": _halving("linear"),
    "cgpt": _halving("conv"),
    "llama": _llama,
    "lfm2": _lfm2,
}
PAPER_PRESETS = ("gpt", "pgpt", "lgpt", "cgpt")


def preset(name: str, **overrides: Any) -> DecoderConfig:
    """`preset("lgpt", vocab_size=65, block_size=64, n_layer=4, n_head=4, d_model=128)`."""
    if name not in PRESETS:
        raise ConfigError(f"preset: unknown preset {name!r} (choose from {', '.join(PRESETS)})")
    unknown = sorted(set(overrides) - set(SHAPE_KEYS))
    if unknown:
        raise ConfigError(f"preset: unknown override {unknown[0]!r} (known: {', '.join(SHAPE_KEYS)})")
    shape = {**PAPER_SHAPE, "dropout": 0.0, **{k: v for k, v in overrides.items() if v is not None}}
    n_layer = shape["n_layer"]
    # Checked before the layer list is built: a typo of 1e9 layers would otherwise hang here.
    if not isinstance(n_layer, int) or isinstance(n_layer, bool) or not 1 <= n_layer <= MAX_LAYERS:
        raise ConfigError(f"n_layer: {n_layer!r} must be a whole number from 1 to {MAX_LAYERS}")
    architecture = PRESETS[name](shape["n_layer"], shape["n_head"], shape["d_model"])
    architecture["layers"] = tuple(architecture["layers"])
    return DecoderConfig(
        vocab_size=shape["vocab_size"],
        block_size=shape["block_size"],
        d_model=shape["d_model"],
        dropout=shape["dropout"],
        provenance={"preset": name},
        **architecture,
    )
