"""A study's settings, fixed when it is created: re-opening it with other settings is refused.

They live in the study's user attributes, so every worker on every machine reads the same recipe.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import optuna

from .errors import StudyError
from .space import space_from_dict

SETTINGS_KEY = "decoder_nas_settings"
RETIRED_KEYS = ("gap_trials",)  # search-time gap trials, dropped: they now run only after a promotion

# Objective name -> direction. Quality first, then the costs.
OBJECTIVES: dict[str, str] = {
    "val_loss": "minimize",
    "val_accuracy": "maximize",
    "flops_per_token": "minimize",
    "params": "minimize",
    "latency_ms": "minimize",
}
QUALITY_OBJECTIVES = ("val_loss", "val_accuracy")
DEFAULT_OBJECTIVES = ("val_loss", "flops_per_token")


def quality_objective(objectives: Sequence[str]) -> str | None:
    """The first objective that measures quality, if the study has one."""
    return next((name for name in objectives if name in QUALITY_OBJECTIVES), None)


@dataclass(frozen=True)
class StudySettings:
    objectives: tuple[str, ...]
    space: dict[str, Any]
    data: str
    tokenizer: str
    text_column: str
    content_hash: str
    block_size: int
    preset_shape: dict[str, int]  # n_layer / n_head / d_model of the paper presets run as baselines
    recipe: dict[str, Any]
    constraints: dict[str, float] = field(default_factory=dict)  # max_params / max_flops / max_latency_ms
    latency: dict[str, Any] = field(default_factory=dict)  # objectives.LatencyProtocol fields
    pruning: dict[str, Any] = field(default_factory=dict)  # rungs (fractions of steps) and margin
    sampler: str = "tpe"
    seed: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "objectives", tuple(self.objectives))
        check_objectives(self.objectives)

    @property
    def directions(self) -> list[str]:
        return [OBJECTIVES[name] for name in self.objectives]

    @property
    def steps(self) -> int:
        return int(self.recipe["steps"])

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["objectives"] = list(self.objectives)
        return json.loads(json.dumps(data))  # exactly what storage gives back: lists, not tuples

    def differences(self, stored: dict[str, Any]) -> list[str]:
        """Human-readable `key: stored -> requested` lines, nested keys dotted."""
        return [f"{key}: study has {old!r}, this run asks {new!r}"
                for key, old, new in _diff(stored, self.to_dict())]


def check_objectives(objectives: tuple[str, ...]) -> None:
    if not objectives:
        raise StudyError("--objectives: name at least one objective")
    for name in objectives:
        if name not in OBJECTIVES:
            raise StudyError(f"--objectives: unknown objective {name!r} (choose from {', '.join(OBJECTIVES)})")
    if len(set(objectives)) != len(objectives):
        raise StudyError(f"--objectives: {list(objectives)} names an objective twice")


def _diff(old: Any, new: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    if isinstance(old, dict) and isinstance(new, dict):
        found = []
        for key in sorted(set(old) | set(new)):
            found += _diff(old.get(key), new.get(key), f"{prefix}{key}.")
        return found
    return [] if old == new else [(prefix.rstrip("."), old, new)]


def read_settings(study: optuna.Study, wait_seconds: float = 30.0) -> StudySettings:
    """A worker that lost the creation race waits briefly for the creator to write the settings."""
    deadline = time.monotonic() + wait_seconds
    while SETTINGS_KEY not in study.user_attrs:
        if time.monotonic() > deadline:
            raise StudyError(f"study {study.study_name!r} has no decoder-nas settings; was it made by another tool?")
        time.sleep(0.2)
    data = {key: value for key, value in study.user_attrs[SETTINGS_KEY].items() if key not in RETIRED_KEYS}
    # Keys added since fill in their defaults; but a space stored before `encoding` existed was drawn
    # with the pattern encoding, then the only one, whatever the default is now.
    data["space"] = space_from_dict({"encoding": "pattern", **data["space"]}).to_dict()
    return StudySettings(**data)


def write_settings(study: optuna.Study, settings: StudySettings) -> None:
    study.set_user_attr(SETTINGS_KEY, settings.to_dict())
