"""One trial, start to finish: choose the architecture, measure what is cheap, check constraints,
reuse an identical result, train with multi-objective early stopping, record everything.

A trial's architecture comes from, in order: an enqueued paper preset (`preset` user attribute), a
promoted config (`config`), or the search space.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Protocol, runtime_checkable

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from objectives import Latency, describe, measure_latency
from search_space import DecoderConfig, architecture_hash, config_from_dict, config_to_dict, preset, summarize
from trainer.data import TokenizedData
from trainer.loop import Progress, TrainingError
from trainer.run import initialised_model, run_training

from ..errors import Terminated, out_of_memory, raise_if_terminated
from ..fronts.hypervolume import dominates
from ..measures import (
    CONSTRAINTS,
    OBJECTIVES,
    STATIC_MEASURES,
    constraint_excess,
    cost_objectives,
    static_measures,
)
from ..settings import SETTINGS_KEY, StudySettings
from ..storage.artifacts import ArtifactStoreError, upload_weights
from .claims import wait_for_claimants
from .devices import device_type
from .gpu_share import TrainingShare, timing_turn
from .trial_record import trained

# Settings that decide a trial's measures: two studies alike in these give an architecture the same result.
TRAINING_KEYS = ("data", "tokenizer", "text_column", "content_hash", "block_size", "recipe", "latency")
# Loss gaps between architectures narrow as training goes on, so an earlier rung asks for a wider
# margin: margin x MARGIN_FRACTION / fraction (measured: docs/decisions.md).
MARGIN_FRACTION = 2 / 3
TRAINING_METRICS = ("val_loss", "val_perplexity", "val_accuracy", "tokens_per_second", "train_seconds", "tokens")
# What a trial measures (static, latency, training, the rungs' `rung_N`): a repeat takes these over.
# A latency measure -> its Latency field: the estimate, its spread, and what else ran while it was taken.
_LATENCY_FIELDS = {"latency_ms": "ms", "latency_p10_ms": "p10_ms", "latency_p90_ms": "p90_ms",
                   "latency_spread": "relative_spread", "latency_load_average": "load_average",
                   "latency_procs_running": "procs_running", "latency_peak_memory_bytes": "peak_memory_bytes"}
LATENCY_MEASURES = tuple(_LATENCY_FIELDS)
MEASURES = (*STATIC_MEASURES, *LATENCY_MEASURES, *TRAINING_METRICS, "loss_curve")
RUNG_SMOOTHING_REPORTS = 3  # a rung's loss is the mean of the last few progress reports
INTERRUPTED, TERMINATED = "interrupted by the user", "terminated"  # fail reasons of a stopped worker's trial


@runtime_checkable  # so the API can refuse an argument that is not one
class Reporter(Protocol):
    def trial_started(self, trial: optuna.Trial, summary: str, steps: int) -> None: ...
    def progress(self, progress: Progress) -> None: ...
    def trial_finished(self, trial: FrozenTrial) -> None: ...


class SilentReporter:
    def trial_started(self, trial: optuna.Trial, summary: str, steps: int) -> None:
        pass

    def progress(self, progress: Progress) -> None:
        pass

    def trial_finished(self, trial: FrozenTrial) -> None:
        pass


@dataclass
class TrialContext:
    study: optuna.Study
    settings: StudySettings
    data: TokenizedData
    device: torch.device
    artifacts: Any = None  # the Optuna artifact store trial weights are kept in, if they are
    reporter: Reporter = field(default_factory=SilentReporter)


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version(), "torch": torch.__version__, "optuna": optuna.__version__}
    try:
        found["decoder-nas"] = version("decoder-nas")
    except PackageNotFoundError:
        pass
    return found


def worker_id(pid: int | None = None) -> str:
    """host:pid of the process running a trial: a `--jobs` parent fails the trial of a job killed outright."""
    return f"{socket.gethostname()}:{os.getpid() if pid is None else pid}"


def config_for_trial(trial: optuna.Trial, context: TrialContext) -> DecoderConfig:
    attrs, settings = trial.user_attrs, context.settings
    vocab = context.data.vocab_size
    if "preset" in attrs:
        if attrs.get("in_space"):  # enqueued with its parameters: suggesting them records them
            settings.space.sample(trial, vocab, settings.block_size)
        return preset(attrs["preset"], vocab_size=vocab, block_size=settings.block_size, **settings.preset_shape)
    if "config" in attrs:
        return config_from_dict(attrs["config"]).replace(vocab_size=vocab, block_size=settings.block_size)
    return settings.space.sample(trial, vocab, settings.block_size)


def run_trial(context: TrialContext) -> FrozenTrial:
    """Run one trial through Study.optimize, which brings Optuna's heartbeat and stale-trial retry on
    RDB storage, records pruned and failed trials, and lets the study go on after a failure."""

    unusable_store: list[ArtifactStoreError] = []

    def objective(trial: optuna.Trial) -> list[float]:
        try:
            return _evaluate(trial, context)
        except optuna.TrialPruned as reason:
            trial.set_user_attr("pruned_reason", str(reason))
            raise
        except KeyboardInterrupt as stop:
            trial.set_user_attr("fail_reason", TERMINATED if isinstance(stop, Terminated) else INTERRUPTED)
            raise
        except Exception as exc:
            trial.set_user_attr("fail_reason", _failure_reason(exc))
            if isinstance(exc, ArtifactStoreError):  # not this trial's fault: every next trial would fail too
                unusable_store.append(exc)
            raise

    finished: list[FrozenTrial] = []

    def record(study: optuna.Study, trial: FrozenTrial) -> None:
        finished.append(trial)
        context.reporter.trial_finished(trial)

    context.study.optimize(objective, n_trials=1, catch=(Exception,), callbacks=[record])
    if unusable_store:
        raise unusable_store[0]  # the worker stops, on one line
    return finished[0]


def stopped(trial: FrozenTrial) -> bool:
    """Whether the trial failed only because its worker was stopped (Ctrl-C, SIGTERM): worth retrying."""
    return trial.state == TrialState.FAIL and trial.user_attrs.get("fail_reason") in (INTERRUPTED, TERMINATED)


def _failure_reason(exc: BaseException) -> str:
    memory = out_of_memory(exc)  # a CUDA or CPU allocation, with how much it asked for
    if memory is not None:
        return memory
    if isinstance(exc, (TrainingError, ArtifactStoreError)):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _evaluate(trial: optuna.Trial, context: TrialContext) -> list[float]:
    settings = context.settings
    config = config_for_trial(trial, context)
    arch_hash = architecture_hash(config)
    record: dict[str, Any] = {
        "config": config_to_dict(config),
        "arch_hash": arch_hash,
        "summary": summarize(config),
        **architecture_facts(config),
        "steps": settings.steps,
        "device": str(context.device),
        "worker": worker_id(),
        "versions": versions(),
    }
    for key, value in record.items():
        trial.set_user_attr(key, value)
    context.reporter.trial_started(trial, record["summary"], settings.steps)

    wait_for_claimants(context.study, arch_hash, trial.number)  # a twin training elsewhere: its result is reused
    reused, source = _trained_twin(context, arch_hash, trial.number)
    if reused is not None:
        trial.set_user_attr("reused_from", reused.number)
        if source is not None:
            trial.set_user_attr("reused_from_study", source)
        for key, value in reused.user_attrs.items():
            if key in MEASURES or key.startswith("rung_"):  # not how the twin was chosen, leased or kept
                trial.set_user_attr(key, value)
        _check_constraints(trial, reused.user_attrs, settings)  # another study may have had other limits
        if reused.state == TrialState.PRUNED:  # training is deterministic: it would be stopped again
            raise optuna.TrialPruned(f"as trial {reused.number}: {reused.user_attrs.get('pruned_reason', 'pruned')}")
        return _objective_values(reused.user_attrs, settings)

    recipe = settings.recipe
    description = describe(config)
    measures = static_measures(description)
    _record(trial, measures)
    _check_constraints(trial, measures, settings, static=True)  # no model is built or timed for a refused sample
    model = initialised_model(config, recipe.seed).to(context.device)
    with timing_turn(context.device):  # no other job's kernels on this GPU while it is timed
        latency = latency_measures(measure_latency(model, settings.latency))
    _record(trial, latency)
    measures.update(latency)
    _check_constraints(trial, measures, settings, static=False)

    with _staging(context) as out_dir, TrainingShare(context.device) as share:  # weights go to the artifact store
        report = run_training(config, context.data, recipe, str(context.device), out_dir,
                              share.pausing(_RungPruner(trial, context, measures)), model=model)
        if report.checkpoint is not None:
            upload_weights(trial, context.artifacts, report.checkpoint, arch_hash)
    metrics = report.metrics()
    for key in TRAINING_METRICS:
        trial.set_user_attr(key, metrics[key])
    trial.set_user_attr("loss_curve", report.result.loss_curve)
    return _objective_values({**measures, **metrics}, settings)


@contextlib.contextmanager
def _staging(context: TrialContext) -> Iterator[Path | None]:
    """A private folder the checkpoint is written to before upload (None: weights are not kept)."""
    if context.artifacts is None:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="decoder-nas-weights-") as folder:
        yield Path(folder) / "checkpoint"


def architecture_facts(config: DecoderConfig) -> dict[str, int]:
    """What the architecture is, in numbers a dashboard can plot: the sampled parameters include
    per-layer slots that a shallow model never uses, so they explain little on their own."""
    return {"depth": len(config.layers), "d_model": config.d_model, "final_width": config.final_width,
            "narrowings": sum(layer.reduction is not None for layer in config.layers),
            "parallel_layers": sum(layer.layout == "parallel" for layer in config.layers), "towers": config.towers}


def latency_measures(latency: Latency) -> dict[str, Any]:
    """LATENCY_MEASURES of one measurement (docs/latency.md)."""
    return {key: getattr(latency, field) for key, field in _LATENCY_FIELDS.items()}


def _record(trial: optuna.Trial, measures: dict[str, Any]) -> None:
    for key, value in measures.items():
        trial.set_user_attr(key, value)


def _check_constraints(trial: optuna.Trial, measures: dict[str, Any], settings: StudySettings,
                       static: bool | None = None) -> None:
    """Cheap measures decide feasibility before any training is spent: those the config alone
    decides (static=True), then latency (static=False), or all at once (None)."""
    violations = []
    for name, excess in constraint_excess(settings.constraints, measures, static).items():
        trial.set_constraint(name, excess)
        if excess > 0:
            measure = CONSTRAINTS[name].name
            violations.append(f"{measure} {measures[measure]:,.6g} > {name} {settings.constraints[name]:,.6g}")
    if violations:
        trial.set_user_attr("infeasible", True)
        raise optuna.TrialPruned("infeasible: " + "; ".join(violations))


def _objective_values(metrics: dict[str, Any], settings: StudySettings) -> list[float]:
    return [float(metrics[name]) for name in settings.objectives]


def _trained_twin(context: TrialContext, arch_hash: str, number: int) -> tuple[FrozenTrial | None, str | None]:
    """A result to reuse, and the study it is from if not this one.

    First a trial of this study (one study = one budget) that trained to the end or was stopped at
    a rung; infeasible samples never trained and failures may not recur. Then a complete trial of
    any study in the same storage that trains alike (`TRAINING_KEYS`) on the same device type: every
    promoted sibling retrains the presets, and two studies may promote one architecture.
    """
    own = _twin_in(context.study, arch_hash, number, (TrialState.COMPLETE, TrialState.PRUNED), None)
    if own is not None:
        return own, None
    for other in studies_trained_alike(context.study, context.settings):
        twin = _twin_in(other, arch_hash, None, (TrialState.COMPLETE,), context.device.type)
        if twin is not None:
            return twin, other.study_name
    return None, None


def studies_trained_alike(study: optuna.Study, settings: StudySettings) -> Iterator[optuna.Study]:
    """The other studies in `study`'s storage that train alike (`TRAINING_KEYS`): their results hold here."""
    storage = study._storage  # noqa: SLF001 - Optuna exposes no public accessor
    # The studies themselves, not get_all_study_summaries: that deep-copies every trial of every study.
    for frozen in storage.get_all_studies():
        if frozen.study_name != study.study_name and _trains_alike(frozen.user_attrs, settings):
            yield optuna.load_study(study_name=frozen.study_name, storage=storage)


