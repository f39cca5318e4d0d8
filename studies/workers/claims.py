"""One architecture trained once, however many workers propose it at the same moment.

A trial's `arch_hash` user attribute, set before it looks for a twin to reuse, is its claim on the
architecture. Before training, a trial waits while another running trial of the study holds the
same claim and either has the lower number or is already training (its cheap measures are
recorded); the twin lookup that follows then finds that trial's result. Trial numbers are unique
and ordered, so the lowest-numbered claimant never waits for a higher one that has not started
training, and no two trials wait for each other (with --jobs 2 the presets lgpt and cgpt, one
architecture, were trained side by side before). A claimant that is still choosing its
architecture (running, no claim yet) is waited for too, since it may pick the same one; briefly,
because a worker killed while sampling leaves its trial without a claim until its lease runs out.
"""

from __future__ import annotations

import time
import warnings

import optuna
from optuna.trial import FrozenTrial, TrialState

CLAIM_KEY = "arch_hash"
TRAINING_KEY = "non_embedding_params"  # recorded once a trial has passed its twin lookup and trains
POLL_SECONDS = 0.5
CHOOSING_SECONDS = 10.0  # how long a lower-numbered trial may stay without a claim before it is ignored


def wait_for_claimants(study: optuna.Study, arch_hash: str, number: int) -> None:
    """Return once no other running trial claims `arch_hash` ahead of trial `number` (see above)."""
    started = time.monotonic()
    while True:
        running = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)) if t.number != number]
        choosing = time.monotonic() - started < CHOOSING_SECONDS and any(
            t.number < number and CLAIM_KEY not in t.user_attrs for t in running)
        if not choosing and not any(_ahead(t, arch_hash, number) for t in running):
            return
        # A twin whose worker died stays RUNNING until its lease or heartbeat runs out: this worker's
        # lease renewal fails expired journal trials; on a database the heartbeat's check runs here.
        with warnings.catch_warnings():  # experimental in Optuna's eyes; it is what optimize() calls
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        time.sleep(POLL_SECONDS)


def _ahead(trial: FrozenTrial, arch_hash: str, number: int) -> bool:
    attrs = trial.user_attrs
    return attrs.get(CLAIM_KEY) == arch_hash and (trial.number < number or (
        TRAINING_KEY in attrs and "reused_from" not in attrs))
