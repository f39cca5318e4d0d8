"""Leases for running trials on journal storage, which has no heartbeat of its own.

A worker stamps its running trial with `lease_until` (a wall-clock timestamp, not a process id:
process ids mean nothing on another machine and get reused) and a background thread renews it for
as long as the trial runs, whatever the trial is doing (building the model, timing it, training,
evaluating), like Optuna's heartbeat thread on RDB storage. Any worker, when it starts, between
trials and at each renewal, fails the trials whose lease ran out and re-queues them with the same
parameters and user attributes. Storage resolves the race: only the first worker's update of a
running trial applies; the others get UpdateFinishedTrialError and re-queue nothing.

A lease lasts DECODER_NAS_LEASE_SECONDS (default 60) and is renewed four times per lease, so a dead
worker's trial is failed and re-queued within about 75 seconds of its death while any worker runs.
A worker that stalled longer than a lease (a suspended laptop) finds its trial taken: `trial_taken`
recognises what Optuna raises then.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from trainer.loop import Progress

from ..storage.backends import env_seconds
from .trials import Reporter

LEASE_KEY = "lease_until"
RETRY_KEY = "retried_from"
DEFAULT_LEASE_SECONDS = 60.0
RENEWALS_PER_LEASE = 4  # three renewals may be late or lost before the lease runs out
MAX_RETRIES = 2
_logger = optuna.logging.get_logger(__name__)


def lease_seconds() -> float:
    return env_seconds("DECODER_NAS_LEASE_SECONDS", DEFAULT_LEASE_SECONDS)


def fail_expired_trials(study: optuna.Study, now: float | None = None) -> list[int]:
    """Fail RUNNING trials whose lease expired and re-queue each (up to MAX_RETRIES); returns their numbers."""
    now = time.time() if now is None else now
    seconds = lease_seconds()
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        # A worker that died before its first stamp still had a lease from the trial's start.
        started = trial.datetime_start.timestamp() if trial.datetime_start else now
        if trial.user_attrs.get(LEASE_KEY, started + seconds) >= now:
            continue
        try:
            study.tell(trial.number, state=TrialState.FAIL)
        except (UpdateFinishedTrialError, ValueError):
            continue  # another worker failed it first, or it finished after all
        failed.append(trial.number)
        _requeue(study, trial)
    return failed


def fail_trials_of(study: optuna.Study, workers: dict[str, str]) -> list[int]:
    """Fail the RUNNING trials of workers known dead (`trials.worker_id` -> why), re-queued as an
    expired lease's are; returns their numbers."""
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        reason = workers.get(trial.user_attrs.get("worker", ""))
        if reason is None:
            continue
        try:
            study._storage.set_trial_user_attr(trial._trial_id, "fail_reason", reason)  # noqa: SLF001
            study.tell(trial.number, state=TrialState.FAIL)
        except (UpdateFinishedTrialError, ValueError):
            continue  # it finished after all
        failed.append(trial.number)
        _requeue(study, trial, reason)
    return failed


def trial_taken(exc: BaseException) -> bool:
    """Whether `exc`, raised by Study.optimize or a trial's storage call, says another worker failed
    this worker's trial because its lease ran out: the trial is re-queued, this worker may go on.

    Optuna says so with UpdateFinishedTrialError (the trial wrote to storage) or "Cannot tell a FAIL
    trial." (its result came too late), possibly as the context of an error raised while handling it.
    """
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, UpdateFinishedTrialError) or (
                isinstance(cause, ValueError) and str(cause).startswith("Cannot tell a FAIL trial")):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


def _requeue(study: optuna.Study, trial: FrozenTrial, reason: str = "lease expired: its worker stopped") -> None:
    chain = trial.user_attrs.get("retry_count", 0)
    if chain >= MAX_RETRIES:
        return
    retry = {RETRY_KEY: trial.number, "retry_count": chain + 1, "retry_reason": reason}
    study.enqueue_trial(trial.params, user_attrs={**queued_as(trial), **retry})


def queued_as(trial: FrozenTrial) -> dict[str, Any]:
    """What made the trial what it is, for enqueueing it again with its parameters: a preset (and
    whether the space built it), or a promoted config. A sampled trial is its parameters alone: the
    config every trial records, kept, would retrain it without them, unseen by the sampler."""
    attrs = trial.user_attrs
    if "preset" in attrs:
        return {"preset": attrs["preset"], "in_space": attrs.get("in_space", False)}
    if "promoted_from" in attrs:
        return {"promoted_from": attrs["promoted_from"], "config": attrs["config"]}
    return {}


class LeaseReporter:
    """Wraps a Reporter: holds the running trial's lease from trial_started until trial_finished."""

    def __init__(self, inner: Reporter):
        self.inner = inner
        self._renewer: _LeaseRenewer | None = None

    def trial_started(self, trial: optuna.Trial, summary: str, steps: int) -> None:
        self._stop_renewing()  # a trial that ended in an exception never reached trial_finished
        self._renewer = _LeaseRenewer(trial)
        self.inner.trial_started(trial, summary, steps)

    def progress(self, progress: Progress) -> None:
        self.inner.progress(progress)

    def trial_finished(self, trial: FrozenTrial) -> None:
        self._stop_renewing()
        self.inner.trial_finished(trial)

    def _stop_renewing(self) -> None:
        if self._renewer is not None:
            self._renewer.stop()
            self._renewer = None


class _LeaseRenewer:
    """A daemon thread that renews one trial's lease and sweeps the study's expired leases."""

    def __init__(self, trial: optuna.Trial):
        self.trial = trial
        self.seconds = lease_seconds()
        self.stopped = threading.Event()
        self._renew()  # the first stamp is the caller's: if storage refuses it, the trial fails now
        self.thread = threading.Thread(target=self._keep_renewing, name=f"lease-trial-{trial.number}", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join()

    def _renew(self) -> None:
        self.trial.set_user_attr(LEASE_KEY, time.time() + self.seconds)

    def _keep_renewing(self) -> None:
        while not self.stopped.wait(self.seconds / RENEWALS_PER_LEASE):
            try:
                self._renew()
                fail_expired_trials(self.trial.study)
            except UpdateFinishedTrialError:
                return  # the trial ended, or another worker took it: the trial's own thread finds out
            except Exception as exc:  # noqa: BLE001 - a full disk, say: the trial meets it too; retry next time
                _logger.warning(f"trial {self.trial.number}: could not renew its lease: {exc}")
