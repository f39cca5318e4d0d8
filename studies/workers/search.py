"""Create or join a study and run trials in it; promote a front to a longer budget.

`search` and `worker` differ only in their defaults: both create the study if it does not exist
(several workers may start at the same moment) and refuse settings that differ from the study's.
"""

from __future__ import annotations

import gc
import warnings
from dataclasses import dataclass, replace
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from search_space import ConfigError, preset
from trainer.corpora import corpus_changed
from trainer.data import TokenizedData

from ..errors import ArgumentError, StudyError, raise_if_terminated
from ..fronts.front import count_complete, promotion_candidates
from ..fronts.gaps import enqueue_gap_trial, gap_trials_in
from ..settings import StudySettings, read_settings, write_settings
from ..storage.backends import is_journal, load_existing, open_storage, promoted_name
from .devices import claim_device_type
from .leases import LeaseReporter, fail_expired_trials, queued_as, trial_taken
from .repeats import enqueue_untried_neighbour
from .trial_record import trained
from .trials import Reporter, SilentReporter, TrialContext, reusable_elsewhere, run_trial, stopped

MAX_CONSECUTIVE_INFEASIBLE = 200
MAX_CONSECUTIVE_REPEATS = 10  # repeats with nothing untried next to them (studies/workers/repeats.py): it is done


def make_sampler(name: str, seed: int | None) -> optuna.samplers.BaseSampler:
    # TPE models the parameters jointly (they interact: reduction kind with kernel, layout with
    # depth) and starts guiding after 8 random trials (measured: docs/decisions.md). group=True, or
    # one preset the space cannot build (no parameters) empties Optuna's intersection search space
    # and TPE silently samples each parameter alone; with every trial sharing them it is the same.
    samplers = {
        "tpe": lambda: optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, n_startup_trials=8),
        "random": lambda: optuna.samplers.RandomSampler(seed=seed),
        "nsga2": lambda: optuna.samplers.NSGAIISampler(seed=seed),
        "gp": lambda: optuna.samplers.GPSampler(seed=seed),
    }
    if name not in samplers:
        raise ArgumentError("sampler", name, f"unknown sampler (choose from {', '.join(samplers)})")
    with warnings.catch_warnings():  # Optuna marks multivariate and group TPE experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return samplers[name]()


def open_study(name: str, storage: str | optuna.storages.BaseStorage | None, settings: StudySettings | None,
               enqueue_presets: bool = True) -> tuple[optuna.Study, StudySettings]:
    """Join study `name`, creating it with `settings` if it does not exist yet.

    With settings=None the study must exist (pareto, export, promote read it as it is). `storage`
    may be one already open (a journal is replayed once per open).
    """
    backend = storage if isinstance(storage, optuna.storages.BaseStorage) else (
        open_storage(storage, create=settings is not None))
    if settings is None:
        study = load_existing(name, backend)
        return study, read_settings(study)
    sampler = make_sampler(settings.sampler, settings.seed)
    try:  # an existing study is only read here: a refused run must leave it untouched
        study = optuna.load_study(study_name=name, storage=backend, sampler=sampler)
    except KeyError:
        presets = preset_params(settings)  # a preset the shape cannot build is refused before creation
        try:
            study = optuna.create_study(study_name=name, storage=backend, directions=settings.directions,
                                        sampler=sampler)
        except optuna.exceptions.DuplicatedStudyError:  # another worker created it a moment ago
            study = optuna.load_study(study_name=name, storage=backend, sampler=sampler)
        else:
            name_metrics(study, settings)
            write_settings(study, settings)
            for preset_name, params in presets.items() if enqueue_presets else ():
                study.enqueue_trial(params or {}, user_attrs={"preset": preset_name, "in_space": params is not None})
            return study, settings
    stored = check_same_settings(study, settings)
    name_metrics(study, stored)
    requeue_stopped(study)
    return study, stored


def check_same_settings(study: optuna.Study, settings: StudySettings) -> StudySettings:
    """The study's stored settings, if `settings` (what a run asks for) are the same; else refused with
    the keys that differ."""
    stored, name = read_settings(study), study.study_name
    if stored.data == settings.data and stored.content_hash != settings.content_hash:
        raise corpus_changed(settings.data, f"study {name!r} was created", settings.content_hash, stored.content_hash,
                             "restore it or start another study")
    differences = stored.differences(settings)
    if differences:
        raise StudyError(f"study {name!r} was created with other settings: " + "; ".join(differences)
                         + " (use another --study name, or the study's own settings)")
    return stored


