"""Pareto fronts: which budget to read, the front itself, the knee, and the hypervolume.

Knee: every objective is turned into a minimisation and normalised to [0, 1] over the front
(min -> 0, max -> 1); the knee is the front point nearest (Euclidean) the ideal point (0, ..., 0).
It is defined for any number of objectives and needs no weights.

Hypervolume: computed in the same normalised space, against the reference point 1.1 in every
objective (10% beyond the worst front value). To compare studies, normalise over the union of
their fronts (`normaliser_for`), so both are measured with one ruler.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from .errors import StudyError
from .storage import PROMOTED_SEPARATOR, load_existing, promoted_name
from .settings import OBJECTIVES, StudySettings, quality_objective, read_settings

REFERENCE = 1.1
PICKS = ("knee", "best-quality", "min-flops", "min-latency", "min-params")


def front_trials(study: optuna.Study, settings: StudySettings) -> list[FrozenTrial]:
    """Complete, non-dominated trials (one per architecture), in objective order."""
    return pareto_layers(study, settings, limit=1)[0]


def pareto_layers(study: optuna.Study, settings: StudySettings, limit: int | None = None) -> list[list[FrozenTrial]]:
    """Non-dominated sorting of the complete trials (one per architecture; infeasible samples never
    complete): the front, then the front of what is left, and so on (at most `limit` layers), each
    in objective order."""
    unique: dict[str, FrozenTrial] = {}
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        unique.setdefault(trial.user_attrs.get("arch_hash", str(trial.number)), trial)
    costs = {t.number: _minimised(t.values, settings.objectives) for t in unique.values()}
    remaining, layers = list(unique.values()), []
    while remaining and (limit is None or len(layers) < limit):
        layer = [t for t in remaining if not any(_dominates(costs[o.number], costs[t.number]) for o in remaining)]
        layers.append(sorted(layer, key=lambda t: tuple(t.values)))
        peeled = {t.number for t in layer}
        remaining = [t for t in remaining if t.number not in peeled]
    return layers or [[]]


def _minimised(values: Sequence[float], objectives: Sequence[str]) -> list[float]:
    """Objective values as minimisations: maximised ones negated."""
    return [-value if OBJECTIVES[name] == "maximize" else value for value, name in zip(values, objectives)]


def _dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def promotion_candidates(study: optuna.Study, settings: StudySettings, top: int | None) -> list[FrozenTrial]:
    """The front's sampled trials; with `top`, K sampled trials taken layer by layer (front first),
    best quality first within a layer: a short proxy misranks close neighbours, so the layer behind
    the front is worth a retrain. Presets are left out: a promoted study retrains them anyway."""
    layers = [[t for t in layer if "preset" not in t.user_attrs]
              for layer in pareto_layers(study, settings, limit=1 if top is None else None)]
    if top is None:
        return layers[0]
    quality = quality_objective(settings.objectives)
    index = settings.objectives.index(quality) if quality else 0
    best_first = lambda t: _minimised(t.values, settings.objectives)[index]  # noqa: E731
    return [t for layer in layers for t in sorted(layer, key=best_first)][:top]


def budgets(name: str, storage: optuna.storages.BaseStorage) -> dict[int, str]:
    """steps -> study name, for NAME and its promoted siblings NAME@STEPS that hold complete trials."""
    found: dict[int, str] = {}
    for summary in optuna.get_all_study_summaries(storage):
        study_name = summary.study_name
        if study_name == name or study_name.startswith(name + PROMOTED_SEPARATOR):
            study = optuna.load_study(study_name=study_name, storage=storage)
            if any(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False)):
                found[read_settings(study).steps] = study_name
    return found


def study_at_budget(name: str, storage: optuna.storages.BaseStorage,
                    steps: int | None = None) -> tuple[optuna.Study, StudySettings]:
    """The study holding NAME's results at `steps`, or at the longest budget with results."""
    study = load_existing(name, storage)
    available = budgets(name, storage)
    if steps is None:
        if not available:
            return study, read_settings(study)
        steps = max(available)
    if steps not in available:
        known = ", ".join(str(s) for s in sorted(available)) or "none yet"
        raise StudyError(f"--steps {steps}: study {name!r} has no results at that budget (budgets with results: {known})")
    chosen = study if available[steps] == name else load_existing(promoted_name(name, steps), storage)
    return chosen, read_settings(chosen)


