"""The Python API: one `Search` per study. Every `decoder-nas` command is a thin layer over it.

    from studies import Search
    search = Search.create("my-study", storage="runs.journal", data="builtin:pydoc")
    search.run(trials=12)                        # the engine of `decoder-nas search`
    search.front()                               # FrontPoint records: number, measures, config, steps
    search.dataframe()                           # every trial with its measures (pandas)
    long = search.promote(steps=2000).search     # the sibling study NAME@2000, trained
    long.export(pick="knee", path="best.yaml")

The README's "Python API" block runs as a test (tests/test_readme.py).
"""

from __future__ import annotations

import functools
import inspect
import os
import signal
import time
from dataclasses import dataclass, fields, is_dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal, Mapping, Sequence, get_args

import optuna
from optuna.trial import FrozenTrial, TrialState

from search_space import DecoderConfig, config_from_dict

from .errors import ArgumentError, StudyError, Terminated, signal_exit_code, user_errors
from .expect import expect
from .export.export_files import check_config_target, checkpoint_beside, config_outputs, stage_export
from .export.outputs import Staging, check_places
from .fronts.front import (
    JOINT_LATENCY_KEY,
    complete_trials,
    count_complete,
    front_hypervolume,
    front_trials,
    normaliser_for,
    pick,
    study_at_budget,
)
from .measures import OBJECTIVES
from .settings import DEFAULT_GAP_TRIALS, DEFAULT_STUDY, DEFAULT_TRIALS, SETTINGS_KEY, StudySettings, read_settings
from .storage.artifacts import WEIGHTS_KEY, default_artifacts, open_store, remove_weights, study_artifacts
from .storage.backends import (
    DEFAULT_STORAGE,
    check_storage,
    display_storage,
    is_journal,
    load_existing,
    local_file,
    open_storage,
    storage_exists,
)
from .storage.journal_index import index_path
from .storage.reading import StudyView, open_reader
from .workers.trial_record import outcome
from .workers.watching import LineJobsView, LineReporter, person_watching

if TYPE_CHECKING:  # training needs torch; reading a study does not, so these load where a run starts
    from trainer.data import TokenizedData

    from .export.model_export import Takeaway
    from .workers.jobs import JobsView
    from .workers.search import WorkerSummary
    from .workers.trials import Reporter

KeepCheckpoints = Literal["none", "front", "all"]
KEEP_CHECKPOINTS: tuple[KeepCheckpoints, ...] = get_args(KeepCheckpoints)
MEASURE_PASSES = 3


@dataclass(frozen=True)
class FrontPoint:
    """One trial on a front: what `pareto --json` prints and `export` writes."""

    number: int
    steps: int
    measures: dict[str, float]  # every registered measure the trial recorded
    config: dict[str, Any]  # as stored with the trial (search_space.config_from_dict builds it)
    summary: str
    preset: str | None

    @classmethod
    def of(cls, trial: FrozenTrial, steps: int) -> FrontPoint:
        attrs = trial.user_attrs
        return cls(trial.number, steps, {name: attrs[name] for name in OBJECTIVES if name in attrs},
                   attrs.get("config", {}), attrs.get("summary", ""), attrs.get("preset"))

    def to_dict(self) -> dict[str, Any]:
        return {"number": self.number, "steps": self.steps, **self.measures, "preset": self.preset,
                "summary": self.summary, "config": self.config}


def quiet_optuna(method: Callable[..., Any]) -> Callable[..., Any]:
    """Runs `method` with Optuna's logging at WARNING unless someone chose a level (its default is
    INFO, which logged every trial, a promoted one's line up to 1,579 characters, where the command
    line is quiet); the level is restored afterwards. `--debug` chooses DEBUG, and sees them all."""
    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        previous = optuna.logging.get_verbosity()
        if previous != optuna.logging.INFO:
            return method(*args, **kwargs)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        try:
            return method(*args, **kwargs)
        finally:
            optuna.logging.set_verbosity(previous)
    return call


