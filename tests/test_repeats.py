"""Repeats: an architecture trained before, in this study or in another that trains alike, is reused
and not retrained, a repeat is followed by an untried neighbour, and a study with nothing untried stops.

Across studies: two studies in one storage, same data, tokenizer, context and recipe; a second study whose
neighbourhood the first has covered used to reuse the first's results without end.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from studies.settings import read_settings
from studies.storage.backends import open_storage
from studies.workers import search as search_module
from studies.workers import trials as trials_module
from studies.workers.repeats import enqueue_untried_neighbour
from studies.workers.search import MAX_CONSECUTIVE_REPEATS
from study_helpers import (  # noqa: F401 (isolated_python_api: an autouse fixture)
    PRESET_NAMES,
    PRESETS_TRAINED,
    SINGLE_SPACE,
    TINY_SPACE,
    Tiny,
    isolated_python_api,
    load,
    make_tiny,
    run,
)

TWO_ARCHITECTURES = {**SINGLE_SPACE, "mlp_ratio": [2, 4]}
RUNAWAY = 5 * MAX_CONSECUTIVE_REPEATS  # far more trials than the rule allows: the worker never stopped


def trials_of(tiny: Tiny, study: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=study, storage=open_storage(str(tiny.storage))).get_trials()


def covered(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Tiny:
    """Study 'a' has trained both architectures of the tiny two-architecture space."""
    tiny = make_tiny(tmp_path, TWO_ARCHITECTURES)
    assert run(capsys, *tiny.argv("search", "--trials", "2", "--no-presets", "--rungs", study="a")).code == 0
    assert len({t.user_attrs["arch_hash"] for t in trials_of(tiny, "a") if trials_module.trained(t)}) == 2
    return tiny


@pytest.fixture
def bounded(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Fails a worker that runs away (it used to record thousands of trials) instead of hanging the test;
    returns the calls to run_training."""
    runs, calls = [], []
    real_trial, real_training = search_module.run_trial, trials_module.run_training

    def counted_trial(context):
        runs.append(1)
        if len(runs) > RUNAWAY:
            raise RuntimeError(f"{len(runs)} trials in one worker: the repeats never ended")
        return real_trial(context)

    monkeypatch.setattr(search_module, "run_trial", counted_trial)
    monkeypatch.setattr(trials_module, "run_training", lambda *a, **k: calls.append(1) or real_training(*a, **k))
    return calls


# --- repeats within a study ------------------------------------------------------------------------


