"""When the sampler proposes an architecture the study already trained, try one next to it.

A repeat reuses its twin's result and costs no training, but TPE keeps proposing it: its good group
is the best 25 trials once a study holds 250, and an exact copy of one of them scores highest. On a
synthetic landscape (benchmarks/repeats.py; docs/decisions.md, "After a repeat, an untried
neighbour") every run stopped as "exhausted" at about 500 trained architectures of 1,000 asked.
After a repeat, the worker enqueues an untried one-parameter change of it (`SearchSpace.neighbours`):
local search around what TPE found good, which TPE then learns from.

A result reused from another study that trains alike is a repeat too, and "untried" means in no
such study either: else a study whose neighbourhood another one covered reuses without end.
"""

from __future__ import annotations

import random

import optuna
from optuna.trial import FrozenTrial, TrialState

from ..fronts.gaps import tried_architectures, untried_changes
from ..settings import StudySettings


def enqueue_untried_neighbour(study: optuna.Study, settings: StudySettings, repeat: FrozenTrial,
                              vocab_size: int, elsewhere: set[str] | frozenset[str] = frozenset()) -> bool:
    """Enqueue an untried one-parameter change of `repeat`'s parameters, chosen at random (seeded by
    its number); False if a trial is already waiting (it runs next) or every change builds an
    architecture the study holds already or would reuse from another study (`elsewhere`)."""
    trials = study.get_trials(deepcopy=False)
    if any(t.state == TrialState.WAITING for t in trials):
        return False
    tried = tried_architectures(trials) | elsewhere
    changes = [params for params, _ in untried_changes(settings, repeat.params, vocab_size, tried)]
    if not changes:
        return False
    study.enqueue_trial(random.Random(repeat.number).choice(changes), user_attrs={"neighbour_of": repeat.number})
    return True
