"""`pareto`, `export`, `dashboard` and `studies`: look at results and take one away."""

from __future__ import annotations

import argparse
import json
import os
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

from optuna.trial import FrozenTrial
from rich.console import Console
from rich.table import Table

from ...api import Search, delete_study, list_studies, serve_dashboard
from ...errors import StudyError
from ...fronts.front import PICKS, promotion_agreement
from ...measures import OBJECTIVES, quality_objective
from ...storage.backends import check_storage, display_storage
from ...workers.trial_record import study_counts
from ..arguments import add_artifacts_argument, add_device_argument, add_study_arguments
from ..progress import STDERR
from ..registry import command
from ..views import front_table, front_title

if TYPE_CHECKING:
    from ...export.model_export import Takeaway


@command("pareto")
def pareto_arguments(parser: argparse.ArgumentParser) -> None:
    add_study_arguments(parser)
    parser.add_argument("--steps", type=int, help="the budget to read (default: the longest with results)")
    parser.add_argument("--json", action="store_true", help="print the front as a JSON list")
    parser.add_argument("--html", type=Path, metavar="FILE", help="write an interactive plotly front to FILE")
    parser.set_defaults(run=run_pareto)


def run_pareto(args: argparse.Namespace, console: Console) -> None:
    search = Search.open(args.study, args.storage, args.steps)
    if args.json:
        print(json.dumps([point.to_dict() for point in search.front()]))
        return
    front, settings = require_front(search, "show"), search.settings
    if args.html:
        from ..plots import write_front_html  # plotly: imported only when drawn

        write_front_html(search, args.html)
        console.print(f"wrote {args.html}")
    console.print(front_table(front, settings, front_title(search)))
    hypervolume = search.hypervolume()
    if hypervolume is not None:
        console.print(f"hypervolume {hypervolume:.4f}: the share of the box up to 1.1 that this front dominates, each "
                      "objective scaled to [0, 1] over this front's own range (so budgets are not compared by it)")
    if search.name != args.study:  # a promoted budget: how well did the short one choose?
        _print_promotion_agreement(Search.load(args.study, args.storage), search, console)


def require_front(search: Search, to: str) -> list[FrozenTrial]:
    """The study's front, or one line saying it has none yet (its trials counted) and what to run."""
    front = search.front_trials()
    if front:
        return front
    base, _, steps = search.name.partition("@")
    where = f"--study {shlex.quote(base)} --storage {shlex.quote(display_storage(search.storage))}"
    run = f"decoder-nas promote {where} --steps {steps}" if steps else f"decoder-nas search {where}"
    raise StudyError(f"study {search.name!r} has no complete trials to {to} yet "
                     f"({study_counts(search.view.get_trials(deepcopy=False))}); run `{run}`")


def _print_promotion_agreement(short: Search, long: Search, console: Console) -> None:
    quality = quality_objective(long.settings.objectives) or "val_loss"  # val_loss is measured in every study
    agreement = promotion_agreement(short.study, long.study, quality)
    if agreement is not None:
        tau, count = agreement
        console.print(f"the {short.settings.steps}-step proxy ranked the {count} promoted architectures at "
                      f"Kendall τ {tau:.2f} on {quality} against {long.settings.steps} steps (1 = the same order; "
                      "a low τ says promote more with --top)")


@command("measure")
def measure_arguments(parser: argparse.ArgumentParser) -> None:
    add_study_arguments(parser)
    parser.add_argument("--steps", type=int, help="the budget whose front to re-time (default: the longest with results)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="interleaved rounds: each times every model for its share of the repeats (default: 5)")
    add_device_argument(parser)
    parser.set_defaults(run=run_measure)


def run_measure(args: argparse.Namespace, console: Console) -> None:
    search = Search.open(args.study, args.storage, args.steps)
    require_front(search, "re-time")
    print_joint_latency(search, search.measure(args.rounds, args.device), args.rounds, console)


def print_joint_latency(search: Search, latencies: dict[int, float], rounds: int, console: Console) -> None:
    console.print(retimed_line(search, latencies) + f" of {search.name!r} ({rounds} interleaved rounds, "
                  f"{search.settings.latency.backend}): the front and export now use these latencies; each trial "
                  "keeps its own as latency_ms_trial", soft_wrap=True)
    console.print(front_table(search.front_trials(), search.settings, front_title(search)))


def retimed_line(search: Search, latencies: dict[int, float]) -> str:
    """What was re-timed, counted as the front shows it: architectures (a repeat shares its twin's model)."""
    hashes = {t.number: t.user_attrs.get("arch_hash") for t in search.study.get_trials(deepcopy=False)}
    timed = {hashes[number] for number in latencies}
    front = {t.user_attrs.get("arch_hash") for t in search.front_trials()}
    others = len(timed - front)
    return (f"re-timed {len(timed)} architectures together: the {len(front)} on the front"
            + (f" and {others} preset{'s' if others != 1 else ''} off it" if others else ""))


@command("export")
def export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_folder", nargs="?", type=Path, metavar="RUN",
                        help="export the trained model of a run folder (`train --out RUN`) instead of a study "
                             "trial: give --hf and/or --onnx")
    add_study_arguments(parser)
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--trial", type=int, help="a trial number")
    which.add_argument("--pick", choices=PICKS, help="knee: the front point nearest the ideal after "
                       "normalising each objective over the front; or the best on one measure")
    parser.add_argument("--steps", type=int, help="the budget to pick from (default: the longest with results)")
    parser.add_argument("-o", "--output", type=Path, help="config file to write (.yaml or .json); needed with "
                        "--trial/--pick")
    add_artifacts_argument(parser)
    parser.add_argument("--hf", type=Path, metavar="DIR",
                        help="also write a new folder that Hugging Face transformers loads (AutoModelForCausalLM, "
                             "pipeline): model, tokenizer, model card (pip install -e '.[hf]')")
    parser.add_argument("--onnx", type=Path, metavar="FILE",
                        help="also write the model as ONNX, batch and sequence dynamic, checked against PyTorch "
                             "in ONNX Runtime (pip install -e '.[onnx]')")
    parser.add_argument("--untrained", action="store_true",
                        help="allow --onnx with random weights when the study kept none (latency work only)")
    parser.set_defaults(run=run_export)