@dataclass(frozen=True)
class Normaliser:
    """Maps objective vectors to minimisation in [0, 1] per objective (fixed lows and highs)."""

    directions: tuple[str, ...]
    lows: tuple[float, ...]
    highs: tuple[float, ...]

    def __call__(self, values: Sequence[float]) -> list[float]:
        out = []
        for value, direction, low, high in zip(values, self.directions, self.lows, self.highs):
            minimised = -value if direction == "maximize" else value
            out.append(0.0 if high == low else (minimised - low) / (high - low))
        return out


def normaliser_for(objectives: Sequence[str], value_sets: Sequence[Sequence[float]]) -> Normaliser:
    directions = tuple(OBJECTIVES[name] for name in objectives)
    minimised = [_minimised(values, objectives) for values in value_sets]
    if not minimised:
        raise StudyError("no complete trials to normalise over")
    lows = tuple(min(column) for column in zip(*minimised))
    highs = tuple(max(column) for column in zip(*minimised))
    return Normaliser(directions, lows, highs)


def knee(front: list[FrozenTrial], objectives: Sequence[str]) -> FrozenTrial:
    normalise = normaliser_for(objectives, [t.values for t in front])
    return min(front, key=lambda t: sum(x * x for x in normalise(t.values)))


def pick(front: list[FrozenTrial], objectives: Sequence[str], how: str) -> FrozenTrial:
    """knee | best-quality | min-flops | min-latency | min-params (read from user attributes)."""
    if not front:
        raise StudyError("the study has no complete trials yet")
    if how == "knee":
        return knee(front, objectives)
    if how == "best-quality":
        if "val_accuracy" in objectives and "val_loss" not in objectives:
            return max(front, key=lambda t: t.user_attrs["val_accuracy"])
        return min(front, key=lambda t: t.user_attrs["val_loss"])
    measure = {"min-flops": "flops_per_token", "min-latency": "latency_ms", "min-params": "params"}.get(how)
    if measure is None:
        raise StudyError(f"--pick: unknown choice {how!r} (choose from {', '.join(PICKS)})")
    return min(front, key=lambda t: (t.user_attrs[measure], t.user_attrs.get("val_loss", 0.0)))


def hypervolume(points: Sequence[Sequence[float]], reference: float = REFERENCE) -> float:
    """Exact hypervolume of minimisation points against (reference, ..., reference), by slicing
    along the first objective. Fine for the few dozen points and few objectives of a study."""
    inside = [list(p) for p in points if all(x < reference for x in p)]
    if not inside:
        return 0.0
    if len(inside[0]) == 1:
        return reference - min(p[0] for p in inside)
    inside.sort(key=lambda p: p[0])
    volume = 0.0
    for i, point in enumerate(inside):
        upper = inside[i + 1][0] if i + 1 < len(inside) else reference
        if upper > point[0]:
            volume += (upper - point[0]) * hypervolume([p[1:] for p in inside[: i + 1]], reference)
    return volume


def hypervolume_history(study: optuna.Study, objectives: Sequence[str], normalise: Normaliser) -> list[tuple[int, float]]:
    """(trial number, hypervolume of the complete trials so far), for complete trials in order."""
    history, points = [], []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        points.append(normalise(trial.values))
        history.append((trial.number, hypervolume(points)))
    return history


def keep_front_checkpoints(study: optuna.Study, settings: StudySettings, directory: Path) -> list[Path]:
    """Delete the kept weights of trials that are not on the front; returns what was removed."""
    keep = {f"trial-{t.number}" for t in front_trials(study, settings)}
    removed = [path for path in directory.glob("trial-*") if path.name not in keep]
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed
