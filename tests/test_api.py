"""The Python API as a notebook meets it: it drives a whole study, agrees with the command line,
keeps quiet (Optuna's info lines are not printed), and says how training goes where someone watches."""

from __future__ import annotations

import gc
import inspect
import io
import json
import logging
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from search_space import load_config
from studies import OBJECTIVES, Search, StudyError, StudySettings
from studies.settings import write_settings
from studies.workers import watching
from studies.workers.watching import person_watching
from study_helpers import PRESETS_TRAINED, STEPS, cli, isolated_python_api, make_settings, make_tiny  # noqa: F401 - autouse fixture
from trainer import DataError

FIXTURES = Path(__file__).parent / "fixtures"


def front_of(points) -> list[tuple[str, list[float]]]:
    return [(p.summary, [p.measures[name] for name in ("val_loss", "flops_per_token")]) for p in points]


@pytest.mark.slow
def test_a_notebook_drives_a_whole_study_and_sees_the_cli_front(tmp_path: Path) -> None:
    tiny = make_tiny(tmp_path / "files")
    settings = make_settings(data=str(tiny.corpus), sampler="random", seed=3)
    search = Search.create("nb", storage=str(tmp_path / "api.journal"), settings=settings)
    assert search.study.metric_names == ["val_loss", "flops_per_token"]  # the dashboard shows names
    summary = search.run(trials=PRESETS_TRAINED + 2, jobs=1, device="cpu")  # the presets and two sampled
    assert summary.trials_run == PRESETS_TRAINED + 2
    assert gc.get_freeze_count() == 0  # a worker freezes what outlives each trial, not the notebook's objects after
    front = search.front()
    assert front and all(p.steps == STEPS and set(p.measures) >= {"val_loss", "flops_per_token"} for p in front)

    frame = search.dataframe()
    assert len(frame) == len(search.study.trials) and {"state", "summary", "val_loss", "params"} <= set(frame.columns)
    assert (frame["state"] == "complete").sum() == search.count_complete()

    # The CLI, on the same seed and settings, finds the same front.
    assert cli(*tiny.argv("search", "--trials", str(PRESETS_TRAINED + 2), "--sampler", "random", "--sampler-seed", "3",
                          "--objectives", "val_loss", "flops_per_token")).code == 0
    cli_front = json.loads(cli("pareto", *tiny.study_flags(), "--json").out)
    assert [(p["summary"], [p["val_loss"], p["flops_per_token"]]) for p in cli_front] == front_of(front)

    promotion = search.promote(steps=2 * STEPS, top=1, gap_trials=0, device="cpu")
    long = promotion.search
    assert long.name == f"nb@{2 * STEPS}" and promotion.added == 1 and long.count_complete() >= 4
    assert Search.open("nb", str(tmp_path / "api.journal")).name == long.name  # the longest budget by default

    done = long.export(pick="knee", path=tmp_path / "best.yaml")
    config = load_config(tmp_path / "best.yaml")
    assert config.provenance["study"] == long.name and config.provenance["trial"] == done.trial.number
    assert config.provenance["recipe"]["steps"] == 2 * STEPS  # what `train` needs to reproduce it


def test_settings_are_typed_and_their_defaults_are_the_cli_defaults() -> None:
    from studies.cli.main import build_parser

    defaults = StudySettings()
    assert defaults.recipe.steps == 300 and defaults.space.encoding == "per_layer"
    args = build_parser("search").parse_args(["search"])
    run_defaults = inspect.signature(Search.run).parameters
    assert args.trials == run_defaults["trials"].default == 24 and args.study == "decoder-nas"
    round_trip = StudySettings.from_dict(json.loads(json.dumps(defaults.to_dict())))
    assert round_trip == defaults
    with pytest.raises(StudyError, match="unknown objective"):
        StudySettings(objectives=("val_loss", "speed"))
    with pytest.raises(StudyError, match="max_flops=nan"):
        StudySettings(constraints={"max_flops": float("nan")})


