"""Leases on journal storage: a live trial keeps its lease whatever it does, a dead one is retried soon."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from studies.errors import StudyError
from studies.storage.backends import open_storage
from studies.workers.leases import (
    LEASE_KEY,
    RETRY_KEY,
    LeaseReporter,
    fail_expired_trials,
    trial_taken,
)
from studies.workers.trials import SilentReporter

optuna.logging.set_verbosity(optuna.logging.ERROR)


def journal_study(tmp_path: Path) -> optuna.Study:
    return optuna.create_study(study_name="s", storage=open_storage(str(tmp_path / "leases.journal")),
                               sampler=optuna.samplers.RandomSampler(seed=0))


def another_worker(tmp_path: Path) -> optuna.Study:
    """The same study as another process sees it: its own storage object over the same journal."""
    return optuna.load_study(study_name="s", storage=open_storage(str(tmp_path / "leases.journal")))


def states(study: optuna.Study) -> list[TrialState]:
    return [t.state for t in study.get_trials(deepcopy=False)]


def test_a_trial_busy_past_its_lease_keeps_it_and_a_dead_workers_trial_is_retried(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DECODER_NAS_LEASE_SECONDS", "0.6")
    study = journal_study(tmp_path)
    reporter = LeaseReporter(SilentReporter())
    live = study.ask()
    reporter.trial_started(live, "a model", steps=10)
    dead = study.ask()  # stamped by a worker that died a moment later
    dead.suggest_int("n_layer", 1, 4)
    dead.set_user_attr(LEASE_KEY, time.time() + 0.6)

    time.sleep(2.0)  # building, timing or evaluating the model: no progress reports for three leases

    # the live worker's renewals swept the dead worker's trial without waiting for its next trial
    assert states(study) == [TrialState.RUNNING, TrialState.FAIL, TrialState.WAITING]
    retry = study.get_trials(deepcopy=False)[2]
    assert retry.user_attrs[RETRY_KEY] == dead.number and retry.system_attrs["fixed_params"] == dead.params
    assert fail_expired_trials(another_worker(tmp_path)) == []  # the live trial's lease holds
    study.tell(live, 1.0)
    reporter.trial_finished(study.get_trials(deepcopy=False)[live.number])
    assert not [t for t in threading.enumerate() if t.name.startswith("lease-trial-")]
    assert states(another_worker(tmp_path))[live.number] == TrialState.COMPLETE


def test_a_killed_worker_is_retried_within_two_minutes_by_default(tmp_path: Path) -> None:
    study = journal_study(tmp_path)
    reporter = LeaseReporter(SilentReporter())
    trial = study.ask()
    reporter.trial_started(trial, "a model", steps=10)
    reporter.trial_finished(study.get_trials(deepcopy=False)[0])  # its renewals stop: the worker was killed
    assert fail_expired_trials(another_worker(tmp_path), now=time.time() + 110) == [trial.number]


def test_a_worker_can_tell_its_trial_was_taken_from_it(tmp_path: Path) -> None:
    study = journal_study(tmp_path)

    def taken_while_stalled(trial: optuna.Trial) -> float:
        fail_expired_trials(another_worker(tmp_path), now=time.time() + 10**6)  # its lease ran out long ago
        return 1.0

    def writes_after_it_was_taken(trial: optuna.Trial) -> float:
        taken_while_stalled(trial)
        trial.set_user_attr("val_loss", 1.0)
        return 1.0

    for objective in (taken_while_stalled, writes_after_it_was_taken):
        with pytest.raises(Exception) as raised:
            study.optimize(objective, n_trials=1, catch=(Exception,))
        assert trial_taken(raised.value)
    assert not trial_taken(ValueError("Cannot tell with state RUNNING."))
    assert not trial_taken(RuntimeError("a bug in the model"))


@pytest.mark.parametrize("value", ["abc", "0", "-1", "inf"])
def test_a_malformed_lease_setting_is_one_line_when_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         value: str) -> None:
    study = journal_study(tmp_path)
    monkeypatch.setenv("DECODER_NAS_LEASE_SECONDS", value)
    expected = f"^DECODER_NAS_LEASE_SECONDS='{value}': expected a positive number of seconds$"
    with pytest.raises(StudyError, match=expected):
        fail_expired_trials(study)
    with pytest.raises(StudyError, match=expected):
        LeaseReporter(SilentReporter()).trial_started(study.ask(), "a model", steps=10)
