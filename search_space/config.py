"""The architecture config: typed dataclasses, strict validation, YAML/JSON round trip.

A config describes one decoder. The layer list describes one tower; `towers` copies of it run side
by side. Any layer may be followed by a width reduction, so the residual stream can narrow with depth.

The keys of today's small decoders (`norm`, `position`, `rope_theta`; per layer `mixer`, `conv_kernel`,
`n_kv_head`, `window`, `qk_norm`, `mlp`) are written out only where they differ from their defaults,
which are the paper's GPT-2 blocks: a paper config reads, writes and hashes as it did before they existed.
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
Mixer = Literal["attention", "conv"]
MlpKind = Literal["gelu", "swiglu"]
Norm = Literal["layernorm", "rmsnorm"]
Position = Literal["learned", "rope"]
BLOCK_LAYOUTS: tuple[str, ...] = ("sequential", "parallel")
REDUCTION_KINDS: tuple[str, ...] = ("linear", "conv")
MIXERS: tuple[str, ...] = ("attention", "conv")
MLP_KINDS: tuple[str, ...] = ("gelu", "swiglu")
NORMS: tuple[str, ...] = ("layernorm", "rmsnorm")
POSITIONS: tuple[str, ...] = ("learned", "rope")
DEFAULT_CONV_KERNEL = 3
DEFAULT_ROPE_THETA = 10000.0
ATTENTION_ONLY = {"n_kv_head": None, "window": None, "qk_norm": False}  # layer keys and their defaults
# Keys added after the paper's space: written out only away from their defaults (see the module docstring).
MODEL_KEYS_SINCE_PAPER = ("norm", "position", "rope_theta")
LAYER_KEYS_SINCE_PAPER = ("mixer", "conv_kernel", *ATTENTION_ONLY, "mlp")
SWIGLU_SHARE = 2 / 3  # SwiGLU's hidden width is 2/3 of a GELU MLP's at the same ratio: three matrices, not two

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
    layout: BlockLayout = "sequential"  # sequential: pre-LN GPT block; parallel: mixer ‖ MLP from one norm
    n_head: int = 4  # attention only: a conv mixer has no heads
    mlp_ratio: float = 4.0
    reduction: Reduction | None = None
    mixer: Mixer = "attention"  # conv: LFM2's gated short convolution
    conv_kernel: int = DEFAULT_CONV_KERNEL  # conv mixer only
    n_kv_head: int | None = None  # None: n_head (multi-head); fewer: grouped-query; 1: multi-query
    window: int | None = None  # None: full causal attention; W: each token sees the last W tokens, itself included
    qk_norm: bool = False  # RMSNorm over each head's queries and keys (before rope)
    mlp: MlpKind = "gelu"  # swiglu: silu(gate x) ⊙ up x, then down; hidden width mlp_ratio × 2/3 × width

    @property
    def kv_heads(self) -> int:
        return self.n_head if self.n_kv_head is None else self.n_kv_head

    @property
    def mlp_width_ratio(self) -> float:
        """Hidden width over block width: the MLP ratio, times 2/3 for SwiGLU (Llama's rule)."""
        return self.mlp_ratio * SWIGLU_SHARE if self.mlp == "swiglu" else self.mlp_ratio


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
    norm: Norm = "layernorm"  # every norm of the model; rmsnorm has no bias
    position: Position = "learned"  # rope: rotary positions in every attention layer, no position table
    rope_theta: float = DEFAULT_ROPE_THETA
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
    _check_choice("norm", config.norm, NORMS)
    _check_choice("position", config.position, POSITIONS)
    _check_type("rope_theta", config.rope_theta, (int, float))
    if not (math.isfinite(config.rope_theta) and config.rope_theta > 1):
        raise ConfigError(f"rope_theta: {config.rope_theta!r} must be a finite number above 1")
    if config.position != "rope" and config.rope_theta != DEFAULT_ROPE_THETA:
        raise ConfigError(f"rope_theta: {config.rope_theta!r} only applies with position: rope")
    if not config.layers:
        raise ConfigError("layers: the layer list is empty; a decoder needs at least one layer")
    if len(config.layers) * config.towers > MAX_LAYERS:
        raise ConfigError(f"layers: {len(config.layers)} layers x {config.towers} towers = "
                          f"{len(config.layers) * config.towers} blocks; at most {MAX_LAYERS} are allowed")

    width = config.d_model
    for index, layer in enumerate(config.layers):
        where = f"layers[{index}]"
        _check_choice(f"{where}.layout", layer.layout, BLOCK_LAYOUTS)
        _check_int(f"{where}.n_head", layer.n_head, minimum=1)
        _check_type(f"{where}.mlp_ratio", layer.mlp_ratio, (int, float))
        if not (math.isfinite(layer.mlp_ratio) and layer.mlp_ratio <= MAX_MLP_RATIO):
            raise ConfigError(f"{where}.mlp_ratio: {layer.mlp_ratio!r} must be finite and at most {MAX_MLP_RATIO}")
        _check_choice(f"{where}.mlp", layer.mlp, MLP_KINDS)
        if layer.mlp_ratio <= 0 or mlp_hidden(width, layer.mlp_width_ratio) < 1:
            raise ConfigError(f"{where}.mlp_ratio: {layer.mlp_ratio!r} gives no MLP units at width {width}")
        _check_mixer(index, layer, width, config)
        if layer.reduction is not None:
            heads = layer.n_head if layer.mixer == "attention" else 1
            width = _check_reduction(f"{where}.reduction", layer.reduction, heads, config.block_size)

    if config.tie_head and width != config.d_model:
        raise ConfigError(
            f"tie_head: true needs the final width ({width}) to equal d_model ({config.d_model})"
        )


def _check_mixer(index: int, layer: LayerConfig, width: int, config: DecoderConfig) -> None:
    """The mixer's own keys; a key of the other mixer, set away from its default, is refused."""
    where = f"layers[{index}]"
    _check_choice(f"{where}.mixer", layer.mixer, MIXERS)
    _check_type(f"{where}.qk_norm", layer.qk_norm, bool)
    if layer.mixer == "conv":
        # Like a conv reduction's: a kernel longer than the context only ever sees padding.
        _check_int(f"{where}.conv_kernel", layer.conv_kernel, minimum=1, maximum=config.block_size)
        for name, default in ATTENTION_ONLY.items():
            if getattr(layer, name) != default:
                raise ConfigError(f"{where}.{name}: {getattr(layer, name)!r} only applies to attention mixers "
                                  "(this layer's mixer is conv)")
        return
    if layer.conv_kernel != DEFAULT_CONV_KERNEL:
        raise ConfigError(f"{where}.conv_kernel: {layer.conv_kernel} only applies to conv mixers")
    if width % layer.n_head:
        raise ConfigError(f"{where}.n_head: {layer.n_head} heads do not divide the width {width} at this depth")
    if layer.n_kv_head is not None:
        _check_int(f"{where}.n_kv_head", layer.n_kv_head, minimum=1)
        if layer.n_head % layer.n_kv_head:
            raise ConfigError(f"{where}.n_kv_head: {layer.n_kv_head} KV heads do not divide the {layer.n_head} "
                              "query heads")
    if layer.window is not None:
        # A window of the whole context is full attention: one model, one spelling (and one hash).
        _check_int(f"{where}.window", layer.window, minimum=1, maximum=config.block_size - 1)
    head_dim = width // layer.n_head
    if config.position == "rope" and head_dim % 2:
        raise ConfigError(f"position: rope rotates pairs of channels, but layers[{index}] has {layer.n_head} "
                          f"heads of odd dimension {head_dim} (width {width})")


def _check_reduction(where: str, reduction: Reduction, n_head: int, block_size: int) -> int:
    _check_choice(f"{where}.kind", reduction.kind, REDUCTION_KINDS)
    # A norm over one channel outputs a constant: width 1 would cut the model off its input.
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


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name}: {value!r} is not one of {list(choices)}")


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
    """Plain data in a stable key order; layers without a reduction omit the key, and the keys added
    after the paper's space are left out at their defaults."""
    data = _without_defaults(dataclasses.asdict(config), DecoderConfig, MODEL_KEYS_SINCE_PAPER)
    data["layers"] = [{k: v for k, v in _without_defaults(layer, LayerConfig, LAYER_KEYS_SINCE_PAPER).items()
                       if v is not None} for layer in data["layers"]]
    if not data["provenance"]:
        del data["provenance"]
    return data