def requeue_stopped(study: optuna.Study) -> int:
    """Enqueue again each preset or promoted architecture whose trial a Ctrl-C or SIGTERM stopped and
    that nothing else holds (a sampled trial is simply sampled anew); returns how many."""
    trials = study.get_trials(deepcopy=False)
    held = {_queue_identity(t) for t in trials if not stopped(t)}
    requeued = 0
    for trial in trials:
        identity = _queue_identity(trial)
        if identity is not None and stopped(trial) and identity not in held:
            study.enqueue_trial(trial.params, user_attrs=queued_as(trial))
            held.add(identity)
            requeued += 1
    return requeued


def _queue_identity(trial: FrozenTrial) -> tuple[object, object] | None:
    """(preset, promoted_from) of a queued trial; None for a sampled one."""
    queued = queued_as(trial)
    return (queued.get("preset"), queued.get("promoted_from")) if queued else None


def name_metrics(study: optuna.Study, settings: StudySettings) -> None:
    """Objective names for optuna-dashboard, plot_pareto_front and trials_dataframe (values_0 otherwise);
    a study made by an earlier version gets them when a worker re-opens it."""
    if study.metric_names is None:
        with warnings.catch_warnings():  # experimental in Optuna's eyes since 3.2; it is what the dashboard reads
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(settings.objectives))


def preset_params(settings: StudySettings) -> dict[str, dict | None]:
    """The study's presets (the paper's four, llama and lfm2), enqueued first so every front reads against
    them. One the space can build is enqueued with its parameters (None: it cannot): the sampler then learns
    from it like from any other trial (the gpt preset is among the best at its cost, and without parameters
    TPE never saw it)."""
    found = {}
    for name in settings.presets:
        try:
            config = preset(name, block_size=settings.block_size, **settings.preset_shape)
        except ConfigError as exc:
            raise ConfigError(f"preset {name} at the study's shape: {exc} (choose another --n-head/--d-model)") from None
        found[name] = settings.space.params_for(config)
    return found


@dataclass
class WorkerSummary:
    trials_run: int  # trials trained here (repeats and infeasible samples excluded)
    complete_in_study: int
    exhausted: bool = False  # stopped because the sampler only proposed architectures already trained


def run_worker(
    study: optuna.Study,
    settings: StudySettings,
    data: TokenizedData,
    device: torch.device,
    n_trials: int,
    max_complete: int | None = None,
    storage: str | None = None,
    artifacts: Any = None,
    reporter: Reporter | None = None,
    queued_only: bool = False,
    gap_trials: int = 0,
) -> WorkerSummary:
    """Run up to `n_trials` trials in this process; stop early once the study holds `max_complete`
    complete trials. Only trials that train count: an infeasible sample (pruned before training) or
    a repeat of an architecture already trained (its result reused) costs no training.
    `queued_only` (a promotion) runs enqueued trials only, then gap trials (studies/fronts/gaps.py) until the
    study holds `gap_trials` of them, and stops when none is waiting."""
    if data.content_hash != settings.content_hash:
        raise corpus_changed(settings.data, f"study {study.study_name!r} was created", data.content_hash,
                             settings.content_hash)
    claim_device_type(study, device)
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)  # what runs on "the current device" (memory stats, empty_cache) is this one
    journal = is_journal(storage or "")
    reporter = reporter or SilentReporter()
    context = TrialContext(study, settings, data, device, artifacts,
                           LeaseReporter(reporter) if journal else reporter)
    try:
        return _run_trials(context, n_trials, max_complete, journal, queued_only, gap_trials)
    finally:
        gc.unfreeze()  # what _free_model froze: a notebook's objects are collected as before