def reusable_elsewhere(study: optuna.Study, settings: StudySettings, device_kind: str) -> set[str]:
    """The architectures a trial of `study` on a `device_kind` device would reuse from another study."""
    return {t.user_attrs["arch_hash"] for other in studies_trained_alike(study, settings)
            for t in other.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if _reusable(t, device_kind)}


def _trains_alike(study_attrs: dict[str, Any], settings: StudySettings) -> bool:
    """Whether a study's stored settings (any version's) match these on every key in TRAINING_KEYS."""
    if SETTINGS_KEY not in study_attrs:
        return False
    stored = StudySettings.from_dict(study_attrs[SETTINGS_KEY]).to_dict()
    wanted = settings.to_dict()
    return all(stored[key] == wanted[key] for key in TRAINING_KEYS)


def _twin_in(study: optuna.Study, arch_hash: str, number: int | None, states: tuple[TrialState, ...],
             device_kind: str | None) -> FrozenTrial | None:
    """A trained trial of the architecture, on a device of `device_kind` (cpu, cuda; None: any): the
    CPU and CUDA generators draw different batches, while cuda:0 and cuda:1 train alike."""
    for trial in study.get_trials(deepcopy=False, states=states):
        if trial.number != number and trial.user_attrs.get("arch_hash") == arch_hash and _reusable(trial, device_kind):
            return trial
    return None


