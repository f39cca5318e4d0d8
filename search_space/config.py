"""The architecture config: typed dataclasses, strict validation, YAML/JSON round trip.

A config describes one decoder. The layer list describes one tower; `towers` copies of it run side
by side. Any layer may be followed by a width reduction, so the residual stream can narrow with depth.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

BlockLayout = Literal["sequential", "parallel"]
ReductionKind = Literal["linear", "conv"]
BLOCK_LAYOUTS: tuple[str, ...] = ("sequential", "parallel")
REDUCTION_KINDS: tuple[str, ...] = ("linear", "conv")

# Upper bounds far beyond any model this project trains: they exist so a typo (1e9 for 1e3) is refused
# at once instead of hanging while a model of that size is built or counted.
MAX_VOCAB_SIZE = 2**20
MAX_BLOCK_SIZE = 2**20
MAX_WIDTH = 65536  # d_model and every reduction width
MAX_LAYERS = 1024  # blocks in all, every tower counted: building 1024 takes ~20 s on a 2-core CPU
MAX_TOWERS = 64
MAX_MLP_RATIO = 64


class ConfigError(ValueError):
    """An architecture config that cannot be built; the message names the field and the value."""


@dataclass(frozen=True)
class Reduction:
    """Narrows the residual stream to `width` after a layer (a downsampling point)."""

    kind: ReductionKind
    width: int
    kernel_size: int = 1  # conv only; > 1 mixes neighbouring tokens through causal (left) padding


@dataclass(frozen=True)
class LayerConfig:
    layout: BlockLayout = "sequential"  # sequential: pre-LN GPT block; parallel: attn ‖ MLP from one LN
    n_head: int = 4
    mlp_ratio: float = 4.0
    reduction: Reduction | None = None


@dataclass(frozen=True)
class BiasConfig:
    """Where linear layers carry a bias. The defaults are the paper's: none in blocks and norms."""

    blocks: bool = False
    reductions: bool = True
    tower_inputs: bool = True


@dataclass(frozen=True)
class DecoderConfig:
    vocab_size: int
    block_size: int
    d_model: int
    layers: tuple[LayerConfig, ...]
    towers: int = 1
    dropout: float = 0.0
    tie_head: bool = False
    bias: BiasConfig = field(default_factory=BiasConfig)
    # Free-form notes (preset name, study, trial, metrics); never part of the architecture hash.
    provenance: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(self.layers))  # accept any sequence, stay hashable
        validate(self)

    @property
    def widths(self) -> list[int]:
        """Residual width entering each layer, then the final width (len(layers) + 1 values)."""
        widths = [self.d_model]
        for layer in self.layers:
            widths.append(layer.reduction.width if layer.reduction else widths[-1])
        return widths

    @property
    def final_width(self) -> int:
        return self.widths[-1]

    def replace(self, **changes: Any) -> DecoderConfig:
        return dataclasses.replace(self, **changes)


def validate(config: DecoderConfig) -> None:
    _check_int("vocab_size", config.vocab_size, minimum=1, maximum=MAX_VOCAB_SIZE)
    _check_int("block_size", config.block_size, minimum=1, maximum=MAX_BLOCK_SIZE)
    _check_int("d_model", config.d_model, minimum=2, maximum=MAX_WIDTH)
    _check_int("towers", config.towers, minimum=1, maximum=MAX_TOWERS)
    _check_type("dropout", config.dropout, (int, float))
    if not 0.0 <= config.dropout < 1.0:
        raise ConfigError(f"dropout: {config.dropout!r} must be in [0, 1)")
    _check_type("tie_head", config.tie_head, bool)
    for name in ("blocks", "reductions", "tower_inputs"):
        _check_type(f"bias.{name}", getattr(config.bias, name), bool)
    if not config.layers:
        raise ConfigError("layers: the layer list is empty; a decoder needs at least one layer")
    if len(config.layers) * config.towers > MAX_LAYERS:
        raise ConfigError(f"layers: {len(config.layers)} layers x {config.towers} towers = "
                          f"{len(config.layers) * config.towers} blocks; at most {MAX_LAYERS} are allowed")

    width = config.d_model
    for index, layer in enumerate(config.layers):
        where = f"layers[{index}]"
        if layer.layout not in BLOCK_LAYOUTS:
            raise ConfigError(f"{where}.layout: {layer.layout!r} is not one of {list(BLOCK_LAYOUTS)}")
        _check_int(f"{where}.n_head", layer.n_head, minimum=1)
        _check_type(f"{where}.mlp_ratio", layer.mlp_ratio, (int, float))
        if not (math.isfinite(layer.mlp_ratio) and layer.mlp_ratio <= MAX_MLP_RATIO):
            raise ConfigError(f"{where}.mlp_ratio: {layer.mlp_ratio!r} must be finite and at most {MAX_MLP_RATIO}")
        if layer.mlp_ratio <= 0 or mlp_hidden(width, layer.mlp_ratio) < 1:
            raise ConfigError(f"{where}.mlp_ratio: {layer.mlp_ratio!r} gives no MLP units at width {width}")
        if width % layer.n_head:
            raise ConfigError(f"{where}.n_head: {layer.n_head} heads do not divide the width {width} at this depth")
        if layer.reduction is not None:
            width = _check_reduction(f"{where}.reduction", layer.reduction, layer.n_head, config.block_size)

    if config.tie_head and width != config.d_model:
        raise ConfigError(
            f"tie_head: true needs the final width ({width}) to equal d_model ({config.d_model})"
        )


