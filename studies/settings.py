"""A study's settings, fixed when it is created: re-opening it with other settings is refused.

Typed in memory; JSON only where they are written to and read from the study's user attributes,
so every worker on every machine reads the same recipe. The defaults here are the defaults of the
Python API and of the command line alike.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import optuna

from objectives.protocol import LatencyProtocol
from search_space import PAPER_PRESETS, PRESETS, SHAPE_KEYS, ConfigError, preset
from search_space.config import MAX_BLOCK_SIZE
from trainer import DEFAULT_DATA_SPEC, DEFAULT_TEXT_COLUMN, DEFAULT_TOKENIZER
from trainer.recipe import TrainingRecipe

from .errors import ArgumentError, StudyError
from .expect import expect
from .measures import CONSTRAINTS, DEFAULT_OBJECTIVES, OBJECTIVES, check_objectives
from .space import SearchSpace, load_space, space_from_dict

SETTINGS_KEY = "decoder_nas_settings"
# How a study stored before a protocol key existed was timed, for each key it lacks: by wall clock, median
# of the repeats (before estimators), a decode step after half the context (before decode_at). It keeps
# being timed so, or its new trials would not compare with its old ones.
LEGACY_LATENCY = {"estimator": "median", "clock": "wall", "decode_at": "middle"}
RETIRED_KEYS = ("gap_trials",)  # search-time gap trials, dropped: they now run only after a promotion
# The proxy: nanoGPT's CPU recipe compressed to 300 steps (warm-up and cosine scaled with it).
SEARCH_RECIPE = TrainingRecipe(steps=300, warmup_steps=30)
SEARCH_SHAPE = {"n_layer": 4, "n_head": 4, "d_model": 128}  # the presets' shape in the default study
# The reference points a new study trains first, never stopped early; a study stored without the list
# was made when a study enqueued the paper's four only, and keeps them.
STUDY_PRESETS = (*PAPER_PRESETS, "llama", "lfm2")
SEARCH_BLOCK_SIZE = 64
PRESET_SHAPE_KEYS = tuple(key for key in SHAPE_KEYS if key not in ("vocab_size", "block_size"))  # the study's own
DEFAULT_STUDY = "decoder-nas"
DEFAULT_TRIALS = 24  # what `search` trains in one go, all its jobs together
WORKER_TRIALS = 1_000_000  # a worker runs until the study is done (--max-complete) or it is stopped
DEFAULT_GAP_TRIALS = 4  # after a promotion


@dataclass(frozen=True)
class Pruning:
    """Early stopping at rungs (fractions of the steps); see trials._RungPruner for the margin."""

    rungs: tuple[float, ...] = (1 / 3, 2 / 3)
    margin: float = 0.05  # nats at 2/3 of the steps: well above seed noise (docs/decisions.md)

    def __post_init__(self) -> None:
        expect("rungs", self.rungs, (list, tuple))
        expect("margin", self.margin, (int, float))
        for rung in self.rungs:
            expect("rungs", rung, (int, float))
        object.__setattr__(self, "rungs", tuple(float(r) for r in self.rungs))
        if any(not 0 < rung < 1 for rung in self.rungs):
            raise ArgumentError("rungs", list(self.rungs), "must be fractions of the steps, between 0 and 1")
        if not math.isfinite(self.margin) or self.margin < 0:
            raise ArgumentError("margin", self.margin, "must be a finite number >= 0")


@dataclass(frozen=True)
class StudySettings:
    objectives: tuple[str, ...] = DEFAULT_OBJECTIVES
    space: SearchSpace = field(default_factory=load_space)  # or a shipped space's name, or a YAML file
    data: str = DEFAULT_DATA_SPEC
    tokenizer: str = DEFAULT_TOKENIZER
    text_column: str = DEFAULT_TEXT_COLUMN
    content_hash: str = ""  # of the tokenised corpus, filled in when the study is created
    block_size: int = SEARCH_BLOCK_SIZE
    preset_shape: Mapping[str, int] = field(default_factory=lambda: dict(SEARCH_SHAPE))  # of the presets
    presets: tuple[str, ...] = STUDY_PRESETS
    recipe: TrainingRecipe = field(default_factory=lambda: replace(SEARCH_RECIPE))
    constraints: Mapping[str, float] = field(default_factory=dict)  # max_params, max_flops, ... (CONSTRAINTS)
    latency: LatencyProtocol = field(default_factory=LatencyProtocol)
    pruning: Pruning = field(default_factory=Pruning)
    sampler: str = "tpe"
    seed: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.space, (str, Path)):  # a shipped space's name or a YAML file
            object.__setattr__(self, "space", load_space(self.space))
        for name, kind in _FIELD_TYPES.items():  # a wrong type named here, not an AttributeError far away
            expect(name, getattr(self, name), kind, optional=name == "seed")
        if not all(name in PRESETS for name in self.presets):
            raise ArgumentError("presets", self.presets, f"give a sequence of preset names from {', '.join(PRESETS)}")
        object.__setattr__(self, "presets", tuple(self.presets))
        try:
            object.__setattr__(self, "objectives", check_objectives(self.objectives))
        except ValueError as exc:
            raise ArgumentError("objectives", self.objectives, str(exc)) from None
        for name, limit in self.constraints.items():
            if name not in CONSTRAINTS:
                raise ArgumentError("constraints", name, f"unknown constraint (known: {', '.join(CONSTRAINTS)})")
            if isinstance(limit, bool) or not (isinstance(limit, (int, float)) and math.isfinite(limit) and limit > 0):
                raise ArgumentError(name, limit, "must be a positive number")
        if not 1 <= self.block_size <= MAX_BLOCK_SIZE:
            raise ArgumentError("block_size", self.block_size, f"must be a whole number from 1 to {MAX_BLOCK_SIZE:,}")
        object.__setattr__(self, "space", space_from_dict(self.space.to_dict()))  # one built in Python: its keys

    def check_new(self) -> None:
        """Refuses what no study may be made or continued with (a stored study is read as it was made):
        a space not every sample of which builds at this context, or deeper than a space may be; a
        preset shape no preset takes."""
        self.space.check_buildable(self.block_size)
        unknown = sorted(set(self.preset_shape) - set(PRESET_SHAPE_KEYS))
        if unknown:
            raise ArgumentError("preset_shape", dict(self.preset_shape),
                                f"unknown key {unknown[0]!r} (known: {', '.join(PRESET_SHAPE_KEYS)})")
        try:
            preset("gpt", vocab_size=2, block_size=self.block_size, **self.preset_shape)
        except ConfigError as exc:
            raise ArgumentError("preset_shape", dict(self.preset_shape), str(exc)) from None

    @property
    def directions(self) -> list[optuna.study.StudyDirection]:
        return [OBJECTIVES[name].direction for name in self.objectives]

    @property
    def steps(self) -> int:
        return self.recipe.steps

    def to_dict(self) -> dict[str, Any]:
        """The JSON stored with the study."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data.update(objectives=list(self.objectives), space=self.space.to_dict(), recipe=self.recipe.to_dict(),
                    latency=self.latency.to_dict(), pruning=asdict(self.pruning), preset_shape=dict(self.preset_shape),
                    constraints=dict(self.constraints), presets=list(self.presets))
        return json.loads(json.dumps(data))  # exactly what storage gives back: lists, not tuples

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StudySettings:
        """Settings as stored by this or an earlier version: keys added since take their defaults."""
        data = {key: value for key, value in data.items() if key not in RETIRED_KEYS}
        typed: dict[str, Any] = dict(data)
        # A space stored before `encoding` existed was drawn with the pattern encoding, then the only one.
        typed["space"] = space_from_dict({"encoding": "pattern", **data["space"]})
        typed["recipe"] = TrainingRecipe(**data["recipe"])
        typed["latency"] = LatencyProtocol(**{**LEGACY_LATENCY, **data.get("latency", {})})
        typed["pruning"] = Pruning(**data.get("pruning", {}))
        typed["presets"] = tuple(data.get("presets", PAPER_PRESETS))
        return cls(**typed)

    def differences(self, other: StudySettings) -> list[str]:
        """Human-readable `key: study has X, this run asks Y` lines (self: the study), nested keys dotted."""
        return [f"{key}: study has {old!r}, this run asks {new!r}"
                for key, old, new in _diff(self.to_dict(), other.to_dict())]


