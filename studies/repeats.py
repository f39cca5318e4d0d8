"""When the sampler proposes an architecture the study already trained, try one next to it.

A repeat reuses its twin's result and costs no training, but TPE keeps proposing it: its good group
is the best 25 trials once a study holds 250, and an exact copy of one of them scores highest. On a
synthetic landscape (benchmarks/repeats.py; docs/decisions.md, "After a repeat, an untried
neighbour") every run stopped as "exhausted" at about 500 trained architectures of 1,000 asked.
After a repeat, the worker enqueues an untried one-parameter change of it (`SearchSpace.neighbours`):
local search around what TPE found good, which TPE then learns from.
"""

from __future__ import annotations

import random

import optuna
from optuna.trial import FrozenTrial

from search_space import architecture_hash

from .settings import StudySettings


def enqueue_untried_neighbour(study: optuna.Study, settings: StudySettings, repeat: FrozenTrial,
                              vocab_size: int) -> bool:
    """Enqueue an untried one-parameter change of `repeat`'s parameters, chosen at random (seeded by
    its number); False if every change builds an architecture the study holds already."""
    space = settings.space
    tried = {t.user_attrs["arch_hash"] for t in study.get_trials(deepcopy=False) if "arch_hash" in t.user_attrs}
    changes = space.neighbours(repeat.params)
    random.Random(repeat.number).shuffle(changes)
    for params in changes:
        config = space.config_from_params(params, vocab_size, settings.block_size)
        if config is not None and architecture_hash(config) not in tried:
            study.enqueue_trial(params, user_attrs={"neighbour_of": repeat.number})
            return True
    return False
