"""The paper's four models as exact presets (see PAPER.md): gpt, pgpt, lgpt, cgpt."""

from __future__ import annotations

from typing import Any, Callable

from .config import MAX_LAYERS, ConfigError, DecoderConfig, LayerConfig, Reduction

# The paper's v4 shape; every preset takes overrides for a study's own shape.
PAPER_SHAPE: dict[str, Any] = {"vocab_size": 50304, "block_size": 1024, "n_layer": 8, "n_head": 8, "d_model": 512}
SHAPE_KEYS = ("vocab_size", "block_size", "n_layer", "n_head", "d_model", "dropout")


def _plain(n_layer: int, n_head: int, d_model: int) -> tuple[list[LayerConfig], int]:
    return [LayerConfig(n_head=n_head) for _ in range(n_layer)], 1


def _towers(n_layer: int, n_head: int, d_model: int) -> tuple[list[LayerConfig], int]:
    # ParallelGPT: n_layer blocks split into two full-width towers of n_layer/2.
    if n_layer % 2:
        raise ConfigError(f"n_layer: pgpt splits layers over 2 towers; {n_layer} is odd")
    return [LayerConfig(n_head=n_head) for _ in range(n_layer // 2)], 2


def _halving(kind: str) -> Callable[[int, int, int], tuple[list[LayerConfig], int]]:
    # LinearGPT / ConvGPT: after every second block the width halves; the heads stay, head_dim halves.
    def layers(n_layer: int, n_head: int, d_model: int) -> tuple[list[LayerConfig], int]:
        result, width = [], d_model
        for index in range(n_layer):
            reduction = None
            if index % 2 == 1:
                if width % 2:
                    raise ConfigError(f"d_model: {d_model} cannot be halved {n_layer // 2} times (odd width {width})")
                width //= 2
                reduction = Reduction(kind=kind, width=width, kernel_size=1)
            result.append(LayerConfig(n_head=n_head, reduction=reduction))
        return result, 1

    return layers


PRESETS: dict[str, Callable[[int, int, int], tuple[list[LayerConfig], int]]] = {
    "gpt": _plain,
    "pgpt": _towers,
    "lgpt": _halving("linear"),
    "cgpt": _halving("conv"),
}


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
    layers, towers = PRESETS[name](shape["n_layer"], shape["n_head"], shape["d_model"])
    return DecoderConfig(
        vocab_size=shape["vocab_size"],
        block_size=shape["block_size"],
        d_model=shape["d_model"],
        layers=tuple(layers),
        towers=towers,
        dropout=shape["dropout"],
        provenance={"preset": name},
    )
