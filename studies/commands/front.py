"""`pareto`, `export`, `dashboard` and `studies`: look at results and take one away."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import optuna
from optuna.trial import TrialState
from rich.console import Console
from rich.table import Table

from search_space import config_from_dict, save_config

from ..errors import StudyError
from ..front import PICKS, front_trials, hypervolume_history, normaliser_for, pick, study_at_budget
from ..registry import command
from ..evidence import promotion_agreement
from ..storage import load_existing
from ..settings import SETTINGS_KEY, StudySettings, quality_objective, read_settings
from ..storage import open_storage
from ..views import front_table
from .study import add_study_arguments

MEASURES = ("val_loss", "val_accuracy", "flops_per_token", "params", "latency_ms")


@command("pareto", "show a study's Pareto front (table, --json, or an interactive --html page)")
def pareto_arguments(parser: argparse.ArgumentParser) -> None:
    add_study_arguments(parser)
    parser.add_argument("--steps", type=int, help="the budget to read (default: the longest with results)")
    parser.add_argument("--json", action="store_true", help="print the front as a JSON list")
    parser.add_argument("--html", type=Path, metavar="FILE", help="write an interactive plotly front to FILE")
    parser.set_defaults(run=run_pareto)


def front_records(front: list[optuna.trial.FrozenTrial], steps: int) -> list[dict]:
    return [{"number": t.number, "steps": steps,
             **{m: t.user_attrs[m] for m in MEASURES if m in t.user_attrs},
             "preset": t.user_attrs.get("preset"), "summary": t.user_attrs.get("summary"),
             "config": t.user_attrs.get("config")} for t in front]


def run_pareto(args: argparse.Namespace, console: Console) -> None:
    storage = open_storage(args.storage, create=False)
    study, settings = study_at_budget(args.study, storage, args.steps)
    front = front_trials(study, settings)
    if args.json:
        print(json.dumps(front_records(front, settings.steps)))
        return
    if args.html:
        from ..plots import write_front_html

        write_front_html(study, settings, front, args.html)
        console.print(f"wrote {args.html}")
    console.print(front_table(front, settings, f"Pareto front of {study.study_name!r} ({settings.steps} steps)"))
    if front and len(settings.objectives) > 1:
        normalise = normaliser_for(settings.objectives, [t.values for t in front])
        history = hypervolume_history(study, settings.objectives, normalise)
        console.print(f"hypervolume {history[-1][1]:.4f} (objectives normalised over the front, reference 1.1)")
    if study.study_name != args.study:  # a promoted budget: how well did the short one choose?
        _print_promotion_agreement(load_existing(args.study, storage), study, settings, console)


def _print_promotion_agreement(short: optuna.Study, long: optuna.Study, settings: StudySettings,
                               console: Console) -> None:
    quality = quality_objective(settings.objectives) or "val_loss"  # val_loss is measured in every study
    agreement = promotion_agreement(short, long, quality)
    if agreement is not None:
        tau, count = agreement
        console.print(f"the {read_settings(short).steps}-step proxy ranked the {count} promoted architectures at "
                      f"Kendall τ {tau:.2f} on {quality} against {settings.steps} steps (1 = the same order; "
                      "a low τ says promote more with --top)")


@command("export", "write a front architecture as a config that describe and train accept unchanged")
def export_arguments(parser: argparse.ArgumentParser) -> None:
    add_study_arguments(parser)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--trial", type=int, help="a trial number")
    which.add_argument("--pick", choices=PICKS, help="knee: the front point nearest the ideal after "
                       "normalising each objective over the front; or the best on one measure")
    parser.add_argument("--steps", type=int, help="the budget to pick from (default: the longest with results)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="config file to write (.yaml or .json)")
    parser.set_defaults(run=run_export)


def run_export(args: argparse.Namespace, console: Console) -> None:
    study, settings = study_at_budget(args.study, open_storage(args.storage, create=False), args.steps)
    if args.trial is not None:
        matches = [t for t in study.get_trials(deepcopy=False) if t.number == args.trial]
        if not matches:
            raise StudyError(f"--trial {args.trial}: study {study.study_name!r} has no such trial "
                             f"(it has {len(study.get_trials(deepcopy=False))})")
        trial = matches[0]
        if trial.state != TrialState.COMPLETE:
            raise StudyError(f"--trial {args.trial}: the trial is {trial.state.name.lower()}, not complete")
    else:
        trial = pick(front_trials(study, settings), settings.objectives, args.pick)
    metrics = {m: trial.user_attrs[m] for m in MEASURES if m in trial.user_attrs}
    provenance = {"study": study.study_name, "trial": trial.number, "steps": settings.steps,
                  "arch_hash": trial.user_attrs["arch_hash"], "data": settings.data,
                  "content_hash": settings.content_hash, "metrics": metrics}
    if args.pick:
        provenance["pick"] = args.pick
    config = config_from_dict(trial.user_attrs["config"]).replace(provenance=provenance)
    save_config(config, args.output)
    console.print(f"wrote {args.output}: trial {trial.number} ({trial.user_attrs.get('summary')}), "
                  + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
    checkpoint = trial.user_attrs.get("checkpoint")
    if checkpoint and Path(checkpoint).is_dir():
        weights = args.output.with_suffix("").with_name(args.output.stem + "-checkpoint")
        shutil.copytree(checkpoint, weights, dirs_exist_ok=True)
        console.print(f"weights: {weights} (`decoder-nas generate {weights}`)")


@command("dashboard", "open optuna-dashboard on a study storage")
def dashboard_arguments(parser: argparse.ArgumentParser) -> None:
    add_study_arguments(parser)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.set_defaults(run=run_dashboard)


def run_dashboard(args: argparse.Namespace, console: Console) -> None:
    from optuna_dashboard import run_server

    storage = open_storage(args.storage, create=False)
    console.print(f"optuna-dashboard on http://{args.host}:{args.port} for {args.storage} (Ctrl-C stops)")
    run_server(storage, host=args.host, port=args.port)


@command("studies", "list the studies in a storage (trials, front size, settings), or delete one")
def studies_arguments(parser: argparse.ArgumentParser) -> None:
    add_study_arguments(parser)
    parser.add_argument("--delete", metavar="NAME", help="delete study NAME and all its trials")
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(run=run_studies)


def run_studies(args: argparse.Namespace, console: Console) -> None:
    storage = open_storage(args.storage, create=False)
    if args.delete:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        if args.delete not in names:
            raise StudyError(f"--delete: unknown study {args.delete!r} (this storage has: {', '.join(names) or 'none'})")
        optuna.delete_study(study_name=args.delete, storage=storage)
        console.print(f"deleted study {args.delete!r}")
        return
    rows = []
    for summary in optuna.get_all_study_summaries(storage):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        states = [t.state for t in study.get_trials(deepcopy=False)]
        row = {"study": summary.study_name, "trials": len(states), "complete": states.count(TrialState.COMPLETE),
               "front": None, "steps": None, "objectives": [], "data": "(not a decoder-nas study)"}
        if SETTINGS_KEY in study.user_attrs:
            settings = read_settings(study)
            row.update(front=len(front_trials(study, settings)), steps=settings.steps,
                       objectives=list(settings.objectives), data=settings.data)
        rows.append(row)
    if args.json:
        print(json.dumps(rows))
        return
    table = Table(title=f"studies in {args.storage}")
    for column in ("study", "trials", "complete", "front", "steps", "objectives", "data"):
        table.add_column(column)
    for row in rows:
        table.add_row(*(", ".join(v) if isinstance(v, list) else str(v) for v in row.values()))
    console.print(table)
