"""The search space: a YAML file of choices, encoded so every sample is a valid architecture.

Two spaces ship: `paper` (the paper's blocks: depth, width, heads, MLP ratio, layout, reductions,
towers) and `modern` (the same plus a choice for each of today's blocks: rope, RMSNorm, a tied head;
per layer the mixer, KV heads, a window, qk-norm and the MLP kind). A key of today's blocks left out
of a space is not drawn at all, so a space written before they existed samples exactly as it did:
the same parameters in the same order, and its studies reopen and reuse their results.

Two encodings. `per_layer` (the default) draws each layer's layout, MLP ratio and whether the width
narrows after it separately, for every layer slot up to the deepest `n_layer` (the unused slots
too). `pattern` makes each choice once for all layers: one layout pattern, one reduction rule (kind,
every how many layers, by what factor), one MLP ratio. Per-layer searched better once trained long
(docs/decisions.md): the winners at 2000 steps were shallow stacks that mix block kinds and MLP
ratios, which only it can express. Either way every parameter is sampled on every trial, so the
sampler sees a fixed space (Optuna's GP and NSGA-II samplers fall back to random sampling on
conditional parameters), and the decoder derived from any sample passes validation by
construction: widths are rounded to a multiple of the head count and never go below `min_head_dim`
per head.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

import optuna
import yaml

from search_space import DecoderConfig, LayerConfig, Reduction, architecture_hash
from search_space.config import MAX_LAYERS, MAX_MLP_RATIO, MAX_TOWERS, MAX_WIDTH, MIXERS, MLP_KINDS, NORMS, POSITIONS
from search_space.presets import lfm2_attention_layers

from .errors import StudyError

LAYOUTS = ("sequential", "parallel", "alternate")  # alternate: sequential, parallel, sequential, ...
REDUCTIONS = ("none", "linear", "conv")
ENCODINGS = ("pattern", "per_layer")
SHIPPED_SPACES = {"paper": "paper_space.yaml", "modern": "modern_space.yaml"}  # --space NAME
DEFAULT_SPACE = "modern"  # it beat paper on every seed (docs/decisions.md, "The default space")
# Today's blocks, drawn after the paper's choices and only where the space names them.
MODEL_BLOCKS = ("position", "norm", "tie_head")
LAYER_BLOCKS = ("mixer", "kv_ratio", "window", "qk_norm", "mlp")
ATTENTION_BLOCKS = ("kv_ratio", "window", "qk_norm")  # a conv mixer takes none of them
BLOCK_VALUES: dict[str, tuple[Any, ...]] = {"position": POSITIONS, "norm": NORMS, "tie_head": (False, True),
                                            "mixer": MIXERS, "qk_norm": (False, True), "mlp": MLP_KINDS}
NO_WINDOW = "none"  # a window choice: full attention; any other is a fraction of the context
OPTIONAL_KEYS = ("min_head_dim", "encoding", *MODEL_BLOCKS, *LAYER_BLOCKS)
# The deepest a space may search: the per-layer encoding draws 3 parameters per layer slot (8 in modern) on every
# sample, so a sample's cost and storage grow with it (docs/decisions.md, benchmarks/space_depth.py).
MAX_SPACE_DEPTH = 64
_LARGEST = {  # choice -> (its largest value, why)
    "n_layer": (MAX_SPACE_DEPTH, "the deepest a search space may reach (every sample draws every layer slot)"),
    "d_model": (MAX_WIDTH, "the widest a decoder may be"),
    "mlp_ratio": (MAX_MLP_RATIO, "the largest MLP ratio a decoder may have"),
    "towers": (MAX_TOWERS, "the most towers a decoder may have"),
}


@dataclass(frozen=True)
class IntRange:
    low: int
    high: int


@dataclass(frozen=True)
class SearchSpace:
    n_layer: IntRange
    d_model: tuple[int, ...]
    n_head: tuple[int, ...]
    mlp_ratio: tuple[float, ...]
    layout: tuple[str, ...]
    reduction: tuple[str, ...]
    conv_kernel: tuple[int, ...]
    reduce_every: IntRange
    reduce_factor: tuple[float, ...]
    towers: tuple[int, ...]
    min_head_dim: int = 8  # reductions stop before a head would get fewer channels than this
    encoding: str = "per_layer"  # or pattern: one layout pattern, MLP ratio and reduction rule for all layers
    # Today's blocks; None: not drawn, the paper's block (and a space stored without the key reads back so).
    position: tuple[str, ...] | None = None  # learned, rope
    norm: tuple[str, ...] | None = None  # layernorm, rmsnorm
    tie_head: tuple[bool, ...] | None = None  # tied only where the final width is d_model
    mixer: tuple[str, ...] | None = None  # attention, conv (pattern: conv places attention as LFM2 does)
    kv_ratio: tuple[int, ...] | None = None  # query heads per KV head (kv_heads below)
    window: tuple[str | float, ...] | None = None  # none, or a fraction of the context (window_tokens below)
    qk_norm: tuple[bool, ...] | None = None
    mlp: tuple[str, ...] | None = None  # gelu, swiglu

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        return {key: list(value) if isinstance(value, tuple) else value for key, value in data.items()
                if value is not None}

    def blocks(self, keys: tuple[str, ...]) -> dict[str, list[Any]]:
        """The choices of today's blocks among `keys` that this space draws, in draw order."""
        return {key: list(getattr(self, key)) for key in keys if getattr(self, key) is not None}

    def sample(self, trial: optuna.Trial, vocab_size: int, block_size: int) -> DecoderConfig:
        """Draw every parameter (fixed space), then derive one valid decoder from them."""
        return self.decode(vocab_size, block_size, **self._draw(trial))

    def _draw(self, trial: optuna.Trial) -> dict[str, Any]:
        """Every parameter suggested to `trial`, as `decode`'s keyword arguments."""
        # The draw order is kept stable: a seeded random sampler gives the same architectures as before.
        choice = trial.suggest_categorical
        n_layer = trial.suggest_int("n_layer", self.n_layer.low, self.n_layer.high)
        pattern = self.encoding == "pattern"
        reduce_every = trial.suggest_int("reduce_every", self.reduce_every.low, self.reduce_every.high) if pattern else 0
        d_model, n_head = choice("d_model", list(self.d_model)), choice("n_head", list(self.n_head))
        slots = range(self.n_layer.high)
        if pattern:
            mlp_ratio, layout = choice("mlp_ratio", list(self.mlp_ratio)), choice("layout", list(self.layout))
            layouts = [_pattern_layout(layout, index) for index in range(n_layer)]
            mlp_ratios = [mlp_ratio] * n_layer
            # the paper narrows after every 2nd layer, the last one included
            reduce_after = [(index + 1) % reduce_every == 0 for index in range(n_layer)]
        else:
            layouts = [choice(f"layout_{index}", self._block_layouts()) for index in slots][:n_layer]
            mlp_ratios = [choice(f"mlp_ratio_{index}", list(self.mlp_ratio)) for index in slots][:n_layer]
            reduce_after = [choice(f"reduce_after_{index}", [False, True]) for index in slots][:n_layer]
        reduction, conv_kernel = choice("reduction", list(self.reduction)), choice("conv_kernel", list(self.conv_kernel))
        reduce_factor, towers = choice("reduce_factor", list(self.reduce_factor)), choice("towers", list(self.towers))
        model_blocks = {key: choice(key, options) for key, options in self.blocks(MODEL_BLOCKS).items()}
        if pattern:
            rule = {key: choice(key, options) for key, options in self.blocks(LAYER_BLOCKS).items()}
            layer_blocks = [_pattern_blocks(rule, index, n_layer) for index in range(n_layer)]
        else:
            drawn = {key: [choice(f"{key}_{index}", options) for index in slots]
                     for key, options in self.blocks(LAYER_BLOCKS).items()}
            layer_blocks = [{key: values[index] for key, values in drawn.items()} for index in range(n_layer)]
        return dict(layouts=layouts, mlp_ratios=mlp_ratios, reduce_after=reduce_after, d_model=d_model,
                    n_head=n_head, reduction=reduction, conv_kernel=conv_kernel, reduce_factor=reduce_factor,
                    towers=towers, model_blocks=model_blocks, layer_blocks=layer_blocks)

    def params_for(self, config: DecoderConfig) -> dict[str, Any] | None:
        """Parameters from which `sample` builds `config`, or None if the space cannot build it.

        An enqueued preset suggests them, so the sampler learns from the presets like from any
        other trial. The parameters a config fixes are read off it; the rest (layout pattern,
        reduction rule, what a conv layer's attention keys were) are tried until one decodes to the
        same architecture.
        """
        layers = config.layers
        heads = {layer.n_head for layer in layers if layer.mixer == "attention"}  # a conv mixer has none
        kinds = {layer.reduction.kind for layer in layers if layer.reduction} or {"none"}
        if len(heads) > 1 or len(kinds) != 1:
            return None
        n_head = next(iter(heads), 0)  # 0: only conv mixers, whose reductions may still round to any head count
        candidates = self.choices()  # what the config fixes is read off it; the rest is tried
        candidates.update(n_layer=[len(layers)], d_model=[config.d_model], n_head=list(heads) or candidates["n_head"],
                          towers=[config.towers], reduction=list(kinds))
        for key in ("position", "norm", "tie_head"):
            fixed = key != "tie_head" or config.final_width == config.d_model  # a narrowed head is never tied
            if key in candidates and fixed:
                candidates[key] = [value for value in candidates[key] if value == getattr(config, key)]

        def matching(key: str, options: list[Any], indices: list[int]) -> list[Any]:
            """The options that give layers `indices` their block `key`; the first option where none depends on it."""
            at = [i for i in indices if key not in ATTENTION_BLOCKS or layers[i].mixer == "attention"]
            rule = self.encoding == "pattern"
            return [value for value in options if all(
                _gives(key, _pattern_blocks({key: value}, i, len(layers))[key] if rule else value, layers[i], n_head,
                       config.block_size) for i in at)] if at else options[:1]

        if self.encoding == "pattern":
            candidates["mlp_ratio"] = [layers[0].mlp_ratio]
            for key in self.blocks(LAYER_BLOCKS):
                candidates[key] = matching(key, candidates[key], list(range(len(layers))))
        else:  # unused slots take any value: the first that the space offers
            for index in range(self.n_layer.high):
                layer = layers[index] if index < len(layers) else None
                candidates[f"layout_{index}"] = [layer.layout] if layer else candidates[f"layout_{index}"][:1]
                candidates[f"mlp_ratio_{index}"] = [layer.mlp_ratio if layer else self.mlp_ratio[0]]
                candidates[f"reduce_after_{index}"] = [bool(layer and layer.reduction)]
                for key in self.blocks(LAYER_BLOCKS):
                    candidates[f"{key}_{index}"] = matching(key, candidates[f"{key}_{index}"], [index] if layer else [])
        wanted = architecture_hash(config)
        for values in itertools.product(*candidates.values()):
            replayed = self._replay(dict(zip(candidates, values)), config.vocab_size, config.block_size)
            if replayed is not None and architecture_hash(replayed[0]) == wanted:
                return replayed[1]
        return None

    def config_from_params(self, params: dict[str, Any], vocab_size: int, block_size: int) -> DecoderConfig | None:
        """The decoder `sample` builds from these parameters, or None if the space does not offer them."""
        replayed = self._replay(params, vocab_size, block_size)
        return replayed[0] if replayed is not None else None

    def _replay(self, params: dict[str, Any], vocab_size: int, block_size: int) -> tuple[DecoderConfig, dict[str, Any]] | None:
        """`sample` answered from `params`: the decoder and the parameters in the space's spelling."""
        replay = _Replay(params)
        try:
            return self.sample(replay, vocab_size, block_size), replay.chosen  # type: ignore[arg-type]
        except _NotInSpace:
            return None

    def choices(self) -> dict[str, list[Any]]:
        """Every parameter `sample` draws, with the values it may take, in draw order."""
        recorder = _Recorder()
        self._draw(recorder)  # type: ignore[arg-type]  # drawn, not decoded: no decoder, so no context to fit
        return recorder.choices

    def neighbours(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        """The parameter sets one change away: a numeric choice moves one step in sorted order,
        any other choice (layout, reduction kind, narrow here or not) takes each other value."""
        found = []
        for name, options in self.choices().items():
            if name not in params or params[name] not in options:
                continue
            if all(isinstance(o, (int, float)) and not isinstance(o, bool) for o in options):
                ordered = sorted(options)
                at = ordered.index(params[name])
                others = ordered[max(at - 1, 0):at] + ordered[at + 1:at + 2]
            else:
                others = [o for o in options if o != params[name]]
            found += [{**params, name: other} for other in others]
        return found

    def check_buildable(self, block_size: int) -> None:
        """Refuses a space some sample of which no decoder of context `block_size` may be (a conv kernel
        longer than the context), or whose choices _check_choices refuses. Checked where a study is made
        or continued; a stored space is read as it was made."""
        _check_choices(self, "space")
        if "conv" in self.reduction and max(self.conv_kernel) > block_size:
            raise StudyError(f"space.conv_kernel: {max(self.conv_kernel)} is longer than the context "
                             f"(block_size {block_size}); a causal kernel sees at most block_size tokens")

    def _block_layouts(self) -> list[str]:
        """The block kinds the layout choices use (alternate offers both)."""
        return sorted({_pattern_layout(layout, index) for layout in self.layout for index in (0, 1)})

    def decode(self, vocab_size: int, block_size: int, *, layouts: list[str], mlp_ratios: list[float],
               reduce_after: list[bool], d_model: int, n_head: int, reduction: str, conv_kernel: int,
               reduce_factor: float, towers: int, model_blocks: dict[str, Any] | None = None,
               layer_blocks: list[dict[str, Any]] | None = None) -> DecoderConfig:
        model_blocks = model_blocks or {}
        # rope turns pairs of channels: a narrowed width stays a multiple of 2 channels per head
        step = n_head * (2 if model_blocks.get("position") == "rope" else 1)
        layers, width = [], d_model
        for index, (layout, mlp_ratio, narrow) in enumerate(zip(layouts, mlp_ratios, reduce_after)):
            narrowed = None
            if reduction != "none" and narrow:
                target = int(width * reduce_factor) // step * step
                if target >= n_head * self.min_head_dim and target < width:  # never below min_head_dim per head
                    kernel = conv_kernel if reduction == "conv" else 1
                    narrowed = Reduction(kind=reduction, width=target, kernel_size=kernel)
                    width = target
            blocks = _layer_keys(layer_blocks[index] if layer_blocks else {}, n_head, block_size)
            layers.append(LayerConfig(layout=layout, n_head=n_head, mlp_ratio=mlp_ratio, reduction=narrowed,
                                      **blocks))
        model = {key: model_blocks[key] for key in ("position", "norm") if key in model_blocks}
        return DecoderConfig(vocab_size=vocab_size, block_size=block_size, d_model=d_model,
                             layers=tuple(layers), towers=towers,
                             tie_head=model_blocks.get("tie_head", False) and width == d_model, **model)


def kv_heads(n_head: int, kv_ratio: int) -> int:
    """KV heads for `kv_ratio` query heads per KV head: the most that divide the heads and are at most
    n_head / kv_ratio, at least one (2 heads at ratio 4: one KV head, as the llama preset has)."""
    return max([k for k in range(1, n_head + 1) if n_head % k == 0 and k * kv_ratio <= n_head], default=1)


def window_tokens(window: str | float, block_size: int) -> int | None:
    """A window choice in tokens: a fraction of the context, at least 1; none, or a window of the whole
    context, is full attention (None)."""
    if window == NO_WINDOW:
        return None
    tokens = max(1, round(float(window) * block_size))
    return tokens if tokens < block_size else None


def _layer_keys(blocks: dict[str, Any], n_head: int, block_size: int) -> dict[str, Any]:
    """One layer's LayerConfig keys from its drawn blocks; a conv mixer takes none of attention's."""
    keys = {"mlp": blocks["mlp"]} if "mlp" in blocks else {}
    if blocks.get("mixer") == "conv":
        return {**keys, "mixer": "conv"}
    if "kv_ratio" in blocks:
        kv = kv_heads(n_head, blocks["kv_ratio"])
        keys["n_kv_head"] = kv if kv != n_head else None  # as many as the heads: plain multi-head attention
    if "window" in blocks:
        keys["window"] = window_tokens(blocks["window"], block_size)
    if "qk_norm" in blocks:
        keys["qk_norm"] = blocks["qk_norm"]
    return keys


def _gives(key: str, value: Any, layer: LayerConfig, n_head: int, block_size: int) -> bool:
    """Whether drawing `value` for block `key` gives this layer's block."""
    if key == "kv_ratio":
        return kv_heads(n_head, value) == layer.kv_heads
    if key == "window":
        return window_tokens(value, block_size) == layer.window
    return value == getattr(layer, key)


def _pattern_blocks(rule: dict[str, Any], index: int, n_layer: int) -> dict[str, Any]:
    """Layer `index`'s blocks under one rule for all layers: the same everywhere, except that a conv rule
    keeps attention where LFM2 places it (a stack of short convs alone sees only a few tokens back)."""
    if rule.get("mixer") != "conv":
        return rule
    return {**rule, "mixer": "attention" if index in lfm2_attention_layers(n_layer) else "conv"}


class _NotInSpace(Exception):
    pass


class _Replay:
    """Stands in for a trial: answers the space's suggestions from given values, refusing any the
    space does not offer, and keeps the space's own spelling of each (4, not 4.0)."""

    def __init__(self, values: dict[str, Any]):
        self.values, self.chosen = values, {}

    def suggest_int(self, name: str, low: int, high: int) -> int:
        if name not in self.values or not low <= self.values[name] <= high:
            raise _NotInSpace(name)
        self.chosen[name] = self.values[name]
        return self.values[name]

    def suggest_categorical(self, name: str, choices: list[Any]) -> Any:
        if name not in self.values or self.values[name] not in choices:
            raise _NotInSpace(name)
        self.chosen[name] = choices[choices.index(self.values[name])]
        return self.chosen[name]


class _Recorder:
    """Stands in for a trial: records each parameter's choices and answers the first."""

    def __init__(self) -> None:
        self.choices: dict[str, list[Any]] = {}

    def suggest_int(self, name: str, low: int, high: int) -> int:
        self.choices[name] = list(range(low, high + 1))
        return low

    def suggest_categorical(self, name: str, choices: list[Any]) -> Any:
        self.choices[name] = list(choices)
        return choices[0]


def _pattern_layout(layout: str, index: int) -> str:
    return layout if layout != "alternate" else ("sequential", "parallel")[index % 2]


def space_from_dict(data: Any, where: str = "space") -> SearchSpace:
    if not isinstance(data, dict):
        raise StudyError(f"{where}: expected a mapping of choices")
    known = {f.name: f for f in fields(SearchSpace)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise StudyError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(known)})")
    values: dict[str, Any] = {}
    for name, field in known.items():
        if name not in data:
            if name in OPTIONAL_KEYS:
                continue
            raise StudyError(f"{where}: missing key {name!r}")
        values[name] = _parse_choice(f"{where}.{name}", name, data[name], str(field.type))
    return SearchSpace(**values)


