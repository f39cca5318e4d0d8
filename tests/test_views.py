"""What a user sees while a search runs: the live view's per-trial bar, the first line of
a piped log, the architecture facts a dashboard plots, and `reproduce` reusing a twin's training.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState, create_trial
from rich.console import Console

from search_space import PAPER_PRESETS, config_from_dict
from studies.cli import main
from studies.cli.live import LiveReporter
from studies.fronts import evidence as evidence_module
from studies.storage.backends import open_storage
from study_helpers import (  # noqa: F401
    RECIPE,
    SHAPE,
    STEPS,
    Tiny,
    cli,
    isolated_python_api,
    make_settings,
    make_tiny,
    quiet_datasets,
)
from trainer.loop import Progress


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Started:
    """What LiveReporter.trial_started reads of an optuna.Trial."""

    def __init__(self, number: int):
        self.number = number


def finished(number: int) -> optuna.trial.FrozenTrial:
    trial = create_trial(state=TrialState.COMPLETE, values=[3.0 - number, 100.0 + number],
                         user_attrs={"summary": f"arch{number}", "val_loss": 3.0 - number,
                                     "flops_per_token": 100.0 + number})
    trial.number = number
    return trial


def test_the_live_views_step_bar_starts_afresh_for_each_trial() -> None:
    clock, out = Clock(), io.StringIO()
    console = Console(file=out, get_time=clock, width=200)
    reporter = LiveReporter(optuna.create_study(directions=["minimize", "minimize"]), make_settings(), 2, console)
    task = lambda: reporter.bar.tasks[reporter.step_task]  # noqa: E731

    reporter.trial_started(Started(0), "arch0", STEPS)
    for step in (4, 8, STEPS):
        clock.now += 1.0
        reporter.progress(Progress(step, STEPS, loss=3.0, tokens=step * 64, seconds=clock.now))
    assert task().completed == STEPS and task().finished_time is not None and task().time_remaining == 0
    reporter.trial_finished(finished(0))
    assert not task().visible

    clock.now = 100.0
    reporter.trial_started(Started(1), "arch1", STEPS)
    assert task().visible and task().description == "#1 arch1"
    assert (task().completed, task().total) == (0, STEPS)
    assert task().finished_time is None and task().time_remaining is None  # not 0:00:00 from the last trial
    assert task().elapsed == 0
    for step, at in ((2, 102.0), (6, 104.0)):
        clock.now = at
        reporter.progress(Progress(step, STEPS, loss=2.5, tokens=step * 64, seconds=at - 100))
    # 4 steps in 2 s, 6 to go: 3 s, from this trial's pace alone
    assert task().completed == 6 and task().elapsed == 4 and task().time_remaining == 3
    reporter.trial_finished(finished(1))

    assert reporter.bar.tasks[reporter.trials_task].completed == 2
    lines = out.getvalue().splitlines()  # off a terminal: one line per trial, nothing else
    assert [line.split()[:4] for line in lines] == [["trial", "0", "complete", "arch0"],
                                                    ["trial", "1", "complete", "arch1"]]


@pytest.fixture(scope="module")
def piped(tmp_path_factory: pytest.TempPathFactory) -> tuple[Tiny, str]:
    """`search` with stdout and stderr piped into one log, as `decoder-nas search 2>&1 | tee log` does."""
    tiny = make_tiny(tmp_path_factory.mktemp("piped"))
    log = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, quiet_datasets():
        patch.setenv("DECODER_NAS_CACHE", str(tiny.root / "cache"))
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            code = main(tiny.argv("search", "--trials", "3", "--no-presets", "--sampler", "random",
                                  "--sampler-seed", "2", "--rungs"))
    assert code == 0, log.getvalue()
    return tiny, log.getvalue()


def test_a_piped_search_says_what_runs_before_the_first_trial(piped: tuple[Tiny, str]) -> None:
    tiny, log = piped
    lines = [line for line in log.splitlines() if line.strip()]
    first = lines[0]
    assert first.startswith("study 'tiny' in ")
    for fragment in (str(tiny.storage), f"data {tiny.corpus.resolve()}", f"{STEPS} steps per trial",
                     "objectives val_loss flops_per_token", "nothing trained yet"):
        assert fragment in first, (fragment, first)
    trial_lines = [i for i, line in enumerate(lines) if line.startswith("trial ")]
    assert len(trial_lines) >= 3 and trial_lines[0] == 1  # the trials follow at once, one line each


def test_each_trial_records_its_architecture_facts(piped: tuple[Tiny, str]) -> None:
    tiny = piped[0]
    study = optuna.load_study(study_name=tiny.study, storage=open_storage(str(tiny.storage)))
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(trials) >= 3
    seen = set()
    for trial in trials:
        attrs = trial.user_attrs
        config = config_from_dict(attrs["config"])
        facts = {"depth": len(config.layers), "d_model": config.d_model, "towers": config.towers,
                 "narrowings": sum(layer.reduction is not None for layer in config.layers),
                 "parallel_layers": sum(layer.layout == "parallel" for layer in config.layers)}
        assert {key: attrs[key] for key in facts} == facts
        assert attrs["depth"] == int(attrs["summary"].split("L[")[0].split()[-1])  # as the summary says
        seen.add(tuple(facts.values()))
    assert len(seen) > 1  # the facts tell the architectures apart


def test_reproduce_reuses_lgpts_result_for_cgpt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tiny = make_tiny(tmp_path)
    trained = []
    real = evidence_module.run_training
    monkeypatch.setattr(evidence_module, "run_training", lambda config, *a, **k: trained.append(config) or
                        real(config, *a, **k))
    result = cli("reproduce", "--data", str(tiny.corpus), *SHAPE, *RECIPE, "--device", "cpu", "--json")
    assert result.code == 0, result.err
    rows = {row["name"]: row for row in json.loads(result.out)}
    assert list(rows) == list(PAPER_PRESETS)  # the paper's models, unless --presets names others
    assert len(trained) == len(PAPER_PRESETS) - 1
    assert rows["cgpt"]["reused_from"] == "lgpt"
    assert all("reused_from" not in rows[name] for name in ("gpt", "pgpt", "lgpt"))
    for key in ("val_loss", "val_accuracy", "params", "flops_per_token", "latency_ms"):
        assert rows["cgpt"][key] == rows["lgpt"][key]
    assert "cgpt: the same model as lgpt, its result reused" in result.err
    chosen = cli("reproduce", "--data", str(tiny.corpus), *SHAPE, *RECIPE, "--device", "cpu", "--json",
                 "--presets", "llama", "gpt")
    assert chosen.code == 0, chosen.err
    rows = {row["name"]: row for row in json.loads(chosen.out)}
    assert list(rows) == ["llama", "gpt"] and rows["llama"]["summary"].startswith("d16 rope rms 2L[S2/1g")
