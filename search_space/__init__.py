"""The decoder design space: a typed, validated architecture config and the builder for it.

The builder (torch) loads on first use (PEP 562): reading and validating configs stays cheap.
"""

import importlib
from typing import Any

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
from .presets import PAPER_PRESETS, PAPER_SHAPE, PRESETS, SHAPE_KEYS, preset

__all__ = [
    "BiasConfig",
    "ConfigError",
    "DecodeState",
    "Decoder",
    "DecoderConfig",
    "LayerConfig",
    "PAPER_PRESETS",
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


def __getattr__(name: str) -> Any:
    if name not in ("Decoder", "DecodeState", "build_decoder"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(".model", __name__), name)
