"""Gap trials: after a promotion, one-parameter changes of front trials where the front's cost axis is bare."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

from objectives import describe
from search_space import architecture_hash
from studies.fronts import gaps
from studies.settings import write_settings
from studies.space import space_from_dict
from studies.storage.backends import open_storage
from studies.workers.search import run_worker
from studies.workers.trial_record import TrialRecord
from study_helpers import TINY_SPACE, cli, isolated_python_api, make_settings, make_tiny  # noqa: F401 - autouse fixture
from trainer import prepare_data

VOCAB = 30
SPACE = space_from_dict(TINY_SPACE)
CHEAP = {"n_layer": 1, "reduce_every": 1, "d_model": 16, "n_head": 2, "mlp_ratio": 2, "layout": "sequential",
         "reduction": "none", "conv_kernel": 1, "reduce_factor": 0.5, "towers": 1}
DEAR = {**CHEAP, "n_layer": 2, "d_model": 32}


def flops(params: dict) -> int:
    return describe(SPACE.config_from_params(params, VOCAB, 16)).flops_per_token


def told(study: optuna.Study, params: dict, loss: float, vocab_size: int = VOCAB,
         user_attrs: dict | None = None) -> optuna.trial.FrozenTrial:
    """A complete sampled trial with these parameters, recorded as a worker records one."""
    study.enqueue_trial(params, user_attrs=user_attrs)
    trial = study.ask()
    config = SPACE.sample(trial, vocab_size, 16)
    cost = describe(config).flops_per_token
    for key, value in {"arch_hash": architecture_hash(config), "flops_per_token": cost}.items():
        trial.set_user_attr(key, value)
    study.tell(trial, [loss, cost])
    return study.trials[-1]


def queued(study: optuna.Study) -> tuple[dict, dict]:
    """The parameters and user attributes of the trial waiting in the queue (asked, as a worker would)."""
    assert len(study.get_trials(states=(TrialState.WAITING,))) == 1
    trial = study.ask()
    SPACE.sample(trial, VOCAB, 16)
    return trial.params, trial.user_attrs


def bounded_study(dear_attrs: dict | None = None) -> tuple[optuna.Study, list[optuna.trial.FrozenTrial]]:
    settings = make_settings()
    study = optuna.create_study(directions=settings.directions, sampler=optuna.samplers.RandomSampler(seed=0))
    write_settings(study, settings)
    return study, [told(study, CHEAP, 3.0), told(study, DEAR, 2.0, user_attrs=dear_attrs)]


def test_a_gap_trial_is_the_untried_change_nearest_the_gaps_middle() -> None:
    study, (cheap, dear) = bounded_study()
    low, high = cheap.user_attrs["flops_per_token"], dear.user_attrs["flops_per_token"]
    assert high > gaps.GAP_RATIO * low
    assert gaps.enqueue_gap_trial(study, make_settings(), VOCAB)
    params, attrs = queued(study)
    assert attrs["gap_between"] == [cheap.number, dear.number]
    source = CHEAP if attrs["changed_from"] == cheap.number else DEAR
    assert sum(params[k] != source[k] for k in source) == 1  # one parameter changed
    cost = flops(params)
    assert low < cost < high
    middle = math.sqrt(low * high)
    tried = {cheap.user_attrs["arch_hash"], dear.user_attrs["arch_hash"]}
    for neighbour in SPACE.neighbours(CHEAP) + SPACE.neighbours(DEAR):  # none fills it nearer the middle
        config = SPACE.config_from_params(neighbour, VOCAB, 16)
        other = describe(config).flops_per_token
        if low < other < high and architecture_hash(config) not in tried:
            assert abs(math.log(cost / middle)) <= abs(math.log(other / middle)) + 1e-12


def test_a_preset_on_the_front_comes_first_with_its_own_cheapest_change(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gaps, "GAP_RATIO", 100.0)  # no gap is wide enough, but a preset's counts at any width
    study, _ = bounded_study()
    assert not gaps.enqueue_gap_trial(study, make_settings(), VOCAB)

    study, (cheap, dear) = bounded_study(dear_attrs={"preset": "gpt"})
    assert gaps.enqueue_gap_trial(study, make_settings(), VOCAB)
    params, attrs = queued(study)
    assert attrs["gap_between"] == [cheap.number, dear.number] and attrs["changed_from"] == dear.number
    low, high = cheap.user_attrs["flops_per_token"], dear.user_attrs["flops_per_token"]
    inside = [flops(n) for n in SPACE.neighbours(DEAR) if low < flops(n) < high]
    assert len(set(inside)) > 1 and flops(params) == min(inside)  # the biggest cut that stays inside


def test_no_gap_trial_without_a_gap_while_one_waits_or_without_a_cost() -> None:
    study, _ = bounded_study()
    gaps_free = optuna.create_study(directions=["minimize", "minimize"])
    write_settings(gaps_free, make_settings())
    told(gaps_free, CHEAP, 3.0)
    told(gaps_free, {**CHEAP, "layout": "parallel"}, 2.9)
    assert not gaps.enqueue_gap_trial(gaps_free, make_settings(), VOCAB)  # costs within GAP_RATIO

    loss_only = optuna.create_study(direction="minimize")
    for params, loss in ((CHEAP, 3.0), (DEAR, 2.0)):
        loss_only.enqueue_trial(params)
        trial = loss_only.ask()
        SPACE.sample(trial, VOCAB, 16)
        loss_only.tell(trial, loss)
    assert not gaps.enqueue_gap_trial(loss_only, make_settings(objectives=("val_loss",)), VOCAB)

    study.enqueue_trial(CHEAP)  # something already queued (a preset, say) goes first
    assert not gaps.enqueue_gap_trial(study, make_settings(), VOCAB)
    assert len(study.get_trials(states=(TrialState.WAITING,))) == 1


def test_a_gap_trial_respects_the_cost_constraints() -> None:
    study, (cheap, dear) = bounded_study()
    low, high = cheap.user_attrs["flops_per_token"], dear.user_attrs["flops_per_token"]
    limit = math.sqrt(low * high) * 0.9  # below the middle: the nearest filler may be out of bounds
    assert gaps.enqueue_gap_trial(study, make_settings(constraints={"max_flops": limit}), VOCAB)
    assert flops(queued(study)[0]) <= limit

    study, _ = bounded_study()
    assert not gaps.enqueue_gap_trial(study, make_settings(constraints={"max_flops": low}), VOCAB)


@pytest.mark.parametrize("gap_trials", [1, 0])
def test_a_promotion_run_trains_gap_trials_after_its_queue(gap_trials: int, tmp_path: Path) -> None:
    tiny = make_tiny(tmp_path / "tiny")
    data = prepare_data(str(tiny.corpus), "char", cache_dir=tmp_path / "cache")
    settings = make_settings(content_hash=data.content_hash, data=str(tiny.corpus))
    study = optuna.create_study(directions=settings.directions, sampler=optuna.samplers.RandomSampler(seed=0))
    write_settings(study, settings)
    cheap, dear = told(study, CHEAP, 3.0, data.vocab_size), told(study, DEAR, 2.0, data.vocab_size)
    for _ in range(2):  # a second run finds the gap trials already there
        run_worker(study, settings, data, torch.device("cpu"), n_trials=5, queued_only=True, gap_trials=gap_trials)
    assert gaps.gap_trials_in(study) == gap_trials and len(study.trials) == 2 + gap_trials
    if gap_trials:
        trained = study.trials[-1]
        assert trained.state in (TrialState.COMPLETE, TrialState.PRUNED)
        assert "(gap trial)" in TrialRecord.of(trained, settings.objectives).line()  # the progress line says so
        low, high = cheap.user_attrs["flops_per_token"], dear.user_attrs["flops_per_token"]
        assert low < trained.user_attrs["flops_per_token"] < high
        study.enqueue_trial(trained.params)  # proposed again: a repeat is not a gap trial
        run_worker(study, settings, data, torch.device("cpu"), n_trials=1, queued_only=True)
        repeat = study.trials[-1]
        assert repeat.user_attrs["reused_from"] == trained.number and "gap_between" not in repeat.user_attrs
        assert repeat.user_attrs["val_loss"] == trained.user_attrs["val_loss"]


@pytest.mark.slow
@pytest.mark.parametrize("encoding", ["pattern", "per_layer"])
def test_promote_fills_a_gap_of_the_longer_front(encoding: str, tmp_path: Path) -> None:
    space = {**TINY_SPACE, "d_model": [16, 48], "layout": ["sequential"], "reduction": ["none"], "towers": [1],
             "encoding": encoding}
    tiny = make_tiny(tmp_path, space)
    assert cli(*tiny.argv("search", "--trials", "3", "--no-presets", "--sampler", "random", "--sampler-seed", "0",
                          "--rungs")).code == 0
    result = cli("promote", *tiny.study_flags(), "--steps", "24", "--top", "3", "--gap-trials", "2", "--device", "cpu")
    assert result.code == 0, result.err
    assert "promoted 3 new architectures" in result.out and "Pareto front of 'tiny@24'" in result.out
    assert "Next:" in result.out  # promote ends as search does
    storage = open_storage(str(tiny.storage))
    sibling = optuna.load_study(study_name="tiny@24", storage=storage)
    gap = [t for t in sibling.trials if "gap_between" in t.user_attrs]
    assert len(gap) >= 1 and all(t.user_attrs["steps"] == 24 for t in gap)
    for trial in gap:
        cheap, dear = (sibling.trials[n].user_attrs["flops_per_token"] for n in trial.user_attrs["gap_between"])
        assert cheap < trial.user_attrs["flops_per_token"] < dear
        assert trial.user_attrs["changed_from"] in trial.user_attrs["gap_between"]
    # a promoted trial was enqueued by config: its parameters are found from it to change one
    assert any("promoted_from" in sibling.trials[t.user_attrs["changed_from"]].user_attrs for t in gap)
    # every gap trial is an architecture not trained before (the presets lgpt and cgpt are one)
    before = {t.user_attrs["arch_hash"] for t in sibling.trials if "gap_between" not in t.user_attrs}
    hashes = [t.user_attrs["arch_hash"] for t in gap]
    assert len(hashes) == len(set(hashes)) and not before & set(hashes)
    again = cli("promote", *tiny.study_flags(), "--steps", "24", "--gap-trials", str(len(gap)), "--device", "cpu")
    gaps_said = f"{len(gap)} gap trial{'s' if len(gap) != 1 else ''} in the study"
    assert gaps_said in result.out and (len(gap) == 2 or "no front gap wider than" in result.out)
    assert "promoted 0 new architectures" in again.out and "0 trained here" in again.out and gaps_said in again.out
    assert len(optuna.load_study(study_name="tiny@24", storage=storage).trials) == len(sibling.trials)
