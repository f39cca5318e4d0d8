"""Trials per hour of the default search with --jobs 1, 2, ... worker processes on this machine.

    python benchmarks/jobs.py [--steps 60] [--trials 4] [--jobs 1 2 1 2] [--device cpu]

Each run is a fresh study of the default search (shipped space, built-in corpus, presets first,
early stopping) in a temporary journal, created here, then run by studies.workers.jobs.run_jobs with `--trials`
trials per job, timed from launch to the last job's exit (process start-up included: --jobs pays it too).
Runs alternate in the order given, so load from other processes on the machine falls on every
setting alike; each run's load average is printed with it. Ratios are against the mean of the
--jobs 1 runs.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import resource
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import TrialState
from rich.console import Console
from rich.table import Table

from studies import Search
from studies.storage.backends import open_storage
from studies.workers.jobs import JobSpec, run_jobs
from studies.workers.trial_record import trained
from trainer import DEFAULT_DATA_SPEC, prepare_data

STUDY = "bench"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


@dataclass
class Run:
    jobs: int
    trained: int
    seconds: float
    cpu_seconds: float  # the jobs' user + system time: what a trial costs in cores, whatever the load
    load: float  # the 1-minute load average when the run ended

    @property
    def per_hour(self) -> float:
        return self.trained / self.seconds * 3600


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=60, help="training steps per trial (default: %(default)s)")
    parser.add_argument("--trials", type=int, default=4, help="trials per job (default: %(default)s)")
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2, 1, 2], help="the runs, in order "
                        "(default: %(default)s)")
    parser.add_argument("--device", default="cpu", help="every job's device (default: %(default)s)")
    return parser.parse_args()


def timed_run(jobs: int, trials: int, steps: int, device: str) -> Run:
    with tempfile.TemporaryDirectory() as folder:
        storage = str(Path(folder) / "study.journal")
        settings = Search.create(STUDY, storage, recipe={"steps": steps}).settings.to_dict()
        start, cpu_start = time.perf_counter(), children_cpu_seconds()
        code = run_jobs(JobSpec(STUDY, storage, settings), jobs, trials * jobs, [device]).exit_code  # quiet
        seconds, cpu_seconds = time.perf_counter() - start, children_cpu_seconds() - cpu_start
        if code:
            raise SystemExit(f"--jobs {jobs} failed with exit code {code}")
        study = optuna.load_study(study_name=STUDY, storage=open_storage(storage))
        finished = study.get_trials(deepcopy=False, states=FINISHED)  # presets not reached still wait
        return Run(jobs, sum(trained(t) for t in finished), seconds, cpu_seconds, os.getloadavg()[0])


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    args = parse_args()
    prepare_data(DEFAULT_DATA_SPEC, "char")  # the corpus cache is built once, before any timed run
    console = Console(width=120)  # the table whole, in a log too
    console.print(f"{datetime.date.today()} · {platform.processor() or platform.machine()} · {os.cpu_count()} "
                  f"cores · --steps {args.steps} --trials {args.trials} per job · load before: "
                  f"{os.getloadavg()[0]:.2f}")
    runs = []
    for jobs in args.jobs:
        runs.append(timed_run(jobs, args.trials, args.steps, args.device))
        console.print(f"  --jobs {jobs}: {runs[-1].trained} trials in {runs[-1].seconds:.1f} s")
    baseline = statistics.mean(run.per_hour for run in runs if run.jobs == 1)
    table = Table(title=f"trials per hour of the default search, --steps {args.steps}, {args.trials} trials per job")
    for column in ("run", "--jobs", "trials", "seconds", "trials/hour", "vs --jobs 1", "CPU s/trial", "load (1 min)"):
        table.add_column(column, justify="right")
    for number, run in enumerate(runs, 1):
        table.add_row(str(number), str(run.jobs), str(run.trained), f"{run.seconds:.1f}", f"{run.per_hour:.0f}",
                      f"{run.per_hour / baseline:.2f}x", f"{run.cpu_seconds / run.trained:.1f}", f"{run.load:.2f}")
    console.print(table)


if __name__ == "__main__":
    main()
