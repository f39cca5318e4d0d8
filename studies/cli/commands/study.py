"""`search`, `worker` and `promote`: run trials in a study, creating it on first use."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import Any

from rich.console import Console

from objectives.protocol import BACKENDS

from ...api import Search, default_jobs
from ...errors import StudyError
from ...expect import expect
from ...fronts.gaps import GAP_RATIO, gap_trials_in
from ...measures import CONSTRAINTS, DEFAULT_OBJECTIVES, OBJECTIVES
from ...settings import DEFAULT_TRIALS, SEARCH_RECIPE, WORKER_TRIALS, Pruning
from ...space import DEFAULT_SPACE, load_space
from ...storage.backends import display_storage, promoted_name
from ...workers.jobs import check_jobs
from ...workers.search import MAX_CONSECUTIVE_REPEATS
from ...workers.trial_record import study_counts
from ..arguments import (
    add_artifacts_argument,
    add_data_arguments,
    add_device_argument,
    add_keep_checkpoints_argument,
    add_promotion_arguments,
    add_shape_arguments,
    add_study_arguments,
    add_training_arguments,
    explicit_recipe,
)
from ..live import LiveReporter
from ..progress import STDERR, ConsoleJobsView
from ..registry import command
from ..views import front_table, front_title
from .front import retimed_line


def add_search_arguments(parser: argparse.ArgumentParser, default_trials: int) -> None:
    add_study_arguments(parser)
    group = parser.add_argument_group("search (fixed when the study is created)")
    group.add_argument("--space", metavar="paper|modern|FILE",
                       help=f"search space: a shipped one (studies/paper_space.yaml, studies/modern_space.yaml, "
                            f"documented inline) or a YAML file (default: {DEFAULT_SPACE})")
    group.add_argument("--objectives", nargs="+", metavar="NAME",
                       help=f"any of {', '.join(OBJECTIVES)} (default: {' '.join(DEFAULT_OBJECTIVES)})")
    group.add_argument("--sampler", help="tpe (default), random, nsga2 or gp")
    group.add_argument("--sampler-seed", type=int, help="seed of the sampler (--seed seeds training)")
    for objective in CONSTRAINTS.values():
        unit = "MB" if objective.constraint_scale == 1e6 else objective.unit or "count"
        group.add_argument("--" + objective.constraint.replace("_", "-"), type=float, metavar=unit.upper(),
                           help=f"constraint: at most this much {objective.description} ({unit})")
    group.add_argument("--latency-mode", choices=("forward", "decode"),
                       help="forward: batch 1, full context (default); decode: one KV-cached token at the last "
                            "context position, the cache full")
    group.add_argument("--latency-backend", choices=BACKENDS,
                       help="torch: eager PyTorch (default); onnxruntime: each candidate exported to ONNX and timed "
                            "in ONNX Runtime, the usual CPU deployment target (pip install -e '.[onnx]')")
    group.add_argument("--rungs", type=float, nargs="*", metavar="FRACTION",
                       help=f"early-stopping rungs as fractions of --steps (default: "
                            f"{' '.join(f'{r:.2f}' for r in Pruning().rungs)}; none: no early stopping)")
    group.add_argument("--prune-margin", type=float,
                       help=f"loss margin (nats) by which a cheaper trial must lead at the rung at 2/3 of "
                            f"the steps to stop this one; earlier rungs scale it by (2/3)/fraction, since "
                            f"gaps narrow with training (default: {Pruning().margin})")
    shape = parser.add_argument_group("shape: context length, and the presets run as baselines")
    add_shape_arguments(shape)
    add_data_arguments(parser)
    add_training_arguments(parser, SEARCH_RECIPE, "proxy training recipe of every trial")
    run = parser.add_argument_group("this process")
    until = "no limit: until --max-complete or Ctrl-C" if default_trials >= WORKER_TRIALS else str(default_trials)
    run.add_argument("--trials", type=int, default=default_trials,
                     help=f"trials to train in all, the presets among them (--jobs N shares them out, as "
                          f"Optuna's n_trials does); repeats and infeasible samples are free (default: {until})")
    if default_trials < WORKER_TRIALS:  # search; a worker is one process by definition
        run.add_argument("--jobs", type=int, metavar="N",
                         help="worker processes on this machine sharing the study and the --trials between them, "
                              "the CPU cores split between them (default: 2 on a CPU-only machine with a journal "
                              "storage, 1.6x the trials per hour of one process on 2 cores; else 1)")
        run.add_argument("--devices", metavar="D1,D2,...",
                         help="devices the jobs take in turn: --jobs 8 --devices cuda:0,cuda:1 puts 4 on each GPU "
                              "(default: --device for every job)")
    run.add_argument("--max-complete", type=int, help="every process stops once the study holds N complete trials "
                                                         "(trained to the end; reused results not counted)")
    run.add_argument("--no-presets", action="store_true",
                     help="do not enqueue the presets first (the paper's four, llama and lfm2, at the study's shape)")
    add_artifacts_argument(run)
    add_keep_checkpoints_argument(run)
    run.add_argument("--promote-steps", type=int, metavar="S2",
                     help="afterwards, retrain the front from scratch for S2 steps (study NAME@S2)")
    add_promotion_arguments(run, prefix="with --promote-steps: ")


@command("search")
def search_arguments(parser: argparse.ArgumentParser) -> None:
    add_search_arguments(parser, default_trials=DEFAULT_TRIALS)
    parser.set_defaults(run=run_search)


@command("worker")
def worker_arguments(parser: argparse.ArgumentParser) -> None:
    add_search_arguments(parser, default_trials=WORKER_TRIALS)
    parser.set_defaults(run=run_search)


def requested_changes(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the user asked for explicitly, as Search.create's changes: the rest are the
    study's own, or the defaults for a new one."""
    changes: dict[str, Any] = {}
    if args.objectives:
        changes["objectives"] = tuple(args.objectives)
    if args.space:
        changes["space"] = load_space(args.space)
    for name, flag in (("data", "data"), ("tokenizer", "tokenizer"), ("text_column", "text_column"),
                       ("sampler", "sampler"), ("seed", "sampler_seed"), ("block_size", "block_size")):
        if getattr(args, flag, None) is not None:
            changes[name] = getattr(args, flag)
    if "data" in changes and Path(changes["data"]).exists():
        # A local corpus is stored by absolute path: workers started elsewhere find the same file.
        changes["data"] = str(Path(changes["data"]).resolve())
    nested = {
        "preset_shape": {k: getattr(args, k) for k in ("n_layer", "n_head", "d_model")},
        "recipe": explicit_recipe(args),
        "constraints": {o.constraint: getattr(args, o.constraint, None) for o in CONSTRAINTS.values()},
        "latency": {"mode": args.latency_mode, "backend": args.latency_backend},
        "pruning": {"rungs": args.rungs, "margin": args.prune_margin},
    }
    for name, values in nested.items():
        given = {key: value for key, value in values.items() if value is not None}
        if given:
            changes[name] = given
    return changes