_FIELD_TYPES: dict[str, type | tuple[type, ...]] = {
    "space": SearchSpace, "data": str, "tokenizer": str, "text_column": str,
    "content_hash": str, "block_size": int, "preset_shape": Mapping, "presets": (list, tuple), "recipe": TrainingRecipe,
    "constraints": Mapping, "latency": LatencyProtocol, "pruning": Pruning, "sampler": str, "seed": int}


def _diff(old: Any, new: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    if isinstance(old, dict) and isinstance(new, dict):
        found = []
        for key in sorted(set(old) | set(new)):
            found += _diff(old.get(key), new.get(key), f"{prefix}{key}.")
        return found
    return [] if old == new else [(prefix.rstrip("."), old, new)]


def read_settings(study: optuna.Study, wait_seconds: float = 5.0) -> StudySettings:
    """A worker that lost the creation race waits briefly for the creator to write the settings; a
    study that already holds trials without them was made by another tool, and is refused at once."""
    deadline = time.monotonic() + wait_seconds
    while SETTINGS_KEY not in study.user_attrs:  # read from the storage on every access
        if time.monotonic() > deadline or study.get_trials(deepcopy=False):
            raise StudyError(f"study {study.study_name!r} has no decoder-nas settings; was it made by another tool?")
        time.sleep(0.2)
    return StudySettings.from_dict(study.user_attrs[SETTINGS_KEY])


def write_settings(study: optuna.Study, settings: StudySettings) -> None:
    study.set_user_attr(SETTINGS_KEY, settings.to_dict())