def _without_defaults(data: dict[str, Any], cls: type, keys: tuple[str, ...]) -> dict[str, Any]:
    defaults = {f.name: f.default for f in dataclasses.fields(cls)}
    return {k: v for k, v in data.items() if not (k in keys and v == defaults[k])}


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
    if "rope_theta" in data:
        data["rope_theta"] = float(data["rope_theta"])
    for layer in data["layers"]:  # an MLP ratio of 4 builds the same model as 4.0
        layer["mlp_ratio"] = float(layer["mlp_ratio"])
        if layer.get("reduction", {}).get("kernel_size") == 1:
            # A kernel-1 conv is the per-token linear map (the paper's cgpt equals lgpt): one result serves both.
            layer["reduction"]["kind"] = "linear"
        if layer.get("n_kv_head") == layer["n_head"]:
            del layer["n_kv_head"]  # as many KV heads as query heads is plain multi-head attention
        if layer.get("mixer") == "conv":
            del layer["n_head"]  # a conv mixer has no heads
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def summarize(config: DecoderConfig) -> str:
    """One line, e.g. `d128 4L[S4 P4 S4>lin64 S4] x2 towers` or `d128 rope rms 4L[Sc3g Sc3g S4/1qkg Sc3g]`
    (the README's table spells out every token)."""
    model = [f"d{config.d_model}"]
    if config.position == "rope":
        model.append("rope" if config.rope_theta == DEFAULT_ROPE_THETA else f"rope:{config.rope_theta:g}")
    if config.norm == "rmsnorm":
        model.append("rms")
    towers = f" x{config.towers} towers" if config.towers > 1 else ""
    return f"{' '.join(model)} {len(config.layers)}L[{' '.join(map(_layer_token, config.layers))}]{towers}"


def _layer_token(layer: LayerConfig) -> str:
    token = layer.layout[0].upper()
    if layer.mixer == "conv":
        token += f"c{layer.conv_kernel}"
    else:
        token += f"{layer.n_head}"
        token += f"/{layer.n_kv_head}" if layer.kv_heads != layer.n_head else ""
        token += f"w{layer.window}" if layer.window is not None else ""
        token += "qk" if layer.qk_norm else ""
    if layer.mlp_ratio != 4:
        token += f"m{layer.mlp_ratio:g}"
    if layer.mlp == "swiglu":
        token += "g"
    if layer.reduction:
        r = layer.reduction
        token += f">{'lin' if r.kind == 'linear' else f'conv{r.kernel_size}:'}{r.width}"
    return token
