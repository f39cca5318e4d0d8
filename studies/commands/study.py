"""`search`, `worker` and `promote`: run trials in a study, creating it on first use."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import Any

import optuna
from rich.console import Console

from objectives import LatencyProtocol
from trainer import DEFAULT_DATA_SPEC, prepare_data
from trainer.loop import TrainingRecipe, resolve_device

from ..arguments import add_data_arguments, add_shape_arguments, add_training_arguments, explicit_recipe
from ..errors import StudyError
from ..front import front_trials, keep_front_checkpoints
from ..gaps import gap_trials_in
from ..live import LiveReporter
from ..registry import command
from ..search import MAX_CONSECUTIVE_REPEATS, count_complete, open_study, promote, run_worker
from ..settings import DEFAULT_OBJECTIVES, OBJECTIVES, StudySettings, check_objectives, read_settings
from ..space import load_space
from ..storage import DEFAULT_STORAGE, load_existing, open_storage
from ..trials import DEFAULT_PRUNE_MARGIN, DEFAULT_RUNGS
from ..views import front_table

DEFAULT_STUDY = "decoder-nas"
TOP_HELP = ("promote K sampled trials: the front, then the next non-dominated layers behind it, best quality "
            "first (default: the front only)")
DEFAULT_GAP_TRIALS = 4
GAP_HELP = ("then train N gap trials at the longer budget, one at a time: each changes one parameter of a "
            f"front trial to fill the front's widest cost gap (default: {DEFAULT_GAP_TRIALS}; 0: none)")
# The proxy: nanoGPT's CPU recipe compressed to 300 steps (warm-up and cosine scaled with it).
SEARCH_RECIPE = TrainingRecipe(steps=300, warmup_steps=30)
SEARCH_SHAPE = {"block_size": 64, "n_layer": 4, "n_head": 4, "d_model": 128}
WORKER_TRIALS = 1_000_000  # a worker runs until the study is done (--max-complete) or it is stopped


def add_study_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("study")
    group.add_argument("--study", default=DEFAULT_STUDY, help=f"study name (default: {DEFAULT_STUDY})")
    group.add_argument("--storage", default=DEFAULT_STORAGE,
                       help="a journal file path (several processes on one machine; default: "
                            f"./{DEFAULT_STORAGE}), sqlite:///FILE (one process) or "
                            "postgresql://USER:PASSWORD@HOST/DB (many machines)")


def add_search_arguments(parser: argparse.ArgumentParser, default_trials: int) -> None:
    add_study_arguments(parser)
    group = parser.add_argument_group("search (fixed when the study is created)")
    group.add_argument("--space", type=Path, help="search space YAML (default: the one shipped, see README)")
    group.add_argument("--objectives", nargs="+", metavar="NAME",
                       help=f"any of {', '.join(OBJECTIVES)} (default: {' '.join(DEFAULT_OBJECTIVES)})")
    group.add_argument("--sampler", help="tpe (default), random, nsga2 or gp")
    group.add_argument("--sampler-seed", type=int, help="seed of the sampler (--seed seeds training)")
    group.add_argument("--max-params", type=float, help="constraint: at most this many parameters")
    group.add_argument("--max-flops", type=float, help="constraint: at most this many FLOPs per token")
    group.add_argument("--max-latency-ms", type=float, help="constraint: at most this latency")
    group.add_argument("--latency-mode", choices=("forward", "decode"),
                       help="forward: batch 1, full context (default); decode: one KV-cached token")
    group.add_argument("--rungs", type=float, nargs="*", metavar="FRACTION",
                       help=f"early-stopping rungs as fractions of --steps (default: "
                            f"{' '.join(f'{r:.2f}' for r in DEFAULT_RUNGS)}; none: no early stopping)")
    group.add_argument("--prune-margin", type=float,
                       help=f"loss margin (nats) by which a cheaper trial must lead at the rung at 2/3 of "
                            f"the steps to stop this one; earlier rungs scale it by (2/3)/fraction, since "
                            f"gaps narrow with training (default: {DEFAULT_PRUNE_MARGIN})")
    shape = parser.add_argument_group("shape: context length, and the paper presets run as baselines")
    add_shape_arguments(shape)
    add_data_arguments(parser)
    add_training_arguments(parser, SEARCH_RECIPE, "proxy training recipe of every trial")
    run = parser.add_argument_group("this process")
    until = "no limit: until --max-complete or Ctrl-C" if default_trials >= WORKER_TRIALS else str(default_trials)
    run.add_argument("--trials", type=int, default=default_trials,
                     help=f"trials this process trains; repeats and infeasible samples are free (default: {until})")
    run.add_argument("--max-complete", type=int, help="every process stops once the study holds N complete trials")
    run.add_argument("--no-presets", action="store_true", help="do not enqueue the paper's four models first")
    run.add_argument("--keep-checkpoints", choices=("none", "front", "all"), default="none",
                     help="keep trial weights: none (default), those on the front, or all")
    run.add_argument("--promote-steps", type=int, metavar="S2",
                     help="afterwards, retrain the front from scratch for S2 steps (study NAME@S2)")
    run.add_argument("--top", type=int, metavar="K", help="with --promote-steps: " + TOP_HELP)
    run.add_argument("--gap-trials", type=int, metavar="N", help="with --promote-steps: " + GAP_HELP)


@command("search", "run a multi-objective architecture search (with no flags: a small study on the built-in corpus)")
def search_arguments(parser: argparse.ArgumentParser) -> None:
    add_search_arguments(parser, default_trials=12)
    parser.set_defaults(run=run_search)


@command("worker", "join a study from another process or machine (creating it if needed) and run trials")
def worker_arguments(parser: argparse.ArgumentParser) -> None:
    add_search_arguments(parser, default_trials=WORKER_TRIALS)
    parser.set_defaults(run=run_search)


def requested_settings(args: argparse.Namespace, base: StudySettings | None) -> dict[str, Any]:
    """The settings fields the user asked for explicitly, over `base` (a stored study) or defaults."""
    explicit: dict[str, Any] = {}
    if args.objectives:
        check_objectives(tuple(args.objectives))
        explicit["objectives"] = tuple(args.objectives)
    if args.space:
        explicit["space"] = load_space(args.space).to_dict()
    for name, flag in (("data", "data"), ("tokenizer", "tokenizer"), ("text_column", "text_column"),
                       ("sampler", "sampler"), ("seed", "sampler_seed"), ("block_size", "block_size")):
        if getattr(args, flag, None) is not None:
            explicit[name] = getattr(args, flag)
    if "data" in explicit and Path(explicit["data"]).exists():
        # A local corpus is stored by absolute path: workers started elsewhere find the same file.
        explicit["data"] = str(Path(explicit["data"]).resolve())
    shape = {k: getattr(args, k) for k in ("n_layer", "n_head", "d_model") if getattr(args, k) is not None}
    if shape:
        explicit["preset_shape"] = {**(base.preset_shape if base else _default_shape()), **shape}
    recipe = explicit_recipe(args)
    if recipe:
        explicit["recipe"] = {**(base.recipe if base else SEARCH_RECIPE.to_dict()), **recipe}
    constraints = {k: getattr(args, k) for k in ("max_params", "max_flops", "max_latency_ms") if getattr(args, k) is not None}
    if constraints:
        explicit["constraints"] = constraints
    if args.latency_mode:
        explicit["latency"] = {**(base.latency if base else LatencyProtocol().to_dict()), "mode": args.latency_mode}
    pruning = {}
    if args.rungs is not None:
        if any(not 0 < rung < 1 for rung in args.rungs):
            raise StudyError(f"--rungs: {args.rungs} must be fractions of the steps, between 0 and 1")
        pruning["rungs"] = args.rungs
    if args.prune_margin is not None:
        if args.prune_margin < 0:
            raise StudyError(f"--prune-margin: {args.prune_margin} must not be negative")
        pruning["margin"] = args.prune_margin
    if pruning:
        explicit["pruning"] = {**(base.pruning if base else _default_pruning()), **pruning}
    return explicit


def _default_shape() -> dict[str, int]:
    return {k: SEARCH_SHAPE[k] for k in ("n_layer", "n_head", "d_model")}


def _default_pruning() -> dict[str, Any]:
    return {"rungs": list(DEFAULT_RUNGS), "margin": DEFAULT_PRUNE_MARGIN}


def _new_settings(explicit: dict[str, Any]) -> StudySettings:
    defaults: dict[str, Any] = {
        "objectives": DEFAULT_OBJECTIVES, "space": load_space().to_dict(), "data": DEFAULT_DATA_SPEC,
        "tokenizer": "char", "text_column": "text", "content_hash": "", "block_size": SEARCH_SHAPE["block_size"],
        "preset_shape": _default_shape(), "recipe": SEARCH_RECIPE.to_dict(), "constraints": {},
        "latency": LatencyProtocol().to_dict(), "pruning": _default_pruning(), "sampler": "tpe", "seed": None,
    }
    return StudySettings(**{**defaults, **explicit})


def run_search(args: argparse.Namespace, console: Console) -> None:
    if args.trials < 0:
        raise StudyError(f"--trials: {args.trials} must not be negative")
    if args.top is not None and (args.top < 1 or not args.promote_steps):
        raise StudyError(f"--top {args.top}: needs --promote-steps and at least one trial to promote")
    if args.gap_trials is not None and not args.promote_steps:
        raise StudyError(f"--gap-trials {args.gap_trials}: needs --promote-steps (gap trials run at the longer budget)")
    backend = open_storage(args.storage)
    try:
        stored = read_settings(load_existing(args.study, backend))
    except StudyError:
        stored = None  # a new study (or one another worker is creating right now)
    explicit = requested_settings(args, stored)
    settings = replace(stored, **explicit) if stored else _new_settings(explicit)
    TrainingRecipe(**settings.recipe)  # validate the recipe before any data is read
    data = prepare_data(settings.data, settings.tokenizer, text_column=settings.text_column)
    if not stored:
        settings = replace(settings, content_hash=data.content_hash)
    study, settings = open_study(args.study, args.storage, settings, enqueue_presets=not args.no_presets)
    device = resolve_device(args.device)
    _run(study, settings, data, device, args.trials, args.max_complete, args, console)
    if args.promote_steps:
        study, settings = _promote_and_run(args, args.promote_steps, data, device, console)
    console.print(front_table(front_trials(study, settings), settings, title=f"Pareto front of {study.study_name!r} "
                              f"({settings.steps} steps, {count_complete(study)} complete trials)"))
    where = f"--study {args.study} --storage {args.storage}"
    console.print("\n".join([
        "Next:",
        f"  more trials             decoder-nas search {where} --trials N",
        f"  more machines           decoder-nas worker {where}   (with a postgresql:// storage)",
        f"  train the front longer  decoder-nas promote {where} --steps 2000",
        f"  look at the front       decoder-nas pareto {where} --html front.html",
        f"  take one away           decoder-nas export {where} --pick knee -o best.yaml",
    ]))


def _promote_and_run(args: argparse.Namespace, steps: int, data: Any, device: Any,
                     console: Console) -> tuple[optuna.Study, StudySettings]:
    gap_trials = DEFAULT_GAP_TRIALS if args.gap_trials is None else args.gap_trials
    if gap_trials < 0:
        raise StudyError(f"--gap-trials {gap_trials}: must not be negative")
    sibling, settings, added = promote(args.study, args.storage, steps, args.top)
    if data is None:
        data = prepare_data(settings.data, settings.tokenizer, text_column=settings.text_column)
    waiting = len(sibling.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)))
    gaps_to_go = max(gap_trials - gap_trials_in(sibling), 0)
    console.print(f"promoting {added} architectures to {steps} steps in study {sibling.study_name!r} "
                  f"({waiting} queued with the presets), then up to {gaps_to_go} gap trials")
    _run(sibling, settings, data, device, waiting + gaps_to_go, None, args, console, queued_only=True,
         gap_trials=gap_trials)
    return sibling, settings


def _run(study: optuna.Study, settings: StudySettings, data: Any, device: Any, trials: int,
         max_complete: int | None, args: argparse.Namespace, console: Console, queued_only: bool = False,
         gap_trials: int = 0) -> None:
    checkpoints = None
    if args.keep_checkpoints != "none":
        root = Path(args.storage).resolve().parent if "://" not in args.storage else Path.cwd()
        checkpoints = root / "checkpoints" / study.study_name
    with LiveReporter(study, settings.objectives, trials if trials < WORKER_TRIALS else None) as reporter:
        summary = run_worker(study, settings, data, device, trials, max_complete, args.storage, checkpoints, reporter,
                             queued_only, gap_trials)
    if checkpoints is not None and args.keep_checkpoints == "front":
        keep_front_checkpoints(study, settings, checkpoints)
    if summary.exhausted:
        console.print(f"stopped early: the sampler proposed {MAX_CONSECUTIVE_REPEATS} architectures in a row that "
                      "the study had already trained (their results were reused); the space looks exhausted")
    console.print(f"{summary.trials_run} trials trained here; study {study.study_name!r} holds "
                  f"{summary.complete_in_study} complete trials")


@command("promote", "retrain a study's front from scratch with a longer budget (in sibling study NAME@STEPS), "
                    "then fill its widest cost gaps with gap trials")
def promote_arguments(parser: argparse.ArgumentParser) -> None:
    add_study_arguments(parser)
    parser.add_argument("--steps", type=int, required=True, help="the longer budget in steps")
    parser.add_argument("--top", type=int, metavar="K", help=TOP_HELP)
    parser.add_argument("--gap-trials", type=int, metavar="N", help=GAP_HELP)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--keep-checkpoints", choices=("none", "front", "all"), default="none")
    parser.set_defaults(run=run_promote)


def run_promote(args: argparse.Namespace, console: Console) -> None:
    _promote_and_run(args, args.steps, None, resolve_device(args.device), console)