def _run_trials(context: TrialContext, n_trials: int, max_complete: int | None, journal: bool, queued_only: bool,
                gap_trials: int) -> WorkerSummary:
    study, settings = context.study, context.settings
    ran, infeasible_in_a_row, repeats_in_a_row = 0, 0, 0
    repeat: FrozenTrial | None = None
    while ran < n_trials:
        raise_if_terminated()
        if max_complete is not None and count_complete(study) >= max_complete:
            break
        if journal:
            fail_expired_trials(study)  # journal storage has no heartbeat: expired leases are dead workers
        if repeat is not None and not queued_only:  # only when a trial follows; a promotion runs its queue only
            enqueue_untried_neighbour(study, settings, repeat, context.data.vocab_size,
                                      reusable_elsewhere(study, settings, context.device.type))
        repeat = None
        if queued_only and not study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            if gap_trials_in(study) >= gap_trials or not enqueue_gap_trial(study, settings,
                                                                            context.data.vocab_size):
                break
        trial = _run_one(context)
        if trial is None:  # taken by another worker after this one stalled past its lease
            continue
        if trained(trial):
            _free_model(context.device)
            ran, infeasible_in_a_row, repeats_in_a_row = ran + 1, 0, 0
            continue
        infeasible_in_a_row = infeasible_in_a_row + 1 if trial.user_attrs.get("infeasible") else 0
        repeat = trial if "reused_from" in trial.user_attrs else None  # from this study or another (repeats.py)
        repeats_in_a_row = repeats_in_a_row + 1 if repeat else 0
        if infeasible_in_a_row >= MAX_CONSECUTIVE_INFEASIBLE:
            raise StudyError(f"{infeasible_in_a_row} samples in a row broke the constraints "
                             f"{settings.constraints}; loosen them or narrow the space")
        if repeats_in_a_row >= MAX_CONSECUTIVE_REPEATS and not queued_only:  # a queue ends by itself
            return WorkerSummary(ran, count_complete(study), exhausted=True)
    return WorkerSummary(ran, count_complete(study))


def _free_model(device: torch.device) -> None:
    """Free the model a trial built now: a full collection, so only after trials that built one. What
    outlives it (the study's cached trials above all, which a full collection scanned for 0.36 s at
    10,000 trials) is frozen, so the next collections skip it; run_worker unfreezes it on return.
    On a GPU the cache is emptied only then: a failed trial's traceback held its model until now."""
    gc.collect()
    gc.freeze()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _run_one(context: TrialContext) -> FrozenTrial | None:
    """One trial; None if another worker took it (its lease ran out while this one stalled: it is
    re-queued there), or a one-line StudyError if the study was deleted under this worker."""
    try:
        return run_trial(context)
    except KeyError as exc:  # the storage no longer knows the study
        name = context.study.study_name
        if name not in optuna.get_all_study_names(context.study._storage):  # noqa: SLF001
            raise StudyError(f"study {name!r} was deleted while this worker was running it") from exc
        raise
    except Exception as exc:
        if not trial_taken(exc):
            raise
        warnings.warn("a trial of this worker was taken by another one after its lease ran out (this worker "
                      "stalled); it is re-queued there, going on", stacklevel=2)
        return None


def promote(name: str, storage: str | None, steps: int, top: int | None = None) -> tuple[optuna.Study, StudySettings, int]:
    """Create (or join) NAME@STEPS and enqueue NAME's front there, retrained from scratch for `steps`.

    A sibling study, so no sampler ever fits short and long results together. Returns the sibling,
    its settings and how many trials were enqueued (already enqueued architectures are skipped).
    """
    if top is not None and top < 1:
        raise ArgumentError("top", top, "promote at least one trial")
    study, settings = open_study(name, storage, None)
    if steps <= settings.steps:
        raise ArgumentError("steps", steps, f"promotion needs a longer budget than the study's {settings.steps}")
    front = promotion_candidates(study, settings, top)
    if not front:
        raise StudyError(f"study {name!r} has no complete sampled trials to promote yet")
    long_settings = replace(settings, recipe=replace(settings.recipe, steps=steps))
    # The sibling gets the presets again (the reference points at the long budget), then the front.
    sibling, long_settings = open_study(promoted_name(name, steps), storage, long_settings)
    queued = {t.user_attrs.get("promoted_from") for t in sibling.get_trials(deepcopy=False) if not stopped(t)}
    added = 0
    for trial in front:
        if trial.number not in queued:
            sibling.enqueue_trial({}, user_attrs={"config": trial.user_attrs["config"], "promoted_from": trial.number})
            added += 1
    return sibling, long_settings, added
