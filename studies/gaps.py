"""Gap trials: keep the front covered along its cost axis.

A 24-trial study can leave the front bare over a wide range of cost. On the CPU benchmark one TPE
seed in five held nothing but the gpt preset between 0.7M and 1.72M FLOPs/token: TPE had spent its
trials on cheaper and dearer models, so nothing was promoted that could beat gpt at its cost.

A gap is two neighbours on the front whose costs differ by more than GAP_RATIO. A gap trial takes
the two trials that bound the widest gap, changes one parameter of either (`SearchSpace.neighbours`)
and enqueues the untried change whose cost lies nearest the gap's middle (in log cost). It is
enqueued with its parameters, so the sampler learns from it like from its own samples. At most one
trial in GAP_EVERY is a gap trial, and none before the presets and the sampler's start-up trials.
"""

from __future__ import annotations

import math
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from objectives import describe
from search_space import architecture_hash

from .front import front_trials
from .settings import StudySettings
from .space import SearchSpace

GAP_RATIO = 1.5  # front neighbours further apart in cost than this leave a gap
GAP_EVERY = 3  # the sampler keeps the other trials
START_AFTER = 8  # the four presets and TPE's start-up trials: the front needs them first
COST_LIMITS = {"flops_per_token": "max_flops", "params": "max_params"}


def cost_axis(objectives: tuple[str, ...]) -> str | None:
    """The cost a gap is measured in: FLOPs or parameters, whichever the study minimises first.
    Latency cannot be known before a model is built and timed, so FLOPs stand in for it."""
    costs = [name for name in objectives if name in ("flops_per_token", "params", "latency_ms")]
    if not costs:
        return None
    return "params" if costs[0] == "params" else "flops_per_token"


def gap_trial_due(trials: list[FrozenTrial]) -> bool:
    """Whether the next trial is a gap trial's turn: after the start-up, one in every GAP_EVERY."""
    after_start = len(trials) - START_AFTER
    done = sum("gap_between" in t.user_attrs for t in trials)
    return after_start >= 0 and done < (after_start + 1) // GAP_EVERY


def enqueue_gap_trial(study: optuna.Study, settings: StudySettings, space: SearchSpace, vocab_size: int) -> bool:
    """Enqueue a gap trial if one is due and the front has a gap that a neighbour fills."""
    axis = cost_axis(settings.objectives)
    trials = study.get_trials(deepcopy=False)
    if axis is None or any(t.state == TrialState.WAITING for t in trials) or not gap_trial_due(trials):
        return False
    tried = {t.user_attrs["arch_hash"] for t in trials if "arch_hash" in t.user_attrs}
    front = sorted((t for t in front_trials(study, settings) if axis in t.user_attrs),
                   key=lambda t: t.user_attrs[axis])
    gaps = [(cheap, dear) for cheap, dear in zip(front, front[1:])
            if dear.user_attrs[axis] > GAP_RATIO * cheap.user_attrs[axis]]
    for cheap, dear in sorted(gaps, key=lambda pair: pair[0].user_attrs[axis] / pair[1].user_attrs[axis]):
        filler = _nearest_middle(space, settings, axis, vocab_size, cheap, dear, tried)
        if filler is not None:
            params, source = filler
            study.enqueue_trial(params, user_attrs={"gap_between": [cheap.number, dear.number],
                                                    "changed_from": source.number})
            return True
    return False


def _nearest_middle(space: SearchSpace, settings: StudySettings, axis: str, vocab_size: int,
                    cheap: FrozenTrial, dear: FrozenTrial, tried: set[str]) -> tuple[dict[str, Any], FrozenTrial] | None:
    low, high = cheap.user_attrs[axis], dear.user_attrs[axis]
    middle = math.sqrt(low * high)
    best: tuple[float, dict[str, Any], FrozenTrial] | None = None
    seen = set(tried)  # many changes leave the architecture as it was (a kernel size, unused)
    for source in (dear, cheap):  # the better-quality end first: it wins a tie
        for params in space.neighbours(source.params):
            config = space.config_from_params(params, vocab_size, settings.block_size)
            if config is None or architecture_hash(config) in seen:
                continue
            seen.add(architecture_hash(config))
            description = describe(config)
            measures = {"flops_per_token": description.flops_per_token, "params": description.params}
            if not low < measures[axis] < high or _breaks_limits(measures, settings):
                continue
            distance = abs(math.log(measures[axis] / middle))
            if best is None or distance < best[0]:
                best = (distance, params, source)
    return None if best is None else (best[1], best[2])


def _breaks_limits(measures: dict[str, float], settings: StudySettings) -> bool:
    return any(measures[name] > settings.constraints[limit]
               for name, limit in COST_LIMITS.items() if limit in settings.constraints)