def run_search(args: argparse.Namespace, console: Console) -> None:
    if args.top is not None and (args.top < 1 or not args.promote_steps):
        raise StudyError(f"--top {args.top}: needs --promote-steps and at least one trial to promote")
    if args.gap_trials is not None and not args.promote_steps:
        raise StudyError(f"--gap-trials {args.gap_trials}: needs --promote-steps (gap trials run at the longer budget)")
    expect("trials", args.trials, int, minimum=0)
    devices = args.devices.split(",") if getattr(args, "devices", None) is not None else None
    jobs = getattr(args, "jobs", 1)  # `worker` is one process by definition
    jobs = default_jobs(args.storage, args.device, devices) if jobs is None else jobs
    check_jobs(jobs, devices or [args.device], "devices" if devices else "device")  # before the study is created
    search = Search.create(args.study, args.storage, presets=not args.no_presets, artifacts=args.artifacts,
                           **requested_changes(args))
    _announce(search, args.trials, console)
    _run(search, args.trials, jobs, devices, args, console)
    if args.promote_steps:
        search = _promote_and_run(search, args, args.promote_steps, console)
    _remeasure(search, args, console)
    _print_front(search, console)
    _print_next(search, args, console)


def _announce(search: Search, trials: int, console: Console) -> None:
    """One line at the start, so a piped log says what runs before the first trial ends, and whether
    it adds to trials already there."""
    settings = search.settings
    held = search.study.get_trials(deepcopy=False)
    adds = f"; this run trains up to {trials} more" if trials < WORKER_TRIALS else ""
    state = (f"it already holds {study_counts(held)}{adds}" if any(t.state.is_finished() for t in held)
             else "nothing trained yet")
    console.print(f"study {search.name!r} in {display_storage(search.storage)}: data {settings.data}, "
                  f"{settings.steps} steps per trial, objectives {' '.join(settings.objectives)}; {state}",
                  soft_wrap=True)  # one line, however long