def run_export(args: argparse.Namespace, console: Console) -> None:
    if args.run_folder is not None:
        _export_run_folder(args, console)
        return
    if args.trial is None and args.pick is None:
        raise StudyError("give --trial N or --pick CHOICE (a study trial), or a run folder")
    if args.output is None:
        raise StudyError("give -o FILE: the config to write")
    if args.output.suffix.lower() not in (".yaml", ".yml", ".json") and not _is_folder(args.output):
        raise StudyError(f"-o {args.output}: give a .yaml or .json file name")
    overwrites = os.path.lexists(args.output)  # the export checks the path itself
    search = Search.open(args.study, args.storage, args.steps, artifacts=args.artifacts)
    done = search.export(args.pick or "knee", trial=args.trial, path=args.output, onnx=args.onnx, hf=args.hf,
                         untrained=args.untrained)
    metrics = ", ".join(f"{name} {OBJECTIVES[name].format(value)}" for name, value in done.metrics.items())
    console.print(f"wrote {args.output}{' (overwritten)' if overwrites else ''}: trial {done.trial.number} "
                  f"({done.trial.user_attrs.get('summary')}), {metrics}")
    console.print(f"reproduce its {search.settings.steps}-step result: decoder-nas train {args.output}")
    if done.weights is not None:
        console.print(f"weights: {done.weights} (`decoder-nas generate {done.weights}`)")
    if done.takeaway is not None:
        _print_takeaway(done.takeaway, console)


def _is_folder(path: Path) -> bool:
    try:
        return path.is_dir()
    except (OSError, ValueError):  # a name too long: the export says so
        return False


def _export_run_folder(args: argparse.Namespace, console: Console) -> None:
    given = [flag for flag, value in (("--trial", args.trial), ("--pick", args.pick), ("-o", args.output))
             if value is not None]
    if given:
        raise StudyError(f"{given[0]}: picks from a study; a run folder ({args.run_folder}) holds one model "
                         "and its config.yaml already")
    from ...export.model_export import export_run  # loads torch

    _print_takeaway(export_run(args.run_folder, hf=args.hf, onnx=args.onnx, untrained=args.untrained), console)


def _print_takeaway(takeaway: Takeaway, console: Console) -> None:
    if takeaway.hf is not None:
        from ...export.remote_code import CLASS as REMOTE_CLASS  # loads torch, as the export just did

        remote = takeaway.hf_class == REMOTE_CLASS
        console.print(f"Hugging Face: {takeaway.hf} ({takeaway.hf_class}; AutoModelForCausalLM.from_pretrained("
                      f"{str(takeaway.hf)!r}{', trust_remote_code=True' if remote else ''}))", soft_wrap=True)
    if takeaway.onnx is not None:
        weights = "trained weights" if takeaway.trained else "UNTRAINED random weights, for latency work"
        console.print(f"ONNX: {takeaway.onnx} ({weights}; ONNX Runtime's logits within "
                      f"{takeaway.onnx_difference:.1e} of PyTorch's at batch 1 and 4)")


@command("dashboard")
def dashboard_arguments(parser: argparse.ArgumentParser) -> None:
    add_study_arguments(parser, study=False)  # the dashboard shows every study in the storage
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to serve on (default: 127.0.0.1, this machine only; 0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=8080, help="port to serve on (default: 8080)")
    add_artifacts_argument(parser)
    parser.set_defaults(run=run_dashboard)


def run_dashboard(args: argparse.Namespace, console: Console) -> None:
    check_storage(args.storage, create=False)  # a missing storage is refused before the banner
    console.print(f"optuna-dashboard on http://{args.host}:{args.port} for {display_storage(args.storage)} "
                  "(Ctrl-C stops)")
    serve_dashboard(args.storage, host=args.host, port=args.port, artifacts=args.artifacts)


@command("studies")
def studies_arguments(parser: argparse.ArgumentParser) -> None:
    add_study_arguments(parser)
    parser.add_argument("--delete", metavar="NAME", help="delete study NAME, all its trials and their kept weights")
    add_artifacts_argument(parser)
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(run=run_studies)


def run_studies(args: argparse.Namespace, console: Console) -> None:
    if args.delete:
        done = delete_study(args.delete, args.storage, args.artifacts)
        notes = [f"{done.running} trial{' was' if done.running == 1 else 's were'} running: their workers stop at "
                 "their next write"] if done.running else []
        if done.weights_removed:
            notes.append(f"the kept weights of {done.weights_removed} trial{'s' if done.weights_removed != 1 else ''} "
                         "removed from the artifact store")
        console.print(f"deleted study {args.delete!r}" + (f" ({'; '.join(notes)})" if notes else ""), soft_wrap=True)
        if done.weights_left:
            STDERR.print(f"warning: {done.weights_left}", soft_wrap=True)
        return
    rows = list_studies(args.storage)
    if args.json:
        print(json.dumps(rows))
        return
    table = Table(title=f"studies in {display_storage(args.storage)}")
    for column in ("study", "trials", "complete", "steps", "objectives", "data"):
        table.add_column(column)
    for row in rows:
        table.add_row(*(", ".join(v) if isinstance(v, list) else str(v) for v in row.values()))
    console.print(table)
