"""One trial through the Python API: rung early stopping, failure reasons, leases on journal storage."""

from __future__ import annotations

import time
from pathlib import Path

import optuna
import pytest
import torch
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState, create_trial

from objectives import decode_state_bytes
from search_space import config_from_dict, preset
from studies.errors import StudyError
from studies.settings import Pruning, StudySettings
from studies.workers import search as search_module
from studies.workers import trials as trials_module
from studies.workers.leases import LEASE_KEY, MAX_RETRIES, RETRY_KEY, fail_expired_trials
from studies.workers.search import run_worker
from studies.workers.trial_record import TrialRecord, study_counts
from studies.workers.trials import TrialContext, _RungPruner, run_trial
from study_helpers import (  # noqa: F401 - autouse fixture
    STEPS,
    TINY_SPACE,
    isolated_python_api,
    make_settings,
    make_tiny,
    tiny_study_inputs,
)
from trainer import DataError
from trainer.loop import NonFiniteLossError, Progress

LOSS_FLOPS = ("val_loss", "flops_per_token")
DIRECTIONS = {"val_loss": "minimize", "val_accuracy": "maximize", "flops_per_token": "minimize", "params": "minimize",
              "latency_ms": "minimize"}


def make_study(objectives=LOSS_FLOPS, storage=None) -> optuna.Study:
    return optuna.create_study(directions=[DIRECTIONS[o] for o in objectives], storage=storage,
                               sampler=optuna.samplers.RandomSampler(seed=0))


def other(study: optuna.Study, values: list[float], state=TrialState.COMPLETE, **attrs) -> int:
    """A finished trial holding rung losses and costs, as an earlier trial would have left them."""
    study.add_trial(create_trial(state=state, values=values if state == TrialState.COMPLETE else None,
                                 user_attrs=attrs))
    return study.trials[-1].number


def progress(step: int, loss: float) -> Progress:
    return Progress(step=step, steps=STEPS, loss=loss, tokens=step * 64, seconds=0.1 * step)


def pruner_for(study: optuna.Study, settings: StudySettings, measures: dict, preset: str | None = None):
    trial = study.ask()
    if preset:
        trial.set_user_attr("preset", preset)
    context = TrialContext(study, settings, None, torch.device("cpu"))
    return trial, _RungPruner(trial, context, measures)


# --- the rung pruner ------------------------------------------------------------------------------------


def test_rungs_are_fractions_of_the_steps() -> None:
    _, pruner = pruner_for(make_study(), make_settings(), {"flops_per_token": 100})
    assert pruner.rungs == [4, 8] and pruner.margin == 0.05 and pruner.costs == ["flops_per_token"]
    _, pruner = pruner_for(make_study(), make_settings(pruning=Pruning(rungs=(), margin=0.05)), {"flops_per_token": 1})
    assert pruner.rungs == []
    _, pruner = pruner_for(make_study(), make_settings(pruning=Pruning(rungs=(0.5, 0.5))), {"flops_per_token": 1})
    assert pruner.rungs == [6]  # one rung per step
    with pytest.raises(StudyError, match="between 0 and 1"):
        Pruning(rungs=(1.0,))


def test_worse_loss_at_no_greater_cost_is_pruned() -> None:
    study = make_study()
    leader = other(study, [2.5, 100], rung_4=2.0, flops_per_token=100)
    trial, pruner = pruner_for(study, make_settings(), {"flops_per_token": 100})
    with pytest.raises(optuna.TrialPruned, match=f"dominated at step 4: loss 2.200 vs trial {leader}'s 2.000"):
        pruner(progress(4, 2.2))
    assert study.trials[trial.number].user_attrs["rung_4"] == pytest.approx(2.2)


def test_a_running_trial_at_the_rung_also_counts() -> None:
    study = make_study()
    running = study.ask()
    running.set_user_attr("rung_4", 2.0)
    running.set_user_attr("flops_per_token", 50)
    _, pruner = pruner_for(study, make_settings(), {"flops_per_token": 100})
    with pytest.raises(optuna.TrialPruned, match=f"trial {running.number}'s"):
        pruner(progress(4, 2.2))