def test_a_study_written_by_0_1_0_opens_unchanged(tmp_path: Path) -> None:
    storage = tmp_path / "old.journal"
    shutil.copyfile(FIXTURES / "study-0.1.0.journal", storage)
    for steps, expected in ((None, "study-0.1.0-pareto.json"), ("12", "study-0.1.0-pareto-12.json")):
        flags = ["--steps", steps] if steps else []
        result = cli("pareto", "--study", "tiny", "--storage", str(storage), "--json", *flags)
        assert result.code == 0, result.err
        assert json.loads(result.out) == json.loads((FIXTURES / expected).read_text())
    old = Search.load("tiny", str(storage))
    assert (old.settings.latency.estimator, old.settings.latency.clock) == ("median", "wall")  # timed as before
    assert old.settings.space.encoding == "per_layer" and old.settings.objectives == ("val_loss", "flops_per_token", "params")
    assert cli("export", "--study", "tiny", "--storage", str(storage), "--pick", "knee",
               "-o", str(tmp_path / "old.yaml")).code == 0


def test_a_worker_names_the_metrics_of_a_study_made_without_them(tmp_path: Path) -> None:
    tiny = make_tiny(tmp_path)
    settings = make_settings(data=str(tiny.corpus))
    first = Search.create("named", str(tiny.storage), settings=settings, presets=False)
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tiny.storage)))
    unnamed = optuna.create_study(study_name="unnamed", storage=storage, directions=settings.directions)
    write_settings(unnamed, first.settings)
    assert unnamed.metric_names is None
    assert Search.create("unnamed", str(tiny.storage), presets=False).study.metric_names == list(settings.objectives)


def test_every_objective_is_registered_once_with_a_direction_and_kind() -> None:
    assert list(OBJECTIVES)[:2] == ["val_loss", "val_accuracy"]
    assert {o.kind for o in OBJECTIVES.values()} == {"quality", "cost"}
    assert OBJECTIVES["val_accuracy"].minimised(0.5) == -0.5 and OBJECTIVES["params"].format(1234567) == "1.23M"