def test_an_architecture_seen_before_is_reused_not_retrained(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    tiny = make_tiny(tmp_path, SINGLE_SPACE)
    calls = []
    real = trials_module.run_training
    monkeypatch.setattr(trials_module, "run_training", lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setattr(search_module, "MAX_CONSECUTIVE_REPEATS", 2)
    # a one-architecture space: the second trial is a repeat, which does not count toward --trials,
    # so the worker goes on until the sampler has proposed only repeats twice in a row
    result = run(capsys, *tiny.argv("search", "--trials", "2", "--no-presets"))
    assert result.code == 0, result.err
    assert "space looks exhausted" in result.out and "trained 1 trial in this process" in result.out
    first, second, third = load(tiny).get_trials()
    assert len(calls) == 1
    assert first.state == second.state == third.state == TrialState.COMPLETE
    assert third.user_attrs["reused_from"] == first.number  # always the trained original, never a copy
    assert "reused_from" not in first.user_attrs and second.user_attrs["reused_from"] == first.number
    assert second.values == first.values and second.user_attrs["arch_hash"] == first.user_attrs["arch_hash"]
    for key in ("train_seconds", "val_loss", "loss_curve", "params"):
        assert second.user_attrs[key] == first.user_attrs[key]
    assert len(json.loads(run(capsys, "pareto", *tiny.study_flags(), "--json").out)) == 1  # one architecture


def test_a_repeat_is_followed_by_an_untried_architecture_one_change_away(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Two architectures in the space: a large study's TPE proposes trained ones again and again
    # (studies/workers/repeats.py), so the worker tries the architecture next to a repeat instead.
    tiny = make_tiny(tmp_path, {**SINGLE_SPACE, "mlp_ratio": [2, 4]})
    assert run(capsys, *tiny.argv("search", "--trials", "1", "--no-presets")).code == 0
    study = load(tiny)
    [first] = study.get_trials()
    study.enqueue_trial(first.params)  # what TPE proposes once it has settled on a trained architecture
    result = run(capsys, *tiny.argv("search", "--trials", "1", "--no-presets"))
    assert result.code == 0, result.err
    first, repeat, neighbour = load(tiny).get_trials()
    assert repeat.user_attrs["reused_from"] == first.number
    assert neighbour.user_attrs["neighbour_of"] == repeat.number and "reused_from" not in neighbour.user_attrs
    assert neighbour.state == TrialState.COMPLETE and trials_module.trained(neighbour)
    [changed] = [name for name in first.params if neighbour.params[name] != first.params[name]]
    assert changed.startswith("mlp_ratio") and neighbour.user_attrs["arch_hash"] != first.user_attrs["arch_hash"]
    # Nothing untried is left next to either: a repeat now enqueues nothing, and the worker stops.
    study = load(tiny)
    assert not enqueue_untried_neighbour(study, read_settings(study), repeat, first.user_attrs["config"]["vocab_size"])
    assert len(study.get_trials()) == 3


# --- repeats across studies that train alike ---------------------------------------------------------


@pytest.mark.slow
def test_a_study_that_trains_alike_reuses_another_studys_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    tiny = make_tiny(tmp_path, {**TINY_SPACE, "n_layer": {"low": 1, "high": 1}, "towers": [1]})
    calls = []
    real = trials_module.run_training
    monkeypatch.setattr(trials_module, "run_training", lambda *a, **k: calls.append(1) or real(*a, **k))
    # the presets, then one sampled trial; no early stopping, so it completes and can be promoted
    search = tiny.argv("search", "--trials", str(PRESETS_TRAINED + 1), "--rungs", "--sampler-seed", "0")
    assert run(capsys, *search).code == 0
    first = {t.user_attrs["arch_hash"]: t for t in load(tiny).get_trials() if trials_module.trained(t)}
    calls.clear()

    # another sampler seed, the same data, recipe and device: the presets are reused, so not counted
    assert run(capsys, *tiny.argv("search", "--trials", "1", "--rungs", "--sampler-seed", "7", study="twin")).code == 0
    twin = load(tiny, "twin").get_trials()
    for trial, name in zip(twin, PRESET_NAMES):
        original = first[trial.user_attrs["arch_hash"]]  # for cgpt: lgpt, the trial that trained
        assert trial.user_attrs["reused_from_study"] == "tiny" and trial.user_attrs["reused_from"] == original.number
        assert trial.values == original.values and trial.user_attrs["preset"] == name
    assert len(calls) == sum("reused_from" not in t.user_attrs for t in twin) >= 1

    # promoting both: the second sibling reuses the first sibling's presets, and runs only what was queued
    assert run(capsys, "promote", *tiny.study_flags(), "--steps", "24", "--device", "cpu").code == 0
    assert run(capsys, "promote", *tiny.study_flags("twin"), "--steps", "24", "--device", "cpu").code == 0
    sibling = load(tiny, "twin@24").get_trials()
    assert all("preset" in t.user_attrs or "promoted_from" in t.user_attrs for t in sibling)
    assert {t.user_attrs.get("reused_from_study") for t in sibling[:4]} == {"tiny@24"}

    # a different recipe trains afresh
    calls.clear()
    assert run(capsys, *tiny.argv("search", "--trials", "1", "--lr", "0.002", study="other-lr")).code == 0
    assert not any("reused_from_study" in t.user_attrs for t in load(tiny, "other-lr").get_trials())
    assert len(calls) == 1


def test_a_study_covered_by_another_stops_as_exhausted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bounded: list[int]
) -> None:
    tiny = covered(tmp_path, capsys)
    bounded.clear()
    result = run(capsys, *tiny.argv("search", "--trials", "1", "--no-presets", "--rungs", "--sampler-seed", "7",
                                    study="b"))
    assert result.code == 0, result.err
    assert "the space looks exhausted" in result.out and "trained 0 trials in this process" in result.out
    reused = trials_of(tiny, "b")
    assert len(reused) == MAX_CONSECUTIVE_REPEATS and not bounded  # nothing trained: all of it was reused
    assert all(t.user_attrs["reused_from_study"] == "a" for t in reused)


def test_after_a_repeat_from_another_study_the_neighbour_is_one_no_study_trained(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bounded: list[int]
) -> None:
    tiny = covered(tmp_path, capsys)
    [source] = [t for t in trials_of(tiny, "a") if t.params["mlp_ratio"] == 2 and trials_module.trained(t)]
    # Study b's space is wider (the space is not among the settings that decide a result): d_model 32 too.
    wider = make_tiny(tmp_path / "b", {**TWO_ARCHITECTURES, "d_model": [16, 32]})
    b = Tiny(tiny.root, tiny.corpus, wider.space, tiny.storage)
    assert run(capsys, *b.argv("search", "--trials", "0", "--no-presets", "--rungs", study="b")).code == 0
    optuna.load_study(study_name="b", storage=open_storage(str(tiny.storage))).enqueue_trial(source.params)
    bounded.clear()
    result = run(capsys, *b.argv("search", "--trials", "1", "--no-presets", "--rungs", study="b"))
    assert result.code == 0, result.err
    repeat, neighbour = trials_of(tiny, "b")
    assert repeat.user_attrs["reused_from_study"] == "a" and repeat.user_attrs["reused_from"] == source.number
    # mlp_ratio 4 is one change away too, but study a trained it: d_model 32 is the untried change
    assert neighbour.user_attrs["neighbour_of"] == repeat.number and trials_module.trained(neighbour)
    assert neighbour.params == {**source.params, "d_model": 32} and len(bounded) == 1


@pytest.mark.slow
def test_a_promotion_runs_its_whole_queue_however_many_results_it_reuses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The exhaustion rule is for sampled trials: a promoted sibling's queue is finite and runs to its end.
    tiny = make_tiny(tmp_path, TWO_ARCHITECTURES)
    for study in ("a", "b"):  # the presets, then a sampled trial; b reuses a's presets
        assert run(capsys, *tiny.argv("search", "--trials", str(PRESETS_TRAINED + 1), "--rungs", study=study)).code == 0
    # b's presets were each a repeat, but a neighbour is queued only when nothing waits: none is left behind
    assert not [t for t in trials_of(tiny, "b") if t.state == TrialState.WAITING]
    monkeypatch.setattr(search_module, "MAX_CONSECUTIVE_REPEATS", 1)
    for study in ("a", "b"):
        assert run(capsys, "promote", *tiny.study_flags(study), "--steps", "24", "--device", "cpu",
                   "--gap-trials", "0").code == 0
    sibling = trials_of(tiny, "b@24")
    assert sum(t.user_attrs.get("reused_from_study") == "a@24" for t in sibling) >= len(PRESET_NAMES)
    assert all(t.state != TrialState.WAITING for t in sibling)


@pytest.mark.slow
def test_the_jobs_parent_ends_with_the_exhausted_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tiny = covered(tmp_path, capsys)
    # --jobs 2, the default on a CPU-only machine with a journal file
    argv = ["search", *tiny.argv("worker", "--trials", "1", "--no-presets", "--rungs", study="b")[1:], "--jobs", "2"]
    done = subprocess.run([sys.executable, "-m", "studies", *argv], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "the space looks exhausted" in done.stdout and "trained 0 trials in 2 processes" in done.stdout
    assert done.stdout.count("the space looks exhausted") == 1  # the jobs' `done` events said it; the parent, once
    assert "exhausted" not in done.stderr
    assert len(trials_of(tiny, "b")) <= 2 * MAX_CONSECUTIVE_REPEATS