def _check_choices(space: SearchSpace, where: str) -> None:
    """Every pair of choices builds a decoder, and no choice is beyond what a decoder may have or
    deeper than MAX_SPACE_DEPTH."""
    for d_model in space.d_model:
        for n_head in space.n_head:
            if d_model % n_head:
                raise StudyError(f"{where}: d_model {d_model} is not divisible by n_head {n_head}; "
                                 "every pair of choices must be buildable")
            if d_model // n_head < space.min_head_dim:
                raise StudyError(f"{where}: d_model {d_model} with n_head {n_head} gives {d_model // n_head} "
                                 f"channels per head, below min_head_dim {space.min_head_dim}")
            if "rope" in (space.position or ()) and d_model // n_head % 2:
                raise StudyError(f"{where}: d_model {d_model} with n_head {n_head} gives {d_model // n_head} "
                                 "channels per head; rope (in position) turns pairs of channels, so each must be even")
    for name, (largest, why) in _LARGEST.items():
        value = getattr(space, name)
        biggest = value.high if isinstance(value, IntRange) else max(value)
        if biggest > largest:
            raise StudyError(f"{where}.{name}: {biggest} is above {largest}, {why}")
    if space.n_layer.high * max(space.towers) > MAX_LAYERS:
        raise StudyError(f"{where}.n_layer: {space.n_layer.high} layers x {max(space.towers)} towers is above "
                         f"{MAX_LAYERS} blocks, the most a decoder may have")


