"""Gap trials: local search along the promoted front, at the longer budget, where it can be trusted.

A short proxy misranks families (parallel blocks and conv-k3 narrowing learn fast early, plain
stacks late), so a promoted front can stay bare over a wide range of cost. A gap is two neighbours
on the front whose costs differ by more than GAP_RATIO. Each gap trial is an untried one-parameter
change (`SearchSpace.neighbours`) of a front trial whose cost lies inside a gap, chosen so:

1. A preset the front still holds (nothing beats it yet) comes first, whatever the width of the gap
   below it: the preset's own cheapest change inside that gap.
2. Then the widest gap by cost ratio: the change of either end whose cost lies nearest the gap's
   middle (in log cost).

`promote --gap-trials N` runs N of them, one after another, each on the front the previous one left.
Why this rule, why after promotion and not during the search, and why by cost ratio: the replays and
measurements in docs/decisions.md ("Gap trials after promotion", "The gap rule").
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from objectives import describe
from search_space import DecoderConfig, architecture_hash, config_from_dict

from ..measures import OBJECTIVES, constraint_excess, cost_objectives, static_measures
from ..settings import StudySettings
from ..space import SearchSpace
from .front import front_trials

GAP_RATIO = 1.5  # front neighbours further apart in cost than this leave a gap


def cost_axis(objectives: tuple[str, ...]) -> str | None:
    """The cost a gap is measured in: the first cost objective the config alone decides. Latency
    cannot be known before a model is built and timed, so FLOPs stand in for it."""
    costs = cost_objectives(objectives)
    if not costs:
        return None
    return costs[0] if OBJECTIVES[costs[0]].static else "flops_per_token"


def gap_trials_in(study: optuna.Study) -> int:
    return sum("gap_between" in t.user_attrs for t in study.get_trials(deepcopy=False))


def enqueue_gap_trial(study: optuna.Study, settings: StudySettings, vocab_size: int) -> bool:
    """Enqueue the next gap trial: below a preset the front still holds, else in the widest gap.
    Nothing if a trial is already waiting (it may change the front) or no gap can be filled."""
    axis = cost_axis(settings.objectives)
    trials = study.get_trials(deepcopy=False)
    if axis is None or any(t.state == TrialState.WAITING for t in trials):
        return False
    tried = tried_architectures(trials)
    front = sorted((t for t in front_trials(study, settings) if axis in t.user_attrs),
                   key=lambda t: t.user_attrs[axis])
    widest_first = sorted(zip(front, front[1:]), key=lambda pair: pair[0].user_attrs[axis] / pair[1].user_attrs[axis])
    plans = [(cheap, dear, (dear,), _cheapest) for cheap, dear in widest_first if "preset" in dear.user_attrs]
    plans += [(cheap, dear, (dear, cheap), _nearest_middle) for cheap, dear in widest_first
              if dear.user_attrs[axis] > GAP_RATIO * cheap.user_attrs[axis]]
    for cheap, dear, sources, choose in plans:
        low, high = cheap.user_attrs[axis], dear.user_attrs[axis]
        inside = _changes_inside(settings, axis, vocab_size, (low, high), sources, tried)
        if inside:
            _, params, source = choose(inside, low, high)
            study.enqueue_trial(params, user_attrs={"gap_between": [cheap.number, dear.number],
                                                    "changed_from": source.number})
            return True
    return False


Change = tuple[float, dict[str, Any], FrozenTrial]  # its cost, its parameters, the trial it changes


def _cheapest(inside: list[Change], low: float, high: float) -> Change:
    return min(inside, key=lambda change: change[0])


def _nearest_middle(inside: list[Change], low: float, high: float) -> Change:
    middle = math.sqrt(low * high)
    return min(inside, key=lambda change: abs(math.log(change[0] / middle)))  # a tie: the first source's


def _changes_inside(settings: StudySettings, axis: str, vocab_size: int,
                    bounds: tuple[float, float], sources: tuple[FrozenTrial, ...], tried: set[str]) -> list[Change]:
    """The untried one-parameter changes of the sources whose cost lies strictly between the bounds."""
    found: list[Change] = []
    seen = set(tried)
    for source in sources:
        for params, config in untried_changes(settings, _params_of(source, settings.space), vocab_size, seen):
            description = describe(config)
            measures = static_measures(description)
            broken = any(excess > 0 for excess in constraint_excess(settings.constraints, measures, static=True).values())
            if bounds[0] < measures[axis] < bounds[1] and not broken:
                found.append((measures[axis], params, source))
    return found


def tried_architectures(trials: list[FrozenTrial]) -> set[str]:
    return {t.user_attrs["arch_hash"] for t in trials if "arch_hash" in t.user_attrs}


def untried_changes(settings: StudySettings, params: dict[str, Any], vocab_size: int,
                    seen: set[str]) -> Iterator[tuple[dict[str, Any], DecoderConfig]]:
    """The one-parameter changes of `params` (`SearchSpace.neighbours`) that build an architecture
    not in `seen`, each architecture once: many changes leave it as it was (a kernel size, unused).
    Adds what it yields to `seen`."""
    for change in settings.space.neighbours(params):
        config = settings.space.config_from_params(change, vocab_size, settings.block_size)
        arch_hash = architecture_hash(config) if config is not None else None
        if arch_hash is not None and arch_hash not in seen:
            seen.add(arch_hash)
            yield change, config


def _params_of(trial: FrozenTrial, space: SearchSpace) -> dict[str, Any]:
    """A trial's parameters; a promoted trial was enqueued by config, so they are found from it."""
    if trial.params or "config" not in trial.user_attrs:
        return trial.params
    return space.params_for(config_from_dict(trial.user_attrs["config"])) or {}

