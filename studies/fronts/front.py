"""Pareto fronts: which budget to read, the front itself, the knee, and the hypervolume.

Knee: every objective is turned into a minimisation and normalised to [0, 1] over the front
(min -> 0, max -> 1); the knee is the front point nearest (Euclidean) the ideal point (0, ..., 0).
It is defined for any number of objectives and needs no weights.

Hypervolume: computed in the same normalised space, against the reference point 1.1 in every
objective (10% beyond the worst front value). To compare studies, normalise over the union of
their fronts (`normaliser_for`), so both are measured with one ruler.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Iterator, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from ..errors import ArgumentError, StudyError
from ..measures import OBJECTIVES, minimised, quality_objective
from ..settings import StudySettings, read_settings
from ..storage.backends import PROMOTED_SEPARATOR
from ..storage.reading import Reader, StudyView
from .hypervolume import hypervolume, incremental_hypervolume, non_dominated
from .ranking import kendall_tau

REFERENCE = 1.1
JOINT_LATENCY_KEY = "joint_latency"  # study attribute: latencies of the front re-measured in one session
COST_PICKS = {f"min-{o.short}": o.name for o in OBJECTIVES.values() if o.kind == "cost"}  # min-flops -> flops_per_token
PICKS = ("knee", "best-quality", *COST_PICKS)


def front_trials(study: optuna.Study | StudyView, settings: StudySettings) -> list[FrozenTrial]:
    """The front: complete, non-dominated trials, one per architecture, in objective order. The one
    definition every view, the gap trials and the promotion use. Full records, also from a view."""
    front = next(pareto_layers(complete_trials(study, settings.objectives), settings.objectives), [])
    if isinstance(study, StudyView):
        return _with_joint_latency(study, study.full_trials(front), settings.objectives)
    return front


def count_complete(study: optuna.Study) -> int:
    """Trials trained to the end; one that reused a twin's result is counted apart, as every summary
    counts it (studies/workers/trial_record.py, OUTCOMES)."""
    return sum("reused_from" not in t.user_attrs for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


def complete_trials(study: optuna.Study, objectives: Sequence[str]) -> list[FrozenTrial]:
    """Complete trials, one per architecture (the first; a repeat reuses its result): infeasible
    samples never complete. Latencies re-measured together (`joint_latency`) replace each trial's own."""
    unique: dict[str, FrozenTrial] = {}
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        unique.setdefault(trial.user_attrs.get("arch_hash", str(trial.number)), trial)
    return _with_joint_latency(study, list(unique.values()), objectives)


def _with_joint_latency(study: optuna.Study | StudyView, trials: list[FrozenTrial],
                        objectives: Sequence[str]) -> list[FrozenTrial]:
    joint = study.user_attrs.get(JOINT_LATENCY_KEY, {}).get("latency_ms", {})
    return [_with_latency(t, joint[t.user_attrs["arch_hash"]], objectives)
            if t.user_attrs.get("arch_hash") in joint else t for t in trials]


def _with_latency(trial: FrozenTrial, latency_ms: float, objectives: Sequence[str]) -> FrozenTrial:
    """A copy of the trial carrying the jointly measured latency; its own stays as latency_ms_trial."""
    return FrozenTrial(
        trial.number, trial.state, None, trial.datetime_start, trial.datetime_complete, trial.params,
        trial.distributions, {**trial.user_attrs, "latency_ms": latency_ms, "latency_ms_trial": trial.user_attrs.get("latency_ms")},
        trial.system_attrs, trial.intermediate_values, trial._trial_id,  # noqa: SLF001 - a copy keeps its id
        values=[latency_ms if name == "latency_ms" else value for name, value in zip(objectives, trial.values)])


def pareto_layers(trials: Sequence[FrozenTrial], objectives: Sequence[str]) -> Iterator[list[FrozenTrial]]:
    """Non-dominated sorting, lazily: the front, then the front of what is left, and so on, each in
    objective order."""
    remaining = [(minimised(t.values, objectives), t) for t in trials]
    while remaining:
        keep = set(non_dominated([costs for costs, _ in remaining]))
        yield sorted((t for i, (_, t) in enumerate(remaining) if i in keep), key=lambda t: tuple(t.values))
        remaining = [pair for i, pair in enumerate(remaining) if i not in keep]


def promotion_candidates(study: optuna.Study, settings: StudySettings, top: int | None) -> list[FrozenTrial]:
    """The front's sampled trials; with `top`, K sampled trials taken layer by layer (front first),
    best quality first within a layer: a short proxy misranks close neighbours, so the layer behind
    the front is worth a retrain. Presets are left out: a promoted study retrains them anyway."""
    quality = quality_objective(settings.objectives)
    index = settings.objectives.index(quality) if quality else 0
    chosen: list[FrozenTrial] = []
    for layer in pareto_layers(complete_trials(study, settings.objectives), settings.objectives):
        sampled = [t for t in layer if "preset" not in t.user_attrs]
        chosen += sorted(sampled, key=lambda t: minimised(t.values, settings.objectives)[index])
        if top is None or len(chosen) >= top:
            break
    return chosen if top is None else chosen[:top]


