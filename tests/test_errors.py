"""The error contract: a refused value is named in the caller's terms (the API argument for Python, the
flag on the command line), in one line of the project's own error class, before anything is changed."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import optuna
import pytest

from studies import Pruning, Search, StudyError, StudySettings, delete_study, list_studies
from studies.errors import ArgumentError
from studies.fronts.front import pick
from studies.space import IntRange, load_space
from study_helpers import Tiny, assert_one_line_error, cli, isolated_python_api  # noqa: F401 - autouse fixture
from trainer.loop import RecipeError, TrainingRecipe

NAN, INF = float("nan"), float("inf")


# --- named in the caller's terms --------------------------------------------------------------------


def test_the_api_names_its_own_arguments_not_flags(tmp_path):
    with pytest.raises(ArgumentError, match=r"^max_flops=nan: must be a positive number$") as refused:
        StudySettings(constraints={"max_flops": float("nan")})
    assert (refused.value.argument, refused.value.problem) == ("max_flops", "must be a positive number")
    with pytest.raises(ArgumentError, match=r"^rungs=\[0\.5, 2\.0\]: must be fractions"):
        Pruning(rungs=(0.5, 2.0))
    with pytest.raises(ArgumentError, match=r"^pick='best': unknown choice \(choose from knee, best-quality"):
        pick([], ("val_loss", "flops_per_token"), "best")
    with pytest.raises(ArgumentError, match=r"^storage='.+': is a folder") as refused:
        Search.create("x", storage=str(tmp_path))
    assert "--" not in str(refused.value)


@pytest.mark.parametrize("argv, fragment", [
    (["search", "--max-flops", "nan"], "--max-flops nan: must be a positive number"),
    (["search", "--prune-margin", "-1"], "--prune-margin -1.0: must be a finite number >= 0"),
    (["search", "--grad-clip", "-1", "--storage", "{tmp}/s.journal"], "--grad-clip -1.0: must not be negative"),
    (["search", "--storage", "{tmp}"], "--storage {tmp}: is a folder"),
    (["pareto", "--storage", "{tmp}/nowhere/runs.journal"], "--storage {tmp}/nowhere/runs.journal: folder"),
])
def test_the_command_line_names_the_flag(tmp_path, argv, fragment):
    result = cli(*(arg.format(tmp=tmp_path) for arg in argv))
    assert_one_line_error(result, argv[0], fragment.format(tmp=tmp_path))


# --- the training recipe ---------------------------------------------------------------------------


@pytest.mark.parametrize("changes, message", [
    ({"beta2": 2.0}, "beta2=2.0: must be in [0, 1)"),
    ({"beta1": -0.1}, "beta1=-0.1: must be in [0, 1)"),
    ({"lr": NAN}, "lr=nan: must be a finite number"),
    ({"min_lr": INF}, "min_lr=inf: must be a finite number"),
    ({"weight_decay": -INF}, "weight_decay=-inf: must be a finite number"),
    ({"grad_clip": -1.0}, "grad_clip=-1.0: must not be negative"),
    ({"eval_windows": 0}, "eval_windows=0: must be at least 1"),
    ({"eval_batch_size": 0}, "eval_batch_size=0: must be at least 1"),
    ({"steps": 1e9}, "steps=1000000000.0: expected a whole number"),
    ({"batch_size": True}, "batch_size=True: expected a whole number"),
    ({"lr": "fast"}, "lr='fast': expected a number"),
    ({"max_tokens": 0}, "max_tokens=0: must be at least 1"),
    ({"max_seconds": 0.0}, "max_seconds=0.0: must be positive"),
    ({"max_seconds": NAN}, "max_seconds=nan: must be a finite number"),
    ({"seed": 2**70}, "seed=1180591620717411303424: must be at most"),
    ({"compile": "yes"}, "compile='yes': expected true or false"),
    ({"steps": 0}, "steps=0: must be at least 1"),
    ({"batch_size": -2}, "batch_size=-2: must be at least 1"),
    ({"grad_accum": 0}, "grad_accum=0: must be at least 1"),
    ({"lr": -1e-3}, "lr=-0.001: must not be negative"),
    ({"warmup_steps": -1}, "warmup_steps=-1: must be at least 0"),
])
def test_a_recipe_no_run_could_use_is_refused_at_construction(changes, message):
    with pytest.raises(RecipeError) as error:
        TrainingRecipe(**changes)
    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)


# --- the Python API misused -------------------------------------------------------------------------


@pytest.fixture
def search(two_kept: Tiny, tmp_path: Path) -> Search:
    return Search.load("tiny", str(two_kept.copy(tmp_path / "study").storage))


@pytest.mark.parametrize("call, message", [
    (lambda s: s.run(trials="3", jobs=1), "trials='3': expected int, not str"),
    (lambda s: s.run(trials=2.5, jobs=1), "trials=2.5: expected int, not float"),
    (lambda s: s.run(trials=True, jobs=1), "trials=True: expected int, not bool"),
    (lambda s: s.run(trials=1, jobs="2"), "jobs='2': expected int or None"),
    (lambda s: s.run(trials=1, jobs=1, keep_checkpoints="some"), "keep_checkpoints='some': is not one of"),
    (lambda s: s.promote(steps="2000"), "steps='2000': expected int"),
    (lambda s: s.measure(rounds=0), "rounds=0: must be at least 1"),
    (lambda s: s.export(trial="0"), "trial='0': expected int"),
    (lambda s: Search.open(None, s.storage), "name=None: expected str"),
    (lambda s: Search.open("tiny", Path(s.storage)), ": expected str"),
    (lambda s: Search.open("nope", s.storage), "unknown study 'nope' (this storage has: tiny)"),
    (lambda s: Search.create("x", s.storage, settings="defaults"), "settings='defaults': expected StudySettings"),
    (lambda s: Search.create("x", s.storage, objectives="val_loss"), "objectives='val_loss': give a sequence of names"),
    (lambda s: Search.create("x", s.storage, objectives={"val_loss"}), "objectives={'val_loss'}: expected a list or"),
    (lambda s: Search.create("x", s.storage, step=5), "unknown setting step"),
    # a wrong type named by its argument, never AttributeError or TypeError from far inside
    (lambda s: Search.create("x", s.storage, data=123), "data=123: expected str, not int"),
    (lambda s: Search.create("x", s.storage, data=Path("c.txt")), "data='c.txt': expected str, not PosixPath"),
    (lambda s: Search.create("x", s.storage, tokenizer=5), "tokenizer=5: expected str"),
    (lambda s: Search.create("x", s.storage, text_column=5), "text_column=5: expected str"),
    (lambda s: Search.create("x", s.storage, block_size=True), "block_size=True: expected int, not bool"),
    (lambda s: Search.create("x", s.storage, block_size=10**9), "block_size=1000000000: must be a whole number from 1"),
    (lambda s: Search.create("x", s.storage, recipe=5), "recipe=5: expected TrainingRecipe"),
    (lambda s: Search.create("x", s.storage, space="space.yaml"), "space.yaml: cannot read the search space"),
    (lambda s: Search.create("x", s.storage, space=5), "space=5: expected SearchSpace"),
    (lambda s: Search.create("x", s.storage, space=replace(load_space(), n_layer=(1, 4))), "space.n_layer: expected"),
    (lambda s: Search.create("x", s.storage, space=replace(load_space(), n_layer=IntRange(1, 10_000))),
     "space.n_layer: 10000 is above 64"),
    (lambda s: Search.create("x", s.storage, constraints=[1]), "constraints=[1]: expected Mapping"),
    (lambda s: Search.create("x", s.storage, constraints={"max_params": True}), "max_params=True: must be a positive"),
    (lambda s: Search.create("x", s.storage, latency="decode"), "latency='decode': expected LatencyProtocol"),
    (lambda s: Search.create("x", s.storage, pruning=0.05), "pruning=0.05: expected Pruning"),
    (lambda s: Search.create("x", s.storage, pruning={"margin": "wide"}), "margin='wide': expected int or float"),
    (lambda s: Search.create("x", s.storage, sampler=5), "sampler=5: expected str"),
    (lambda s: Search.create("x", s.storage, seed="1"), "seed='1': expected int or None"),
    (lambda s: Search.create("x", s.storage, seed=1.5), "seed=1.5: expected int or None"),
    (lambda s: Search.create("x", s.storage, preset_shape=4), "preset_shape=4: expected Mapping"),
    (lambda s: Search.create("x", s.storage, preset_shape={"layers": 4}), "unknown key 'layers'"),
    (lambda s: Search.create("x", s.storage, preset_shape={"n_layer": "4"}), "n_layer: '4' must be a whole number"),
    (lambda s: Search.create("x", s.storage, presets="no"), "presets='no': expected bool"),
    (lambda s: Search.create("x", s.storage, artifacts=Path("w")), "artifacts='w': expected str or None, not PosixPath"),
    (lambda s: s.run(1, jobs=2, devices="cpu"), "devices='cpu': expected list or tuple"),
    (lambda s: s.run(1, devices=[0]), "devices=0: expected str, not int"),
    (lambda s: s.run(1, jobs=1, max_complete=-1), "max_complete=-1: must be at least 1"),
    (lambda s: s.run(1, jobs=1, reporter=print), "reporter=<built-in function print>: expected Reporter"),
    (lambda s: s.run(1, jobs=2, jobs_view=print), "jobs_view=<built-in function print>: expected JobsView"),
    (lambda s: s.run(1, jobs=1, gap_trials=-1), "gap_trials=-1: must be at least 0"),
    (lambda s: s.run(1, jobs=1, queued_only="yes"), "queued_only='yes': expected bool"),
    (lambda s: s.run(1, jobs=1, progress="yes"), "progress='yes': expected bool or None"),
    (lambda s: s.promote(24, device=0), "device=0: expected str"),
    (lambda s: s.promote(24, keep_checkpoints="best"), "keep_checkpoints='best': is not one of"),
    (lambda s: s.promote(24, device="gpu"), "device: 'gpu' is not a torch device"),
    (lambda s: s.export(untrained="yes"), "untrained='yes': expected bool"),
    (lambda s: Search.open("tiny", s.storage, artifacts=Path("w")), "artifacts='w': expected str or None, not PosixPath"),
    (lambda s: list_studies(Path(s.storage)), ": expected str, not PosixPath"),
    (lambda s: delete_study(0, s.storage), "name=0: expected str"),
])
def test_api_misuse_raises_the_projects_own_error(search: Search, call, message: str) -> None:
    trials, names = len(search.study.trials), optuna.get_all_study_names(search.study._storage)
    with pytest.raises((StudyError, RecipeError)) as raised:  # a device is the recipe's to refuse
        call(search)
    assert message in str(raised.value) and "\n" not in str(raised.value)
    assert len(search.study.trials) == trials and optuna.get_all_study_names(search.study._storage) == names


def test_a_storage_file_deleted_under_an_open_search_is_a_study_error(search: Search) -> None:
    os.remove(search.storage)
    for call in (search.front, lambda: search.run(trials=1, jobs=1, device="cpu")):
        with pytest.raises(StudyError, match="the file was deleted while study 'tiny' was open"):
            call()
    assert not Path(search.storage).exists()  # not re-created empty
