"""Leases for running trials on journal storage, which has no heartbeat of its own.

A worker stamps its running trial with `lease_until` (a wall-clock timestamp, not a process id:
process ids mean nothing on another machine and get reused) and renews it while it trains. Any
worker, when it starts and between trials, fails the trials whose lease ran out and re-queues them
with the same parameters and user attributes. Storage resolves the race: only the first worker's
update of a running trial applies; the others get UpdateFinishedTrialError and re-queue nothing.
"""

from __future__ import annotations

import os
import time

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from trainer.loop import Progress

from .trials import Reporter

LEASE_KEY = "lease_until"
RETRY_KEY = "retried_from"
LEASE_SECONDS = float(os.environ.get("DECODER_NAS_LEASE_SECONDS", 300))
MAX_RETRIES = 2


def fail_expired_trials(study: optuna.Study, now: float | None = None) -> list[int]:
    """Fail RUNNING trials whose lease expired and re-queue each (up to MAX_RETRIES); returns their numbers."""
    now = time.time() if now is None else now
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        # A worker that died before its first stamp still had a lease from the trial's start.
        started = trial.datetime_start.timestamp() if trial.datetime_start else now
        if trial.user_attrs.get(LEASE_KEY, started + LEASE_SECONDS) >= now:
            continue
        try:
            study.tell(trial.number, state=TrialState.FAIL)
        except (UpdateFinishedTrialError, ValueError):
            continue  # another worker failed it first, or it finished after all
        failed.append(trial.number)
        _requeue(study, trial)
    return failed


def _requeue(study: optuna.Study, trial: FrozenTrial) -> None:
    chain = trial.user_attrs.get("retry_count", 0)
    if chain >= MAX_RETRIES:
        return
    keep = {k: v for k, v in trial.user_attrs.items() if k in ("preset", "config", "promoted_from")}
    if trial.params and "preset" in keep:
        keep["in_space"] = trial.user_attrs.get("in_space", False)
    retry = {RETRY_KEY: trial.number, "retry_count": chain + 1, "retry_reason": "lease expired: its worker stopped"}
    study.enqueue_trial(trial.params, user_attrs={**keep, **retry})


class LeaseReporter:
    """Wraps a Reporter: stamps the lease when a trial starts and renews it as training reports."""

    def __init__(self, inner: Reporter):
        self.inner = inner
        self.trial: optuna.Trial | None = None
        self.renewed = 0.0

    def trial_started(self, trial: optuna.Trial, summary: str, steps: int) -> None:
        self.trial = trial
        self._renew(force=True)
        self.inner.trial_started(trial, summary, steps)

    def progress(self, progress: Progress) -> None:
        self._renew()
        self.inner.progress(progress)

    def trial_finished(self, trial: FrozenTrial) -> None:
        self.trial = None
        self.inner.trial_finished(trial)

    def _renew(self, force: bool = False) -> None:
        if self.trial is not None and (force or time.monotonic() - self.renewed > LEASE_SECONDS / 4):
            self.trial.set_user_attr(LEASE_KEY, time.time() + LEASE_SECONDS)
            self.renewed = time.monotonic()