def test_help_and_version_answer_without_importing_torch() -> None:
    code = ("import sys, contextlib, io\nfrom studies.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n    main(['--help']); main(['--version'])\n"
            "print(sorted(m for m in ('torch', 'datasets', 'plotly') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    version = subprocess.run([sys.executable, "-m", "studies", "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.startswith("decoder-nas ")


def test_an_exported_config_trains_back_to_its_trials_result(tmp_path: Path) -> None:
    tiny = make_tiny(tmp_path)
    assert cli(*tiny.argv("search", "--trials", "2", "--no-presets", "--rungs")).code == 0
    exported = cli("export", *tiny.study_flags(), "--pick", "knee", "-o", str(tmp_path / "best.yaml"))
    assert exported.code == 0 and "decoder-nas train" in exported.out, exported.err
    recorded = load_config(tmp_path / "best.yaml").provenance["metrics"]["val_loss"]
    trained = cli("train", str(tmp_path / "best.yaml"), "--device", "cpu", "--json")
    assert trained.code == 0, trained.err
    assert abs(json.loads(trained.out.strip().splitlines()[-1])["val_loss"] - recorded) < 1e-4


def test_joining_with_other_settings_is_refused_without_training(tmp_path: Path) -> None:
    """Settings logic at the API level: no trial runs, so it takes milliseconds, not a search."""
    tiny = make_tiny(tmp_path)
    storage = str(tiny.storage)
    created = Search.create("s", storage, make_settings(data=str(tiny.corpus)), presets=False)
    assert Search.create("s", storage).settings == created.settings  # joining with no changes: the study's own
    for change, key in ((dict(recipe=replace(created.settings.recipe, steps=13)), "recipe.steps"),
                        (dict(objectives=("val_loss", "params")), "objectives"),
                        (dict(constraints={"max_params": 1e6}), "constraints.max_params")):
        with pytest.raises(StudyError, match=key.replace(".", r"\.")):
            Search.create("s", storage, **change)
    assert created.study.get_trials() == []


def test_a_change_given_as_a_dict_changes_only_the_keys_it_names(tmp_path: Path) -> None:
    tiny = make_tiny(tmp_path)
    storage = str(tiny.storage)
    created = Search.create("s", storage, make_settings(data=str(tiny.corpus)), presets=False)
    recipe = created.settings.recipe
    joined = Search.create("s", storage, recipe={"steps": recipe.steps}, latency={"mode": "forward"})
    assert joined.settings == created.settings  # the study's own with nothing changed: joined, not refused
    with pytest.raises(StudyError, match=r"recipe\.steps: study has .*, this run asks 13"):
        Search.create("s", storage, recipe={"steps": 13})
    other = Search.create("t", storage, make_settings(data=str(tiny.corpus)), presets=False, recipe={"steps": 13},
                          preset_shape={"n_layer": 2 * created.settings.preset_shape["n_layer"]})
    assert other.settings.recipe == replace(recipe, steps=13)
    assert other.settings.preset_shape == {**created.settings.preset_shape,
                                           "n_layer": 2 * created.settings.preset_shape["n_layer"]}
    with pytest.raises(StudyError, match="recipe=.*'no_such_field'"):
        Search.create("u", storage, make_settings(data=str(tiny.corpus)), recipe={"no_such_field": 1})
    with pytest.raises(StudyError, match="latency=.*KV cache"):
        Search.create("u", storage, make_settings(data=str(tiny.corpus)), latency={"mode": "decode",
                                                                               "backend": "onnxruntime"})


def test_a_corpus_edited_since_the_study_was_made_is_refused(tmp_path: Path) -> None:
    tiny = make_tiny(tmp_path)
    Search.create("s", str(tiny.storage), make_settings(data=str(tiny.corpus)), presets=False)
    tiny.corpus.write_text(tiny.corpus.read_text() + "one more line\n")
    with pytest.raises(DataError, match="changed since study 's' was created"):
        Search.create("s", str(tiny.storage))


def test_tpe_models_the_parameters_jointly_even_beside_a_preset_without_them() -> None:
    """A preset the space cannot build completes with no parameters; Optuna's plain intersection
    search space then empties and multivariate TPE silently samples each parameter on its own."""
    from studies.workers.search import make_sampler

    space = StudySettings().space
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=make_sampler("tpe", 0))
    study.enqueue_trial({})
    study.optimize(lambda t: (1.0, 1.0) if t.number == 0 else (2.0, float(space.sample(t, 65, 64).d_model)),
                   n_trials=3)
    joint = study.sampler.infer_relative_search_space(study, study.ask())
    assert len(joint) == len(space.choices())


def test_run_twice_and_two_threads_on_one_journal_add_up(tmp_path: Path) -> None:
    # Documented: run() may be called again (it trains more), and threads share a journal safely.
    import threading

    tiny = make_tiny(tmp_path)
    search = Search.create("t", str(tmp_path / "t.journal"), settings=make_settings(data=str(tiny.corpus)),
                           presets=False)
    assert search.run(trials=1, jobs=1, device="cpu").trials_run == 1
    threads = [threading.Thread(target=search.run, kwargs={"trials": 1, "jobs": 1, "device": "cpu"}) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    states = [t.state for t in search.study.get_trials(deepcopy=False)]
    assert len(states) == 3 and set(states) <= {TrialState.COMPLETE, TrialState.PRUNED}  # a rung may stop one


# --- quiet in a notebook ------------------------------------------------------------------------------


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def optuna_records():
    """What Optuna logs at INFO, its default level (a notebook's), and restored afterwards."""
    handler = Records()
    logger = logging.getLogger("optuna")
    logger.addHandler(handler)
    optuna.logging.set_verbosity(optuna.logging.INFO)
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)
        optuna.logging.set_verbosity(optuna.logging.ERROR)


def test_the_api_does_not_print_optunas_info_lines(tmp_path: Path, optuna_records) -> None:
    tiny = make_tiny(tmp_path)
    search = Search.create("quiet", storage=str(tmp_path / "q.journal"),
                           settings=make_settings(data=str(tiny.corpus)), presets=False)
    search.run(trials=2, jobs=1, device="cpu")
    search.promote(steps=2 * STEPS, gap_trials=0, device="cpu")
    assert [r.getMessage()[:80] for r in optuna_records if r.levelno <= logging.INFO] == []
    assert optuna.logging.get_verbosity() == optuna.logging.INFO  # the notebook's level is left as it was
    optuna.create_study()  # and Optuna itself logs as before outside the API
    assert any("A new study created" in r.getMessage() for r in optuna_records)