def test_higher_loss_at_lower_cost_is_not_pruned() -> None:
    study = make_study()
    other(study, [2.5, 100], rung_4=2.0, rung_8=1.5, flops_per_token=100)
    trial, pruner = pruner_for(study, make_settings(), {"flops_per_token": 50})
    pruner(progress(4, 3.0))
    pruner(progress(8, 3.0))
    pruner(progress(12, 3.0))
    attrs = study.trials[trial.number].user_attrs
    assert attrs["rung_4"] == pytest.approx(3.0) and attrs["rung_8"] == pytest.approx(3.0)


def test_within_the_margin_is_not_pruned() -> None:
    study = make_study()
    other(study, [2.5, 100], rung_4=2.0, flops_per_token=100)
    _, pruner = pruner_for(study, make_settings(), {"flops_per_token": 100})
    pruner(progress(4, 2.04))


def test_an_earlier_rung_needs_a_wider_margin() -> None:
    study = make_study()
    other(study, [2.5, 100], rung_4=2.0, rung_8=2.0, flops_per_token=100)
    _, pruner = pruner_for(study, make_settings(), {"flops_per_token": 100})
    assert pruner.margin_at(4) == pytest.approx(0.1) and pruner.margin_at(8) == pytest.approx(0.05)
    pruner(progress(4, 2.07))  # 0.07 behind at 1/3: within that rung's margin of 0.1
    with pytest.raises(optuna.TrialPruned, match=r"at step 8: .*\(margin 0.050\)"):
        pruner(progress(8, 2.07))  # the same gap at 2/3 is beyond 0.05


def test_every_cost_must_be_no_greater() -> None:
    objectives = ("val_loss", "flops_per_token", "params")
    study = make_study(objectives)
    other(study, [2.5, 100, 9000], rung_4=2.0, flops_per_token=100, params=9000)  # cheaper in FLOPs only
    _, pruner = pruner_for(study, make_settings(objectives), {"flops_per_token": 200, "params": 5000})
    pruner(progress(4, 3.0))
    other(study, [2.5, 100, 4000], rung_4=2.0, flops_per_token=100, params=4000)  # cheaper in both
    _, pruner = pruner_for(study, make_settings(objectives), {"flops_per_token": 200, "params": 5000})
    with pytest.raises(optuna.TrialPruned, match="dominated"):
        pruner(progress(4, 3.0))


def test_failed_trials_and_trials_without_the_rung_do_not_prune() -> None:
    study = make_study()
    other(study, [0, 0], state=TrialState.FAIL, rung_4=0.0, flops_per_token=0)
    other(study, [0.0, 0], rung_8=0.0, flops_per_token=0)  # never reached rung 4
    _, pruner = pruner_for(study, make_settings(), {"flops_per_token": 100})
    pruner(progress(4, 5.0))


def test_a_preset_is_never_pruned() -> None:
    study = make_study()
    other(study, [0.5, 1], rung_4=0.1, rung_8=0.1, flops_per_token=1)
    trial, pruner = pruner_for(study, make_settings(), {"flops_per_token": 100}, preset="gpt")
    pruner(progress(10, 5.0))  # crosses both rungs
    attrs = study.trials[trial.number].user_attrs
    assert attrs["rung_4"] == attrs["rung_8"] == pytest.approx(5.0)


def test_the_rung_loss_is_smoothed_over_the_last_reports() -> None:
    study = make_study()
    trial, pruner = pruner_for(study, make_settings(), {"flops_per_token": 100})
    for step, loss in ((1, 9.0), (2, 3.0), (3, 2.0), (4, 1.0)):
        pruner(progress(step, loss))
    assert study.trials[trial.number].user_attrs["rung_4"] == pytest.approx(2.0)  # mean of 3.0, 2.0, 1.0