def _check_reduction(where: str, reduction: Reduction, n_head: int, block_size: int) -> int:
    if reduction.kind not in REDUCTION_KINDS:
        raise ConfigError(f"{where}.kind: {reduction.kind!r} is not one of {list(REDUCTION_KINDS)}")
    # A LayerNorm over one channel outputs a constant: width 1 would cut the model off its input.
    _check_int(f"{where}.width", reduction.width, minimum=2, maximum=MAX_WIDTH)
    # A causal kernel longer than the context would only ever see padding beyond block_size.
    _check_int(f"{where}.kernel_size", reduction.kernel_size, minimum=1, maximum=block_size)
    if reduction.kind == "linear" and reduction.kernel_size != 1:
        raise ConfigError(f"{where}.kernel_size: {reduction.kernel_size} only applies to conv reductions")
    if reduction.width < n_head:
        raise ConfigError(
            f"{where}.width: {reduction.width} leaves fewer than 1 channel per head ({n_head} heads)"
        )
    return reduction.width


def mlp_hidden(width: int, mlp_ratio: float) -> int:
    return int(round(width * mlp_ratio))


def _check_type(name: str, value: Any, types: type | tuple[type, ...]) -> None:
    # bool is an int subclass in Python; a YAML `true` for a count is a mistake, not a 1.
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise ConfigError(f"{name}: expected a number, got {value!r}")
    if not isinstance(value, types):
        expected = types.__name__ if isinstance(types, type) else " or ".join(t.__name__ for t in types)
        raise ConfigError(f"{name}: expected {expected}, got {type(value).__name__} {value!r}")


def _check_int(name: str, value: Any, minimum: int, maximum: int | None = None) -> None:
    _check_type(name, value, int)
    if value < minimum:
        raise ConfigError(f"{name}: {value} must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name}: {value} must be at most {maximum}")


# --- dict / YAML / JSON -------------------------------------------------------------------------


def config_to_dict(config: DecoderConfig) -> dict[str, Any]:
    """Plain data in a stable key order; layers without a reduction omit the key."""
    data = dataclasses.asdict(config)
    data["layers"] = [{k: v for k, v in layer.items() if v is not None} for layer in data["layers"]]
    if not data["provenance"]:
        del data["provenance"]
    return data


def config_from_dict(data: Any) -> DecoderConfig:
    """Strict: unknown or missing keys and wrong types raise ConfigError naming the field."""
    top = _fields(data, DecoderConfig, "config")
    layers = top.get("layers")
    if not isinstance(layers, list):
        raise ConfigError(f"layers: expected a list of layers, got {type(layers).__name__}")
    top["layers"] = tuple(_layer_from_dict(item, f"layers[{i}]") for i, item in enumerate(layers))
    if "bias" in top:
        top["bias"] = BiasConfig(**_fields(top["bias"], BiasConfig, "bias"))
    if "provenance" in top and not isinstance(top["provenance"], dict):
        raise ConfigError("provenance: expected a mapping")
    return DecoderConfig(**top)


def _layer_from_dict(data: Any, where: str) -> LayerConfig:
    fields = _fields(data, LayerConfig, where)
    if fields.get("reduction") is not None:
        fields["reduction"] = Reduction(**_fields(fields["reduction"], Reduction, f"{where}.reduction"))
    return LayerConfig(**fields)


def _fields(data: Any, cls: type, where: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")
    required = {
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    missing = sorted(required - set(data))
    if missing:
        raise ConfigError(f"{where}: missing key {missing[0]!r}")
    return dict(data)


def config_to_yaml(config: DecoderConfig) -> str:
    return yaml.safe_dump(config_to_dict(config), sort_keys=False)


def config_to_json(config: DecoderConfig) -> str:
    return json.dumps(config_to_dict(config), indent=2)


def load_config(path: str | Path) -> DecoderConfig:
    """Read a .yaml/.yml or .json config (JSON is YAML, so one parser serves both)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config ({exc.strerror or exc})") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}: malformed YAML{at}: {getattr(exc, 'problem', exc)}") from exc
    try:
        return config_from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    except TypeError as exc:  # a dataclass rejected the shape of a value
        raise ConfigError(f"{path}: {exc}") from exc


def save_config(config: DecoderConfig, path: str | Path) -> Path:
    path = Path(path)
    text = config_to_json(config) if path.suffix == ".json" else config_to_yaml(config)
    path.write_text(text)
    return path


def architecture_hash(config: DecoderConfig) -> str:
    """A canonical hash of what the model computes: provenance and dict order do not change it."""
    data = config_to_dict(config)
    data.pop("provenance", None)
    data["dropout"] = float(data["dropout"])
    for layer in data["layers"]:  # an MLP ratio of 4 builds the same model as 4.0
        layer["mlp_ratio"] = float(layer["mlp_ratio"])
        if layer.get("reduction", {}).get("kernel_size") == 1:
            # A kernel-1 conv is the per-token linear map (the paper's cgpt equals lgpt): one result serves both.
            layer["reduction"]["kind"] = "linear"
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def summarize(config: DecoderConfig) -> str:
    """One line, e.g. `d128 4L[S4 P4 S4>lin64 S4] x2 towers`."""
    parts = []
    for layer in config.layers:
        part = f"{layer.layout[0].upper()}{layer.n_head}"
        if layer.mlp_ratio != 4:
            part += f"m{layer.mlp_ratio:g}"
        if layer.reduction:
            r = layer.reduction
            part += f">{'lin' if r.kind == 'linear' else f'conv{r.kernel_size}:'}{r.width}"
        parts.append(part)
    towers = f" x{config.towers} towers" if config.towers > 1 else ""
    return f"d{config.d_model} {len(config.layers)}L[{' '.join(parts)}]{towers}"