def _remeasure(search: Search, args: argparse.Namespace, console: Console) -> None:
    """Latencies taken hours apart under other loads do not compare: the front and presets are re-timed
    together before the front is shown (`decoder-nas measure` does it on demand)."""
    console.print(retimed_line(search, search.measure(device=args.device)) + ", so their latencies compare "
                  "(each trial keeps its own as latency_ms_trial)", soft_wrap=True)


def _print_front(search: Search, console: Console) -> None:
    console.print(front_table(search.front_trials(), search.settings, front_title(search)))


def _print_next(search: Search, args: argparse.Namespace, console: Console) -> None:
    where = f"--study {shlex.quote(args.study)} --storage {shlex.quote(display_storage(args.storage))}"
    console.print("\n".join([
        "Next:",
        f"  more trials             decoder-nas search {where} --trials N",
        f"  more machines           decoder-nas worker {where}   (with a postgresql:// storage)",
        f"  train the front longer  decoder-nas promote {where} --steps 2000",
        f"  look at the front       decoder-nas pareto {where} --html front.html",
        f"  take one away           decoder-nas export {where} --pick knee -o best.yaml",
    ]), soft_wrap=True)


def _promote_and_run(search: Search, args: argparse.Namespace, steps: int, console: Console) -> Search:
    console.print(f"promoting {search.name!r} to {steps} steps in study {promoted_name(search.name, steps)!r}")
    with LiveReporter(search.study, search.settings, None) as reporter:
        asked = {} if args.gap_trials is None else {"gap_trials": args.gap_trials}  # else the API's default
        done = search.promote(steps, top=args.top, device=args.device, **asked,
                              keep_checkpoints=args.keep_checkpoints, reporter=reporter)
    gaps = gap_trials_in(done.search.study)
    console.print(f"promoted {done.added} new architectures ({done.queued} were queued with the presets); "
                  f"{done.summary.trials_run} trained here; {gaps} gap trial{'s' if gaps != 1 else ''} in the study"
                  + ("" if gaps >= done.gap_trials else " (no front gap wider than "
                     f"{GAP_RATIO}x in cost left to fill)"))
    return done.search


def _run(search: Search, trials: int, jobs: int, devices: list[str] | None, args: argparse.Namespace,
         console: Console) -> None:
    if jobs == 1:
        total = trials if trials < WORKER_TRIALS else None
        with LiveReporter(search.study, search.settings, total) as reporter:
            summary = search.run(trials, jobs=1, max_complete=args.max_complete, device=args.device,
                                 keep_checkpoints=args.keep_checkpoints, reporter=reporter)
    else:  # the jobs' own view: one bar for all of them, each finished trial on a line
        summary = search.run(trials, jobs=jobs, devices=devices, max_complete=args.max_complete, device=args.device,
                             keep_checkpoints=args.keep_checkpoints, jobs_view=ConsoleJobsView(STDERR))
    if summary.exhausted:
        console.print(
            f"stopped early: the sampler proposed {MAX_CONSECUTIVE_REPEATS} architectures in a row that were "
            "trained already, in this study or one that trains alike (their results were reused), with nothing "
            "untried one change away; the space looks exhausted", soft_wrap=True)
    console.print(f"trained {summary.trials_run} trial{'s' if summary.trials_run != 1 else ''} in "
                  f"{'this process' if jobs == 1 else f'{jobs} processes'} (stopped early ones included); "
                  f"the study now holds {study_counts(search.study.get_trials(deepcopy=False))}", soft_wrap=True)


@command("promote")
def promote_arguments(parser: argparse.ArgumentParser) -> None:
    add_study_arguments(parser)
    parser.add_argument("--steps", type=int, required=True, help="the longer budget in steps")
    add_promotion_arguments(parser)
    add_device_argument(parser)
    add_keep_checkpoints_argument(parser)
    add_artifacts_argument(parser)
    parser.set_defaults(run=run_promote)


def run_promote(args: argparse.Namespace, console: Console) -> None:
    search = _promote_and_run(Search.load(args.study, args.storage, args.artifacts), args, args.steps, console)
    _remeasure(search, args, console)
    _print_front(search, console)
    _print_next(search, args, console)