# --- whole trials through run_trial -----------------------------------------------------------------------


@pytest.fixture
def context(tmp_path: Path) -> TrialContext:
    study = make_study()
    return TrialContext(study, *tiny_study_inputs(tmp_path, study), torch.device("cpu"))


def test_a_trial_dominated_at_a_rung_stops_training(context: TrialContext) -> None:
    # An earlier (imaginary) trial that was free and perfect at both rungs.
    other(context.study, [0.0, 0.0], rung_4=0.0, rung_8=0.0, flops_per_token=0, arch_hash="imaginary")
    pruned = run_trial(context)
    assert pruned.state == TrialState.PRUNED
    assert pruned.user_attrs["pruned_reason"].startswith("dominated at step 4:")
    assert "trial 0's 0.000" in pruned.user_attrs["pruned_reason"]
    assert "rung_4" in pruned.user_attrs and "val_loss" not in pruned.user_attrs
    assert "loss_curve" not in pruned.user_attrs and pruned.user_attrs["flops_per_token"] > 0

    context.study.enqueue_trial({}, user_attrs={"preset": "lgpt"})
    preset = run_trial(context)
    assert preset.state == TrialState.COMPLETE and preset.user_attrs["preset"] == "lgpt"
    assert len(preset.user_attrs["loss_curve"]) == STEPS
    assert preset.values == [preset.user_attrs["val_loss"], preset.user_attrs["flops_per_token"]]


