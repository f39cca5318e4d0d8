"""The decoder design space: a typed, validated architecture config and the builder for it."""

from .config import (
    BiasConfig,
    ConfigError,
    DecoderConfig,
    LayerConfig,
    Reduction,
    architecture_hash,
    config_from_dict,
    config_to_dict,
    config_to_json,
    config_to_yaml,
    load_config,
    save_config,
    summarize,
)
from .model import Decoder, DecodeState, build_decoder
from .presets import PAPER_SHAPE, PRESETS, SHAPE_KEYS, preset

__all__ = [
    "BiasConfig",
    "ConfigError",
    "DecodeState",
    "Decoder",
    "DecoderConfig",
    "LayerConfig",
    "PAPER_SHAPE",
    "PRESETS",
    "Reduction",
    "SHAPE_KEYS",
    "architecture_hash",
    "build_decoder",
    "config_from_dict",
    "config_to_dict",
    "config_to_json",
    "config_to_yaml",
    "load_config",
    "preset",
    "save_config",
    "summarize",
]