def _reusable(trial: FrozenTrial, device_kind: str | None) -> bool:
    """Whether the trial trained its architecture (on a device of `device_kind`, unless None) and holds
    the result."""
    return ("arch_hash" in trial.user_attrs and trained(trial)
            and device_kind in (None, device_type(trial.user_attrs.get("device"))))


class _RungPruner:
    """Early stopping that never kills a cheap model just for its higher loss.

    At each rung (a fraction of the steps) the trial records its smoothed training loss. It stops
    only if another trial at the same rung is at least as cheap on every cost objective and lower
    in loss by more than the rung's margin: it is dominated on (loss so far, cost).
    """

    def __init__(self, trial: optuna.Trial, context: TrialContext, measures: dict[str, Any]):
        self.trial, self.context, self.measures = trial, context, measures
        pruning, steps = context.settings.pruning, context.settings.steps
        self.rungs = sorted({max(1, int(f * steps)) for f in pruning.rungs} - {steps})
        self.margin, self.steps = pruning.margin, steps
        self.costs = cost_objectives(context.settings.objectives)
        self.recent: list[float] = []

    def __call__(self, progress: Progress) -> None:
        raise_if_terminated()
        self.context.reporter.progress(progress)
        self.recent = (self.recent + [progress.loss])[-RUNG_SMOOTHING_REPORTS:]
        while self.rungs and progress.step >= self.rungs[0]:
            rung = self.rungs.pop(0)
            loss = sum(self.recent) / len(self.recent)
            self.trial.set_user_attr(f"rung_{rung}", loss)
            # Presets (the reference points) and promoted trials (the front being retrained) always
            # finish; early stopping is for sampled architectures only.
            protected = "preset" in self.trial.user_attrs or "promoted_from" in self.trial.user_attrs
            margin = self.margin_at(rung)
            dominator = None if protected else self._dominator(rung, loss, margin)
            if dominator is not None:
                raise optuna.TrialPruned(
                    f"dominated at step {rung}: loss {loss:.3f} vs trial {dominator.number}'s "
                    f"{dominator.user_attrs[f'rung_{rung}']:.3f} at no greater cost (margin {margin:.3f})")

    def margin_at(self, rung: int) -> float:
        return self.margin * MARGIN_FRACTION * self.steps / rung

    def _dominator(self, rung: int, loss: float, margin: float) -> FrozenTrial | None:
        key = f"rung_{rung}"
        states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
        for other in self.context.study.get_trials(deepcopy=False, states=states):
            attrs = other.user_attrs
            if other.number == self.trial.number or key not in attrs:
                continue
            # Dominated on (loss so far + margin, costs): the other trial's loss gets the margin added.
            theirs = [attrs[key] + margin, *(OBJECTIVES[c].minimised(attrs.get(c, math.inf)) for c in self.costs)]
            mine = [loss, *(OBJECTIVES[c].minimised(self.measures[c]) for c in self.costs)]
            if dominates(theirs, mine) or theirs == mine:
                return other
        return None
