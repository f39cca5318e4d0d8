"""What a trial can be scored on: the one registry of objectives, and dominance between trials.

Every list of objective names in the code reads from `OBJECTIVES`: its direction (Optuna's
`StudyDirection`), whether it measures quality or cost, its unit and display format, whether the
config alone decides it (no model built or timed), and the constraint flag that bounds it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Mapping, Sequence

from optuna.study import StudyDirection

__all__ = ["CONSTRAINTS", "DEFAULT_OBJECTIVES", "OBJECTIVES", "STATIC_MEASURES", "Objective", "check_objectives",
           "constraint_excess", "cost_objectives", "human", "minimised", "quality_objective",
           "static_measures"]


def human(number: float) -> str:
    """1234567 -> 1.23M: tables stay narrow, --json keeps the exact values."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(number) >= scale:
            return f"{number / scale:.3g}{unit}"
    return f"{number:g}"


@dataclass(frozen=True)
class Objective:
    name: str
    direction: StudyDirection
    kind: Literal["quality", "cost"]
    unit: str
    description: str
    decimals: int | None = None  # fixed decimals; None: short human form (1.23M)
    static: bool = False  # decided by the config alone, before a model is built or timed
    constraint: str | None = None  # settings key of the upper limit, e.g. max_params
    constraint_scale: float = 1.0  # the limit's unit in this measure's units (MB -> bytes)

    @property
    def short(self) -> str:
        """The name in `--pick min-SHORT` and column headers: flops, params, latency..."""
        return self.name.removesuffix("_per_token").removesuffix("_ms").removesuffix("_bytes").replace("_", "-")

    def format(self, value: float | None) -> str:
        """One number format everywhere: tables, hover text, progress lines."""
        if value is None:
            return ""
        return f"{value:.{self.decimals}f}" if self.decimals is not None else human(value)

    def minimised(self, value: float) -> float:
        return -value if self.direction == StudyDirection.MAXIMIZE else value


_MIN, _MAX = StudyDirection.MINIMIZE, StudyDirection.MAXIMIZE
# Quality first, then the costs: the order of table columns.
OBJECTIVES: dict[str, Objective] = {o.name: o for o in (
    Objective("val_loss", _MIN, "quality", "nats", "validation cross-entropy per token", decimals=4),
    Objective("val_accuracy", _MAX, "quality", "", "validation next-token accuracy", decimals=4),
    Objective("flops_per_token", _MIN, "cost", "FLOPs", "forward FLOPs per token at full context (2 × MACs)",
              static=True, constraint="max_flops"),
    Objective("params", _MIN, "cost", "", "parameters", static=True, constraint="max_params"),
    Objective("latency_ms", _MIN, "cost", "ms", "forward latency at batch 1 (see the latency protocol)",
              decimals=2, constraint="max_latency_ms"),
    Objective("kv_cache_bytes", _MIN, "cost", "bytes", "KV-cache bytes per token of context",
              static=True, constraint="max_kv_cache_mb", constraint_scale=1e6),
    Objective("weights_bytes", _MIN, "cost", "bytes", "bytes of the weights (float32)",
              static=True, constraint="max_weights_mb", constraint_scale=1e6),
    Objective("decode_state_bytes", _MIN, "cost", "bytes",
              "bytes one sequence's decoding state holds at full context (KV cache, conv inputs; float32)",
              static=True, constraint="max_decode_state_mb", constraint_scale=1e6),
)}
DEFAULT_OBJECTIVES = ("val_loss", "flops_per_token")
CONSTRAINTS: dict[str, Objective] = {o.constraint: o for o in OBJECTIVES.values() if o.constraint}
# What the config alone decides (objectives.describe): no model is built or timed for these.
STATIC_MEASURES = ("non_embedding_params", *(o.name for o in OBJECTIVES.values() if o.static))


def static_measures(description: Any) -> dict[str, float]:
    """STATIC_MEASURES read off an `objectives.describe` result."""
    return {name: getattr(description, name) for name in STATIC_MEASURES}


def constraint_excess(constraints: Mapping[str, float], measures: Mapping[str, float],
                      static: bool | None = None) -> dict[str, float]:
    """How far each constraint's measure lies above its limit (> 0: broken), for the constraints whose
    measure is static (static=True), is not (False), or all of them (None)."""
    return {name: measures[CONSTRAINTS[name].name] - limit * CONSTRAINTS[name].constraint_scale
            for name, limit in constraints.items() if static is None or CONSTRAINTS[name].static == static}


def check_objectives(objectives: Sequence[str]) -> tuple[str, ...]:
    if isinstance(objectives, str):  # not its letters
        raise ValueError(f"give a sequence of names, e.g. ({objectives!r},)")
    if not isinstance(objectives, (list, tuple)):
        raise ValueError(f"expected a list or tuple of names, not {type(objectives).__name__}")
    objectives = tuple(objectives)
    if not objectives:
        raise ValueError("name at least one objective")
    for name in objectives:
        if name not in OBJECTIVES:
            raise ValueError(f"unknown objective {name!r} (choose from {', '.join(OBJECTIVES)})")
    if len(set(objectives)) != len(objectives):
        raise ValueError(f"{list(objectives)} names an objective twice")
    return objectives


def quality_objective(objectives: Sequence[str]) -> str | None:
    """The first objective that measures quality, if the study has one."""
    return next((name for name in objectives if OBJECTIVES[name].kind == "quality"), None)


def cost_objectives(objectives: Sequence[str]) -> list[str]:
    return [name for name in objectives if OBJECTIVES[name].kind == "cost"]


def minimised(values: Sequence[float], objectives: Sequence[str]) -> list[float]:
    """Objective values as minimisations: maximised ones negated."""
    return [OBJECTIVES[name].minimised(value) for value, name in zip(values, objectives)]