def _storage_kept(method: Callable[..., Any]) -> Callable[..., Any]:
    """A journal or SQLite file deleted under an open Search, or its study deleted (`studies --delete`
    while `measure` runs), is a StudyError, not Optuna's FileNotFoundError or KeyError."""
    @functools.wraps(method)
    def call(self: Search, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except FileNotFoundError as exc:
            file = local_file(self.storage)
            if file is None or file.exists():
                raise
            raise ArgumentError("storage", display_storage(self.storage),
                                f"the file was deleted while study {self.name!r} was open") from exc
        except KeyError as exc:  # Optuna's word for a study or trial that is not in the storage
            if self.name in optuna.get_all_study_names(open_storage(self.storage, create=False)):
                raise
            raise StudyError(f"study {self.name!r} was deleted while this process used it") from exc
    return call


def _api_methods(cls: type) -> type:
    """Every public method and classmethod of `cls` quiet_optuna; the methods _storage_kept too."""
    for name, member in list(vars(cls).items()):
        if name.startswith("_"):
            continue
        if isinstance(member, classmethod):
            setattr(cls, name, classmethod(quiet_optuna(member.__func__)))
        elif inspect.isfunction(member):
            setattr(cls, name, quiet_optuna(_storage_kept(member)))
    return cls


@_api_methods
class Search:
    """A study and its settings, with the data when it trains. Make one with `create` or `open`."""

    def __init__(self, study: optuna.Study, settings: StudySettings, storage: str,
                 data: TokenizedData | None = None, artifacts: str | None = None):
        self._study, self.settings, self.storage, self._data = study, settings, storage, data
        self._artifacts = artifacts  # the weights' store as this process reaches it, if not the study's own

    @property
    def study(self) -> optuna.Study:
        """The Optuna study; one opened with `open` is read whole only here, on first use."""
        if isinstance(self._study, StudyView):
            self._study = self._study.load()
        return self._study

    @property
    def view(self) -> optuna.Study | StudyView:
        """The study as the views read it: every trial in brief (studies/storage/reading.py), or the Study."""
        return self._study

    @property
    def artifacts(self) -> str | None:
        """Where this study's kept weights are: `--artifacts`, else what the study recorded, else
        `<storage>.artifacts` beside a journal or SQLite file (None for a server without one)."""
        return study_artifacts(self.study, self.storage, self._artifacts, record=False)

    @property
    def name(self) -> str:
        return self._study.study_name

    @classmethod
    def create(cls, name: str = DEFAULT_STUDY, storage: str = DEFAULT_STORAGE, settings: StudySettings | None = None,
               *, presets: bool = True, artifacts: str | None = None, **changes: Any) -> Search:
        """Create study `name`, or join it if it exists (several workers may start at once).

        The settings are `settings` (default: the study's own if it exists, else `StudySettings()`)
        with `changes` applied (any StudySettings field: objectives=..., data=..., recipe=...; a dict
        for a field that holds several, as recipe={"steps": 600}, changes only the keys it names). Joining
        with settings that differ from the study's is refused; everything is validated before a
        study is created (`space` may be a shipped space's name, `"paper"` or `"modern"`, or a YAML file).
        `presets`: enqueue the settings' presets first (a new study's: the paper's four, llama and lfm2).
        `artifacts`: where kept weights go (a folder or s3://BUCKET; see `artifacts`)."""
        from trainer.data import check_fits, prepare_data

        from .workers.search import open_study, preset_params

        _expect_study(name, storage, artifacts)
        expect("settings", settings, StudySettings, optional=True)
        expect("presets", presets, bool)
        unknown = set(changes) - {f.name for f in fields(StudySettings)}
        if unknown:
            raise StudyError(f"unknown setting {', '.join(sorted(unknown))} (StudySettings has "
                             f"{', '.join(f.name for f in fields(StudySettings))})")
        check_study_name(name)
        check_storage(storage)
        # A storage that is not there yet is created only once everything else is accepted: a refused
        # call leaves no empty journal or database behind.
        backend = open_storage(storage) if storage_exists(storage) else None
        stored = stored_settings(name, backend) if backend is not None else None
        settings = _changed(settings or stored or StudySettings(), changes)
        settings.check_new()
        data = prepare_data(settings.data, settings.tokenizer, text_column=settings.text_column)
        check_fits(data, settings.block_size)
        if settings.latency.backend == "onnxruntime":
            from objectives.onnx import require_onnx

            require_onnx()
        if stored is None:
            preset_params(settings)  # a preset the shape cannot build is refused before the storage is made
        backend = backend or open_storage(storage)
        # The corpus as read now: a study made from other text is refused (content_hash differs),
        # and a worker that raced another to create the study compares like with like.
        settings = replace(settings, content_hash=data.content_hash)
        study, settings = open_study(name, backend, settings, enqueue_presets=presets)
        return cls(study, settings, storage, data, artifacts)

    @classmethod
    def open(cls, name: str = DEFAULT_STUDY, storage: str = DEFAULT_STORAGE, steps: int | None = None,
             artifacts: str | None = None) -> Search:
        """An existing study's results at `steps` (default: the longest budget with results)."""
        _expect_study(name, storage, artifacts)
        expect("steps", steps, int, optional=True, minimum=1)
        study, settings = study_at_budget(name, open_reader(storage), steps)
        return cls(study, settings, storage, artifacts=artifacts)

    @classmethod
    def load(cls, name: str = DEFAULT_STUDY, storage: str = DEFAULT_STORAGE, artifacts: str | None = None) -> Search:
        """Study `name` itself, whatever budgets its promoted siblings hold."""
        _expect_study(name, storage, artifacts)
        study = load_existing(name, open_storage(storage, create=False))
        return cls(study, read_settings(study), storage, artifacts=artifacts)

    @property
    def data(self) -> TokenizedData:
        if self._data is None:
            from trainer.data import prepare_data

            settings = self.settings
            self._data = prepare_data(settings.data, settings.tokenizer, text_column=settings.text_column)
        return self._data

    def run(self, trials: int = DEFAULT_TRIALS, *, jobs: int | None = None, devices: Sequence[str] | None = None,
            max_complete: int | None = None, device: str = "auto", keep_checkpoints: KeepCheckpoints = "none",
            reporter: Reporter | None = None, queued_only: bool = False, gap_trials: int = 0,
            jobs_view: JobsView | None = None, progress: bool | None = None) -> WorkerSummary:
        """Train up to `trials` trials in all, shared between `jobs` processes as Optuna's
        optimize(n_trials, n_jobs) counts them (repeats and infeasible samples are free); stop early
        once the study holds `max_complete` complete trials (trained to the end, as `count_complete`). `jobs` (default: see `default_jobs`) > 1
        starts that many worker processes on this machine, on `devices` in turn (default: `device`),
        shown by `jobs_view` (studies.cli.progress.ConsoleJobsView draws the command line's); 1 trains
        here (on `devices[0]` if given), where `reporter` sees each trial (studies.cli.live.LiveReporter
        draws the command line's live view). Without either, `progress` says whether lines are printed
        on stderr as trials go (studies/workers/watching.py); None: where a person watches (a terminal
        or a notebook)."""
        from .workers.jobs import JobsView, check_jobs
        from .workers.trials import Reporter

        expect("trials", trials, int, minimum=0)
        expect("jobs", jobs, int, optional=True)
        expect("devices", devices, (list, tuple), optional=True)
        for each in devices or ():
            expect("devices", each, str)
        expect("max_complete", max_complete, int, optional=True, minimum=1)
        expect("device", device, str)
        expect("keep_checkpoints", keep_checkpoints, str, choices=KEEP_CHECKPOINTS)
        expect("reporter", reporter, Reporter, optional=True)
        expect("queued_only", queued_only, bool)
        expect("gap_trials", gap_trials, int, minimum=0)
        expect("jobs_view", jobs_view, JobsView, optional=True)
        expect("progress", progress, bool, optional=True)
        jobs = default_jobs(self.storage, device, devices) if jobs is None else jobs
        check_jobs(jobs, devices)
        shown = person_watching() if progress is None else progress
        if jobs != 1:
            return self._run_jobs(trials, jobs, devices or [device], max_complete, keep_checkpoints,
                                  jobs_view or (LineJobsView() if shown else None))
        from trainer.loop import resolve_device
        from trainer.memory import check_recipe_memory

        from .workers.search import run_worker
        from .workers.trials import SilentReporter

        run_on = resolve_device(devices[0] if devices else device)
        # A batch that cannot fit fails every trial alike: refused once, before the first (each --jobs job too).
        check_recipe_memory(self.settings.recipe, self.settings.block_size, self.data.vocab_size, run_on)
        store = self._weights_store() if keep_checkpoints != "none" else None
        reporter = reporter or (LineReporter(self.settings.objectives, trials) if shown else SilentReporter())
        summary = run_worker(self.study, self.settings, self.data, run_on, trials, max_complete, self.storage, store,
                             reporter, queued_only, gap_trials)
        if store is not None and keep_checkpoints == "front":
            front = {t.number for t in self.front_trials()}
            remove_weights([t for t in self.study.get_trials(deepcopy=False) if t.number not in front], store)
        return summary

    def _run_jobs(self, trials: int, jobs: int, devices: Sequence[str], max_complete: int | None,
                  keep_checkpoints: KeepCheckpoints, view: JobsView | None) -> WorkerSummary:
        from .workers.jobs import JobSpec, run_jobs
        from .workers.leases import fail_trials_of
        from .workers.search import WorkerSummary

        if local_file(self.storage) is not None and not is_journal(self.storage):
            raise ArgumentError("jobs", jobs, "SQLite must not be shared by several processes; use a journal file "
                             "or PostgreSQL storage")
        if keep_checkpoints != "none":
            self._weights_store()  # refused here, not once per job
        spec = JobSpec(self.name, self.storage, self.settings.to_dict(), keep_checkpoints, self._artifacts,
                       max_complete)
        done = run_jobs(spec, jobs, trials, devices, view)
        if done.killed:  # nothing else would fail their trials before a lease or heartbeat runs out
            fail_trials_of(self.study, done.killed)
        if done.stopped:
            raise KeyboardInterrupt if done.exit_code == signal_exit_code(signal.SIGINT) else Terminated
        if done.exit_code:
            raise StudyError(done.failure)
        return WorkerSummary(done.trained, self.count_complete(), done.exhausted)

    def _weights_store(self) -> Any:
        spec = study_artifacts(self.study, self.storage, self._artifacts)  # the study remembers where they go
        if spec is None:
            raise StudyError("kept weights need a folder, and a database storage has none beside it; give artifacts "
                             "(a folder every worker reaches, or s3://BUCKET)")
        # A folder only the storage names is not made here: the storage may say anything, and a shared
        # folder that is not mounted on this machine would silently split the study's weights.
        if self._artifacts is None and spec != default_artifacts(self.storage) and "://" not in spec \
                and not Path(spec).is_dir():
            raise ArgumentError("artifacts", spec, "the study's artifact store is not on this machine; give "
                                "artifacts where this machine reaches it")
        return open_store(spec)

    def front(self) -> list[FrontPoint]:
        """The front: complete, non-dominated trials, one per architecture, in objective order."""
        return [FrontPoint.of(t, self.settings.steps) for t in self.front_trials()]

    def front_trials(self) -> list[FrozenTrial]:
        return front_trials(self._study, self.settings)

    def hypervolume(self) -> float | None:
        """Of the front, each objective normalised over the front, reference 1.1 (None: no front yet)."""
        front = self.front_trials()
        if not front or len(self.settings.objectives) < 2:
            return None
        return front_hypervolume(front, self.settings.objectives,
                                 normaliser_for(self.settings.objectives, [t.values for t in front]))

    def measure(self, rounds: int = 5, device: str = "auto") -> dict[int, float]:
        """Re-time the front's members and the presets interleaved in one session, round-robin over
        `rounds`, and store that as the latency the front and `export` use; each trial keeps its own
        (taken under whatever load ran then) as `latency_ms_trial`. Returns trial number -> ms."""
        from objectives.latency import measure_together
        from trainer.loop import resolve_device
        from trainer.run import initialised_model

        expect("rounds", rounds, int, minimum=1)
        expect("device", device, str)
        target = resolve_device(device)
        timed: dict[str, FrozenTrial] = {}
        for _ in range(MEASURE_PASSES):  # new latencies can change the front: its newcomers join the next pass
            members = self.front_trials() + [t for t in complete_trials(self.study, self.settings.objectives)
                                             if "preset" in t.user_attrs]
            if {t.user_attrs["arch_hash"] for t in members} <= timed.keys():
                break
            timed.update((t.user_attrs["arch_hash"], t) for t in members)
            models = {arch: initialised_model(config_from_dict(t.user_attrs["config"]), self.settings.recipe.seed)
                      .to(target) for arch, t in timed.items()}
            latencies = measure_together(models, self.settings.latency, rounds)
            self.study.set_user_attr(JOINT_LATENCY_KEY, {
                "latency_ms": {arch: latency.ms for arch, latency in latencies.items()},
                "rounds": rounds, "device": str(target), "measured_at": time.time(),
                "load_average": next(iter(latencies.values())).load_average})
        return {t.number: t.user_attrs["latency_ms"] for t in complete_trials(self.study, self.settings.objectives)
                if t.user_attrs["arch_hash"] in timed}

    def count_complete(self) -> int:
        return count_complete(self._study)

    def dataframe(self) -> Any:
        """A pandas DataFrame: one row per trial, its outcome (trial_record.OUTCOMES: complete, reused, pruned,
        ...), architecture and every registered measure."""
        import pandas as pd  # an optional dependency, needed only here

        rows = []
        for trial in self.study.get_trials(deepcopy=False):
            attrs = trial.user_attrs
            rows.append({"number": trial.number, "state": outcome(trial), "preset": attrs.get("preset"),
                         "summary": attrs.get("summary"), "arch_hash": attrs.get("arch_hash"),
                         **{name: attrs.get(name) for name in OBJECTIVES},
                         "reused_from": attrs.get("reused_from"), "steps": self.settings.steps})
        return pd.DataFrame(rows).set_index("number") if rows else pd.DataFrame()

    def promote(self, steps: int, *, top: int | None = None, gap_trials: int = DEFAULT_GAP_TRIALS,
                device: str = "auto", keep_checkpoints: KeepCheckpoints = "none",
                reporter: Reporter | None = None, progress: bool | None = None) -> Promotion:
        """Retrain the front from scratch for `steps` in sibling study NAME@STEPS (the presets too),
        then run up to `gap_trials` gap trials there (studies/fronts/gaps.py). Returns what was done.
        `reporter` and `progress` as for `run`."""
        from trainer.loop import resolve_device

        from .workers.search import promote
        from .workers.trials import Reporter

        expect("steps", steps, int, minimum=1)
        expect("top", top, int, optional=True)
        expect("gap_trials", gap_trials, int, minimum=0)
        expect("device", device, str)
        expect("keep_checkpoints", keep_checkpoints, str, choices=KEEP_CHECKPOINTS)
        expect("reporter", reporter, Reporter, optional=True)
        expect("progress", progress, bool, optional=True)
        resolve_device(device)  # refused before the sibling study is made
        if keep_checkpoints != "none":
            self._weights_store()
        sibling, settings, added = promote(self.name, self.storage, steps, top)
        long = Search(sibling, settings, self.storage, self._data, self._artifacts)
        waiting = len(sibling.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
        summary = long.run(waiting + gap_trials, jobs=1, device=device, keep_checkpoints=keep_checkpoints,
                           reporter=reporter, queued_only=True, gap_trials=gap_trials, progress=progress)
        return Promotion(long, added, waiting, summary, gap_trials)

    def trial(self, number: int) -> FrozenTrial:
        """A complete trial of this study by number."""
        expect("trial", number, int)
        matches = [t for t in self.study.get_trials(deepcopy=False) if t.number == number]
        if not matches:
            raise ArgumentError("trial", number, f"study {self.name!r} has no such trial")
        if matches[0].state != TrialState.COMPLETE:
            raise ArgumentError("trial", number, f"the trial is {matches[0].state.name.lower()}, not complete")
        return matches[0]

    def export(self, pick: str = "knee", *, trial: int | None = None, path: str | Path | None = None,
               onnx: str | Path | None = None, hf: str | Path | None = None, untrained: bool = False) -> Export:
        """The chosen front trial's config, with a provenance block (study, trial, budget, data and
        recipe) that `train` uses to reproduce the trial's result; written to `path` if given, with
        the trial's kept weights beside it (`<path stem>-checkpoint/`). `onnx` (a file) and `hf` (a
        new folder): also write the model with those weights (studies/export/model_export.py); a trial whose
        weights were not kept is refused, unless `untrained` (ONNX only, random weights)."""
        expect("path", path, (str, Path), optional=True)
        expect("onnx", onnx, (str, Path), optional=True)
        expect("hf", hf, (str, Path), optional=True)
        expect("untrained", untrained, bool)
        chosen = self.trial(trial) if trial is not None else self.pick(pick)
        metrics = {name: chosen.user_attrs[name] for name in OBJECTIVES if name in chosen.user_attrs}
        provenance = {"study": self.name, "trial": chosen.number, "steps": self.settings.steps,
                      "arch_hash": chosen.user_attrs["arch_hash"], "data": self.settings.data,
                      "content_hash": self.settings.content_hash, "metrics": metrics,
                      "tokenizer": self.settings.tokenizer, "recipe": self.settings.recipe.to_dict()}
        if trial is None:
            provenance["pick"] = pick
        config = config_from_dict(chosen.user_attrs["config"]).replace(provenance=provenance)
        kept = WEIGHTS_KEY in chosen.user_attrs and self.artifacts is not None
        model = onnx is not None or hf is not None
        outputs = config_outputs(Path(path)) if path is not None else []
        if model:  # loads torch: only when a model is exported
            from .export.model_export import check_outputs, export_trial, model_outputs

            outputs += model_outputs(hf, onnx)
        check_places(outputs, self._read_paths())  # everything refused before anything is written
        if path is not None:
            check_config_target(Path(path))
        if model:
            check_outputs(hf, onnx, kept, untrained, f"trial {chosen.number} of study {self.name!r}")
        store = open_store(self.artifacts, create=False) if kept else None
        takeaway = None
        with Staging() as staging:  # the config, the weights beside it, the model: all or none
            weights = stage_export(Path(path), config, chosen, store, staging) if path is not None else None
            if model:
                takeaway = export_trial(chosen, config, store, weights, hf, onnx, self.settings.recipe.seed, staging)
            staging.commit()
        final = checkpoint_beside(Path(path)) if weights is not None and path is not None else None
        return Export(chosen, config, metrics, final, takeaway)

    def _read_paths(self) -> list[Path]:
        """The files an export reads, which none of its outputs may overwrite: the storage (a journal's
        index too) and the store."""
        file = local_file(self.storage)
        paths = [file, index_path(file) if file is not None and is_journal(self.storage) else None]
        if self.artifacts is not None and "://" not in self.artifacts:
            paths.append(Path(self.artifacts))
        return [path for path in paths if path is not None]

    def pick(self, how: str = "knee") -> FrozenTrial:
        """knee (nearest the ideal point, each objective normalised over the front), best-quality,
        or min-COST: one of PICKS."""
        return pick(self.front_trials(), self.settings.objectives, how)


@dataclass(frozen=True)
class Promotion:
    search: Search  # the sibling study at the longer budget
    added: int  # architectures newly queued from the short front
    queued: int  # trials that were waiting when it started (the presets included)
    summary: WorkerSummary
    gap_trials: int  # gap trials asked for


@dataclass(frozen=True)
class Export:
    trial: FrozenTrial
    config: DecoderConfig
    metrics: dict[str, float]
    weights: Path | None  # the copied checkpoint folder, when the trial's weights were kept
    takeaway: Takeaway | None = None  # what --hf and --onnx wrote


def stored_settings(name: str, storage: str | optuna.storages.BaseStorage) -> StudySettings | None:
    """Study `name`'s settings, or None if the storage holds no such study yet."""
    backend = storage if isinstance(storage, optuna.storages.BaseStorage) else open_storage(storage)
    try:
        return read_settings(load_existing(name, backend))
    except StudyError:
        return None  # a new study (or one another worker is creating right now)


@quiet_optuna
def list_studies(storage: str) -> list[dict[str, Any]]:
    """One row per study in the storage: trials, complete trials, budget, objectives, data. Counts
    only: a database counts without sending trials (10,000 of them take ~12 s to load from PostgreSQL)."""
    expect("storage", storage, str)
    rows = []
    for name, user_attrs, states in open_reader(storage).studies():
        row: dict[str, Any] = {"study": name, "trials": sum(states.values()),
                               "complete": states[TrialState.COMPLETE],
                               "steps": None, "objectives": [], "data": "(not a decoder-nas study)"}
        if SETTINGS_KEY in user_attrs:
            settings = StudySettings.from_dict(user_attrs[SETTINGS_KEY])
            row.update(steps=settings.steps, objectives=list(settings.objectives), data=settings.data)
        rows.append(row)
    return rows


@dataclass(frozen=True)
class Deletion:
    """What `delete_study` did."""

    running: int  # trials that were running: their workers stop at their next write
    weights_removed: int  # trials whose kept weights were removed from the artifact store
    weights_left: str | None = None  # why kept weights are still in a store, and where, if they are


@quiet_optuna
def delete_study(name: str, storage: str, artifacts: str | None = None) -> Deletion:
    """Delete study `name`, its trials and their kept weights (in `artifacts`, else the study's store)."""
    _expect_study(name, storage, artifacts)
    backend = open_storage(storage, create=False)
    study = load_existing(name, backend)
    trials = study.get_trials(deepcopy=False)
    running = sum(t.state == TrialState.RUNNING for t in trials)
    kept = [t for t in trials if WEIGHTS_KEY in t.user_attrs]
    spec = study_artifacts(study, storage, artifacts, record=False) if kept else None
    optuna.delete_study(study_name=name, storage=backend)
    if not kept:
        return Deletion(running, 0)
    where = f"the kept weights of {len(kept)} trial{'s' if len(kept) != 1 else ''} are still in {spec}"
    if spec is None or ("://" not in spec and not Path(spec).is_dir()):
        return Deletion(running, 0, f"{where}, which this machine does not reach; remove them there")
    try:
        removed = remove_weights(kept, open_store(spec, create=False))
    except StudyError as exc:  # S3 without boto3
        return Deletion(running, 0, f"{where} ({exc}); remove them there")
    return Deletion(running, removed)


def serve_dashboard(storage: str, host: str = "127.0.0.1", port: int = 8080, artifacts: str | None = None) -> None:
    """optuna-dashboard on the storage (every study in it), with the weights' artifact store (default:
    the one beside the storage) so trials show their files, until interrupted."""
    expect("storage", storage, str)
    expect("host", host, str)
    expect("port", port, int, minimum=0)
    expect("artifacts", artifacts, str, optional=True)
    from optuna_dashboard import run_server

    backend = open_storage(storage, create=False)
    spec = artifacts or default_artifacts(storage)
    store = open_store(spec, create=False) if spec and (artifacts or Path(spec).is_dir()) else None
    run_server(backend, host=host, port=port, artifact_store=store)


def default_jobs(storage: str, device: str = "auto", devices: Sequence[str] | None = None) -> int:
    """Worker processes when none are asked for: one per listed device; on a CPU-only machine with a
    journal storage, 2 (on 2 cores, 1.6x the trials per hour of one process: docs/jobs.md); else 1."""
    if devices:
        return len(devices)
    cpu_only = device == "cpu" or (device == "auto" and not _cuda_available())
    return 2 if cpu_only and is_journal(storage) and (os.cpu_count() or 1) >= 2 else 1


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _changed(base: StudySettings, changes: dict[str, Any]) -> StudySettings:
    """`base` with `changes`; a mapping given for a field of several values (recipe, latency,
    pruning, preset_shape, constraints) changes only the keys it names."""
    merged = {}
    for name, value in changes.items():
        current = getattr(base, name)
        if isinstance(value, Mapping) and is_dataclass(current):
            try:
                value = replace(current, **value)
            except user_errors():  # they name what they refuse
                raise
            except (TypeError, ValueError) as exc:  # an unknown key; decode latency with onnxruntime
                raise ArgumentError(name, dict(value), str(exc)) from None
        elif isinstance(value, Mapping) and isinstance(current, Mapping):
            value = {**current, **value}
        merged[name] = value
    return replace(base, **merged)


def _expect_study(name: str, storage: str, artifacts: str | None = None) -> None:
    expect("name", name, str)
    expect("storage", storage, str)
    expect("artifacts", artifacts, str, optional=True)


def check_study_name(name: str) -> None:
    """NAME@STEPS names a promoted sibling, so `@` is refused in a user's name."""
    if not name or not name.strip():
        raise ArgumentError("name", name, "give a non-empty name")
    if "@" in name:
        raise ArgumentError("name", name, "'@' is reserved for promoted studies (NAME@STEPS); choose another name")
    if len(name) > 200 or any(not ch.isprintable() for ch in name):
        raise ArgumentError("name", f"{name[:40]}…" if len(name) > 40 else name,
                            f"names are at most 200 printable characters ({len(name)} given)")