def promotion_agreement(short: optuna.Study, long: optuna.Study, quality: str) -> tuple[float, int] | None:
    """Kendall τ between the short-budget and long-budget `quality` of the architectures promoted
    from `short` into `long`, and how many there were (None below 3). Calibration asks this of
    random architectures; a search selects the ones the proxy overrates, so it can be lower here."""
    chosen = {t.number: t for t in short.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))}
    pairs = [(chosen[t.user_attrs["promoted_from"]].user_attrs[quality], t.user_attrs[quality])
             for t in long.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
             if t.user_attrs.get("promoted_from") in chosen and quality in t.user_attrs]
    if len(pairs) < 3:
        return None
    proxy, trained = zip(*pairs)
    return kendall_tau(proxy, trained), len(pairs)


def budgets(name: str, reader: Reader) -> dict[int, optuna.Study | StudyView]:
    """steps -> study, for NAME and its promoted siblings NAME@STEPS that hold complete trials."""
    # Each study read once: the trials read here stay cached for the views that read them again.
    found: dict[int, optuna.Study | StudyView] = {}
    for study_name in reader.names():
        if study_name == name or re.fullmatch(re.escape(name + PROMOTED_SEPARATOR) + r"\d+", study_name):
            study = reader.study(study_name)
            if study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
                found[read_settings(study).steps] = study
    return found


def study_at_budget(name: str, reader: Reader,
                    steps: int | None = None) -> tuple[optuna.Study | StudyView, StudySettings]:
    """The study holding NAME's results at `steps`, or at the longest budget with results."""
    study = reader.study(name)
    available = budgets(name, reader)
    if steps is None:
        if not available:
            return study, read_settings(study)
        steps = max(available)
    if steps not in available:
        known = ", ".join(str(s) for s in sorted(available)) or "none yet"
        raise ArgumentError("steps", steps, f"study {name!r} has no results at that budget (budgets with results: {known})")
    return available[steps], read_settings(available[steps])


@dataclass(frozen=True)
class Normaliser:
    """Maps objective vectors to minimisation in [0, 1] per objective (fixed lows and highs)."""

    objectives: tuple[str, ...]
    lows: tuple[float, ...]
    highs: tuple[float, ...]

    def __call__(self, values: Sequence[float]) -> list[float]:
        out = []
        for value, low, high in zip(minimised(values, self.objectives), self.lows, self.highs):
            out.append(0.0 if high == low else (value - low) / (high - low))
        return out


def normaliser_for(objectives: Sequence[str], value_sets: Sequence[Sequence[float]]) -> Normaliser:
    points = [minimised(values, objectives) for values in value_sets]
    if not points:
        raise StudyError("no complete trials to normalise over")
    lows = tuple(min(column) for column in zip(*points))
    highs = tuple(max(column) for column in zip(*points))
    return Normaliser(tuple(objectives), lows, highs)


def knee(front: list[FrozenTrial], objectives: Sequence[str]) -> FrozenTrial:
    normalise = normaliser_for(objectives, [t.values for t in front])
    return min(front, key=lambda t: sum(x * x for x in normalise(t.values)))


def pick(front: list[FrozenTrial], objectives: Sequence[str], how: str) -> FrozenTrial:
    """knee, best-quality (the study's quality objective, else val_loss) or min-COST (PICKS)."""
    if how not in PICKS:
        raise ArgumentError("pick", how, f"unknown choice (choose from {', '.join(PICKS)})")
    if not front:
        raise StudyError("the study has no complete trials yet")
    if how == "knee":
        return knee(front, objectives)
    if how == "best-quality":
        quality = OBJECTIVES[quality_objective(objectives) or "val_loss"]
        return min(front, key=lambda t: quality.minimised(t.user_attrs[quality.name]))
    cost = COST_PICKS[how]
    return min(front, key=lambda t: (t.user_attrs.get(cost, math.inf), t.user_attrs.get("val_loss", 0.0)))


def hypervolume_history(study: optuna.Study, objectives: Sequence[str], normalise: Normaliser) -> list[tuple[int, float]]:
    """(trial number, hypervolume of the complete trials so far), for complete trials in order; each
    step adds one point's exclusive contribution (studies/fronts/hypervolume.py)."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    values = incremental_hypervolume([normalise(t.values) for t in complete], [REFERENCE] * len(objectives))
    return [(trial.number, value) for trial, value in zip(complete, values)]


def front_hypervolume(front: Sequence[FrozenTrial], objectives: Sequence[str], normalise: Normaliser) -> float:
    return hypervolume([normalise(t.values) for t in front], [REFERENCE] * len(objectives))