def _parse_choice(where: str, name: str, value: Any, type_name: str) -> Any:
    if type_name == "IntRange":
        if not (isinstance(value, dict) and set(value) == {"low", "high"}
                and all(isinstance(v, int) and not isinstance(v, bool) for v in value.values())
                and 1 <= value["low"] <= value["high"]):
            raise StudyError(f"{where}: expected {{low: N, high: M}} with 1 <= N <= M, got {value!r}")
        return IntRange(**value)
    if name == "encoding":
        if value not in ENCODINGS:
            raise StudyError(f"{where}: expected one of {list(ENCODINGS)}, got {value!r}")
        return value
    if type_name == "int":
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise StudyError(f"{where}: expected a whole number >= 1, got {value!r}")
        return value
    if not isinstance(value, list) or not value:
        raise StudyError(f"{where}: expected a non-empty list of choices, got {value!r}")
    allowed = {"layout": LAYOUTS, "reduction": REDUCTIONS, **BLOCK_VALUES}.get(name)
    for item in value:
        if allowed is not None:
            if item not in allowed or type(item) is not type(allowed[0]):  # 1 is not true, 0 not false
                raise StudyError(f"{where}: {item!r} is not one of {list(allowed)}")
        elif name == "window" and item == NO_WINDOW:
            continue
        elif isinstance(item, bool) or not isinstance(item, (int, float)) or not (math.isfinite(item) and item > 0):
            raise StudyError(f"{where}: {item!r} is not a finite positive number"
                             + (f" or {NO_WINDOW!r}" if name == "window" else ""))  # nan would fail every trial
        elif name in ("reduce_factor", "window") and not 0 < item < 1:
            raise StudyError(f"{where}: {item!r} must be between 0 and 1"
                             + (" (a fraction of the context)" if name == "window" else ""))
        elif name in ("d_model", "n_head", "conv_kernel", "towers", "kv_ratio") and not isinstance(item, int):
            raise StudyError(f"{where}: {item!r} must be a whole number")
    return tuple(value)


def load_space(space: str | Path | None = None) -> SearchSpace:
    """A shipped space by name (`paper`, `modern`; None: the default) or a space YAML file."""
    if space is None or str(space) in SHIPPED_SPACES:
        name = DEFAULT_SPACE if space is None else str(space)
        text = resources.files("studies").joinpath(SHIPPED_SPACES[name]).read_text()
        where = f"the {name} space"
    else:
        try:
            text = Path(space).read_text()
        except OSError as exc:
            raise StudyError(f"{space}: cannot read the search space ({exc.strerror or exc}); "
                             f"the shipped ones are {', '.join(SHIPPED_SPACES)}") from exc
        where = str(space)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise StudyError(f"{where}: malformed YAML: {getattr(exc, 'problem', exc)}") from exc
    space = space_from_dict(data, where)
    _check_choices(space, where)  # the file's name in the error
    return space
