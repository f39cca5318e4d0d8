"""Counts a user reads side by side add up: trials trained, the study's trials by outcome, progress lines."""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.trial import TrialState, create_trial

from studies.storage.backends import open_storage
from studies.workers.trial_record import TrialRecord, study_counts


def made(state: TrialState, number: int = 0, **attrs) -> optuna.trial.FrozenTrial:
    trial = create_trial(state=state, values=[3.1, 2e4] if state == TrialState.COMPLETE else None, user_attrs=attrs)
    trial.number = number
    return trial


def test_a_stopped_trial_prints_no_empty_values() -> None:
    pruned = made(TrialState.PRUNED, 7, summary="d16 1L[S2]", flops_per_token=2e4,
                  pruned_reason="dominated at step 4: loss 3.300 vs trial 2's 3.100 at no greater cost (margin 0.100)")
    line = TrialRecord.of(pruned, ["val_loss", "flops_per_token"]).line()
    assert line.startswith("trial 7 stopped early d16 1L[S2] flops_per_token=20k dominated at step 4")
    assert "val_loss=" not in line and "= " not in line


def test_the_study_counts_add_up(tmp_path: Path) -> None:
    study = optuna.create_study(storage=open_storage(str(tmp_path / "s.journal")), directions=["minimize"] * 2)
    for trial in [made(TrialState.COMPLETE), made(TrialState.COMPLETE), made(TrialState.COMPLETE, reused_from=0),
                  made(TrialState.PRUNED), made(TrialState.PRUNED, infeasible=True), made(TrialState.FAIL)]:
        study.add_trial(trial)
    assert study_counts(study.get_trials()) == ("6 trials: 2 complete, 1 reused a twin's result, 1 stopped early, "
                                                "1 infeasible, 1 failed")
    assert study_counts([]) == "no trials yet"