def test_a_chosen_level_is_respected(tmp_path: Path, optuna_records) -> None:
    optuna.logging.set_verbosity(optuna.logging.DEBUG)  # as --debug does
    tiny = make_tiny(tmp_path)
    Search.create("loud", storage=str(tmp_path / "l.journal"), settings=make_settings(data=str(tiny.corpus)),
                  presets=False)
    assert any("A new study created" in r.getMessage() for r in optuna_records)


# --- progress where a person watches -------------------------------------------------------------------


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class NotebookStream(io.StringIO):
    """What a Jupyter kernel puts in sys.stderr: ipykernel's OutStream, a stream no terminal is behind."""


NotebookStream.__module__ = "ipykernel.iostream"


def test_a_person_watches_a_terminal_or_a_notebook_and_not_a_file() -> None:
    assert person_watching(Terminal()) and person_watching(NotebookStream())
    assert not person_watching(io.StringIO()) and not person_watching(object())  # a log, a pipe, a test


@pytest.fixture
def quick(tmp_path: Path) -> Search:
    tiny = make_tiny(tmp_path)
    return Search.create("watched", str(tmp_path / "w.journal"), settings=make_settings(data=str(tiny.corpus)),
                         presets=False)


@pytest.mark.parametrize("stream", [Terminal, NotebookStream])
def test_run_and_promote_say_what_they_train_where_a_person_watches(quick: Search, stream, monkeypatch) -> None:
    """The README's API snippet ran 50 minutes in promote(2000) and printed nothing."""
    watched = stream()
    monkeypatch.setattr(sys, "stderr", watched)
    monkeypatch.setattr(watching, "STEP_LINE_SECONDS", 0.0)  # every progress report makes a line
    quick.run(trials=2, jobs=1, device="cpu")
    lines = watched.getvalue().splitlines()
    finished = [line for line in lines if re.match(r"\[\d/2 trained\] trial \d ", line)]
    assert len(finished) == 2 and finished[-1].startswith("[2/2 trained]"), lines
    assert any(re.match(rf"trial 0 started: d\d+ .*, {STEPS} steps", line) for line in lines), lines
    assert any(re.match(rf"  step \d+/{STEPS}, loss \d\.\d+, [\d,]+ tokens/s", line) for line in lines), lines
    promoted = quick.promote(steps=2 * STEPS, gap_trials=0, device="cpu")
    said = watched.getvalue().splitlines()[len(lines):]
    finished = [line for line in said if re.match(r"\[\d/\d trained\] trial ", line)]  # reused ones too
    assert len(finished) == len(promoted.search.study.trials) and finished[-1].startswith(
        f"[{promoted.summary.trials_run}/")
    assert f"{2 * STEPS} steps" in said[0]


def test_the_api_is_silent_where_nobody_watches_unless_asked(quick: Search, capsys, monkeypatch) -> None:
    quick.run(trials=1, jobs=1, device="cpu")  # stderr is pytest's capture here: a file, as a script's log is
    assert capsys.readouterr().err == ""
    quick.run(trials=1, jobs=1, device="cpu", progress=True)
    assert re.search(r"^\[1/1 trained\] trial 1 ", capsys.readouterr().err, re.MULTILINE)
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    quick.run(trials=1, jobs=1, device="cpu", progress=False)  # chosen: silent at a terminal too
    assert terminal.getvalue() == ""


@pytest.mark.slow
def test_jobs_say_their_trials_where_a_person_watches(quick: Search, monkeypatch) -> None:
    watched = Terminal()
    monkeypatch.setattr(sys, "stderr", watched)
    quick.run(trials=2, jobs=2, device="cpu")
    lines = watched.getvalue().splitlines()
    assert lines[0] == "2 jobs training 2 trials between them", lines
    assert sum(bool(re.match(r"\[job [12]\] trial \d ", line)) for line in lines) >= 2, lines
    assert lines[-1].startswith("2 trials trained by 2 jobs ("), lines