def test_a_repeat_of_a_pruned_architecture_is_pruned_again_without_training(
    context: TrialContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    other(context.study, [0.0, 0.0], rung_4=0.0, rung_8=0.0, flops_per_token=0, arch_hash="imaginary")
    first = run_trial(context)
    assert first.state == TrialState.PRUNED
    monkeypatch.setattr(trials_module, "run_training", lambda *a, **k: pytest.fail("a repeat was trained"))
    context.study.enqueue_trial({}, user_attrs={"config": first.user_attrs["config"]})
    repeat = run_trial(context)
    assert repeat.state == TrialState.PRUNED and repeat.user_attrs["reused_from"] == first.number
    assert repeat.user_attrs["pruned_reason"] == f"as trial {first.number}: {first.user_attrs['pruned_reason']}"
    assert repeat.user_attrs["rung_4"] == first.user_attrs["rung_4"]
    assert not trials_module.trained(repeat) and trials_module.trained(first)
    # every view says and counts it as reused, not as one more trial stopped early (the jobs' line
    # said "25 trials trained" for --trials 24 when a repeat of a stopped architecture was among them)
    assert TrialRecord.of(repeat, ["val_loss"]).line().startswith(f"trial {repeat.number} reused a twin's result")
    assert study_counts([first, repeat]) == "2 trials: 1 reused a twin's result, 1 stopped early"


@pytest.mark.parametrize("error, reason", [
    (NonFiniteLossError("training loss became non-finite at step 1-10"),
     "training loss became non-finite at step 1-10"),
    (ValueError("bad shapes"), "ValueError: bad shapes"),
])
def test_a_failing_trial_records_why_and_the_worker_goes_on(
    error: Exception, reason: str, context: TrialContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    real, calls = trials_module.run_training, []

    def fails_first(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise error
        return real(*args, **kwargs)

    monkeypatch.setattr(trials_module, "run_training", fails_first)
    summary = run_worker(context.study, context.settings, context.data, context.device, n_trials=2)
    failed, complete = context.study.trials
    assert failed.state == TrialState.FAIL and failed.user_attrs["fail_reason"] == reason
    assert complete.state == TrialState.COMPLETE and "fail_reason" not in complete.user_attrs
    assert summary.trials_run == 2 and summary.complete_in_study == 1


def test_the_worker_refuses_a_changed_corpus(context: TrialContext) -> None:
    settings = make_settings(content_hash="0" * 64)
    with pytest.raises(DataError, match="changed since study .* was created"):
        run_worker(context.study, settings, context.data, context.device, n_trials=1)
    assert context.study.trials == []


def test_the_worker_gives_up_on_endless_infeasible_samples(
    context: TrialContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(search_module, "MAX_CONSECUTIVE_INFEASIBLE", 3)
    settings = make_settings(content_hash=context.settings.content_hash, constraints={"max_params": 10})
    with pytest.raises(StudyError, match="3 samples in a row broke the constraints"):
        run_worker(context.study, settings, context.data, context.device, n_trials=1)
    assert [t.state for t in context.study.trials] == [TrialState.PRUNED] * 3
    assert all(t.user_attrs["infeasible"] for t in context.study.trials)


# --- leases on journal storage ------------------------------------------------------------------------------


def test_expired_leases_fail_and_requeue_once(tmp_path: Path) -> None:
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "leases.journal")))
    study = make_study(storage=storage)
    now = time.time()
    dead = study.ask()
    dead.suggest_int("n_layer", 1, 2)
    dead.set_user_attr("config", {"d_model": 16})
    dead.set_user_attr(LEASE_KEY, now - 10)
    alive = study.ask()
    alive.set_user_attr(LEASE_KEY, now + 300)
    starting = study.ask()  # no lease stamped yet: its worker is still setting it up

    assert fail_expired_trials(study) == [dead.number]
    trials = study.get_trials()
    assert trials[dead.number].state == TrialState.FAIL
    assert trials[alive.number].state == TrialState.RUNNING
    assert trials[starting.number].state == TrialState.RUNNING
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert len(waiting) == 1
    retry = waiting[0]
    assert retry.user_attrs[RETRY_KEY] == dead.number and retry.user_attrs["retry_count"] == 1
    assert "config" not in retry.user_attrs and LEASE_KEY not in retry.user_attrs  # sampled: its parameters are it
    assert retry.system_attrs["fixed_params"] == {"n_layer": trials[dead.number].params["n_layer"]}

    assert fail_expired_trials(study) == []  # a second sweep finds nothing more to do
    assert len(study.get_trials(states=(TrialState.WAITING,))) == 1
    # another worker, with its own view of the same journal, agrees
    again = optuna.load_study(study_name=study.study_name,
                              storage=JournalStorage(JournalFileBackend(str(tmp_path / "leases.journal"))))
    assert fail_expired_trials(again) == [] and len(again.get_trials(states=(TrialState.WAITING,))) == 1
    # a worker that died before it ever stamped a lease still loses the trial, one lease after its start
    later = time.time() + 10**6
    assert sorted(fail_expired_trials(again, now=later)) == sorted([alive.number, starting.number])


def test_a_trial_out_of_retries_is_not_requeued(tmp_path: Path) -> None:
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "leases.journal")))
    study = make_study(storage=storage)
    tired = study.ask()
    tired.set_user_attr("retry_count", MAX_RETRIES)
    tired.set_user_attr(LEASE_KEY, time.time() - 1)
    assert fail_expired_trials(study) == [tired.number]
    assert study.get_trials(states=(TrialState.WAITING,)) == []
    assert fail_expired_trials(study, now=time.time() + 10**6) == []  # failed trials are not swept again


@pytest.mark.parametrize("name", ["llama", "lfm2"])
def test_a_queued_preset_of_todays_decoders_trains_at_the_study_shape(name: str, context: TrialContext) -> None:
    """The study's preset machinery builds llama and lfm2 at its shape and records decode_state_bytes."""
    context.study.enqueue_trial({}, user_attrs={"preset": name})
    trial = run_trial(context)
    assert trial.state == TrialState.COMPLETE and trial.user_attrs["preset"] == name
    config = config_from_dict(trial.user_attrs["config"])
    assert config == preset(name, vocab_size=config.vocab_size, block_size=16, n_layer=2, n_head=2, d_model=16)
    assert trial.user_attrs["decode_state_bytes"] == decode_state_bytes(config)
    assert trial.user_attrs["summary"].startswith("d16 rope rms 2L[")
