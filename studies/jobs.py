"""`search --jobs N`: N worker processes on one machine sharing one study, watched in one live view.

Each job is `decoder-nas worker ARGV --trials T --device D` in a process of its own, the call's
trials shared out between them as Optuna's optimize(n_trials, n_jobs) counts them: for the whole call. The study's
storage is all they share (a journal file is safe for several processes on one machine), so trial
numbers never collide. The parent launches the jobs, shows their trials as they finish, and stops
them all on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO

from rich.console import Console

from trainer.threads import job_threads

from .errors import StudyError
from .cli.progress import STDERR, progress_bar

STOP_SECONDS = 15.0  # how long a stopped job may take to record its interrupted trial before it is killed
ERROR_LINES = 20  # the last stderr lines kept per job, to say why it failed
# A finished trial's line (live.trial_line) is "trial N STATE ...": these states cost training,
# reused repeats and infeasible samples do not (trials.trained).
TRAINED_LINE = re.compile(r"trial \d+ (complete|pruned|fail)\b")
EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}  # the shell's 128 + signal number


@dataclass
class Job:
    number: int  # from 1, as the user reads it
    device: str
    process: subprocess.Popen[str]
    last_lines: deque[str] = field(default_factory=lambda: deque(maxlen=ERROR_LINES))
    trained: Counter[str] = field(default_factory=Counter)  # by state: complete, pruned, fail

    @property
    def exit_code(self) -> int:
        code = self.process.returncode
        return 128 - code if code < 0 else code  # killed by signal S: Popen says -S, the shell 128 + S


@dataclass
class StopRequest:
    signals: list[int] = field(default_factory=list)


def job_devices(jobs: int, devices: Sequence[str] | None) -> list[str]:
    """Round-robin: --jobs 8 --devices cuda:0,cuda:1 puts four jobs on each GPU."""
    devices = list(devices or ["auto"])
    return [devices[i % len(devices)] for i in range(jobs)]


def device_view(device: str, environ: dict[str, str]) -> tuple[str, dict[str, str]]:
    """A job on a GPU sees that GPU alone, as cuda:0: nothing it runs opens a context on another GPU
    or times a stream other than its own. Returns (the job's --device, what its environment adds);
    an index beyond CUDA_VISIBLE_DEVICES is passed on unchanged for the worker to refuse."""
    match = re.fullmatch(r"cuda(?::(\d+))?", device.strip())
    if match is None:
        return device, {}
    index = int(match.group(1) or 0)
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return "cuda:0", {"CUDA_VISIBLE_DEVICES": str(index)}
    entries = [entry.strip() for entry in visible.split(",") if entry.strip()]
    return ("cuda:0", {"CUDA_VISIBLE_DEVICES": entries[index]}) if index < len(entries) else (device, {})


def job_environment(jobs: int) -> dict[str, str]:
    return {**os.environ, **job_threads(jobs)}


@dataclass(frozen=True)
class JobsResult:
    exit_code: int  # 0: every job succeeded; 130 after Ctrl-C, 143 after SIGTERM; else the first failure's
    trained: int  # trials trained by all jobs together


def run_jobs(worker_argv: Sequence[str], jobs: int, trials: int, devices: Sequence[str] | None = None,
             console: Console | None = None) -> JobsResult:
    """Run `jobs` workers on the study `worker_argv` names, training `trials` trials between them, and wait.
    Call it from the main thread: it handles SIGINT and SIGTERM while it runs."""
    if jobs < 1:
        raise StudyError(f"--jobs: {jobs} must be at least 1")
    if trials < 0:
        raise StudyError(f"--trials: {trials} must not be negative")
    console = console or STDERR
    lines: queue.Queue[tuple[Job, str | None]] = queue.Queue()
    started: list[Job] = []
    with _recorded_stop_signals() as stop:
        try:
            env = job_environment(jobs)
            for number, device in enumerate(job_devices(jobs, devices), 1):
                share = trials // jobs + (number <= trials % jobs)
                if share or number == 1:  # --trials 1 --jobs 2 needs one process
                    started.append(_start(number, device, worker_argv, share, env, lines))
            _watch(started, lines, trials, stop, console)
        finally:
            for job in started:  # only left running if the watch itself broke
                job.process.kill()
                job.process.wait()
    return _report(started, stop, console)


def _start(number: int, device: str, worker_argv: Sequence[str], trials: int, env: dict[str, str],
           lines: queue.Queue[tuple[Job, str | None]]) -> Job:
    job_device, visible = device_view(device, env)
    env = {**env, **visible}
    argv = [sys.executable, "-m", "studies", "worker", *worker_argv, "--trials", str(trials), "--device", job_device]
    # Off a terminal the worker prints one line per finished trial on stderr; stdout holds its front
    # table, which the caller prints once for the whole study. A session of its own: a Ctrl-C at the
    # terminal reaches the parent only, which forwards it once.
    process = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, errors="replace", start_new_session=True)
    job = Job(number, device, process)
    threading.Thread(target=_read_lines, args=(job, process.stderr, lines), daemon=True).start()
    return job


def _read_lines(job: Job, stream: IO[str], lines: queue.Queue[tuple[Job, str | None]]) -> None:
    for line in stream:
        lines.put((job, line.rstrip("\n")))
    lines.put((job, None))  # the job closed stderr: it has exited


def _watch(jobs: list[Job], lines: queue.Queue[tuple[Job, str | None]], total: int, stop: StopRequest,
           console: Console) -> None:
    """Show every job's lines, prefixed, under one bar of trials trained, until all jobs exit."""
    running, forwarded, deadline = len(jobs), 0, float("inf")
    with progress_bar(console) as bar:
        task = bar.add_task("trials", total=total, status=f"{len(jobs)} jobs")
        while running:
            if len(stop.signals) > forwarded:
                forwarded, deadline = _stop_jobs(jobs, forwarded, deadline)
            if time.monotonic() > deadline:
                for job in jobs:
                    job.process.kill()
            try:
                job, line = lines.get(timeout=0.2)
            except queue.Empty:
                continue
            if line is None:
                running -= 1
                job.process.wait()
                continue
            job.last_lines.append(line)
            trained = TRAINED_LINE.match(line)
            if trained:
                job.trained[trained[1]] += 1
                bar.advance(task)
            console.print(f"[job {job.number}] {line}", markup=False, highlight=False, soft_wrap=True)


def _stop_jobs(jobs: list[Job], forwarded: int, deadline: float) -> tuple[int, float]:
    """The first Ctrl-C or SIGTERM interrupts every job, the next kills them.

    SIGINT either way: the worker then records its interrupted trial as failed, so none stays RUNNING.
    """
    if forwarded:
        return forwarded + 1, 0.0
    for job in jobs:
        job.process.send_signal(signal.SIGINT)
    return 1, time.monotonic() + STOP_SECONDS


@contextlib.contextmanager
def _recorded_stop_signals() -> Iterator[StopRequest]:
    """Ctrl-C and SIGTERM are recorded, not raised: the watch loop passes them on to the jobs."""
    stop = StopRequest()
    previous = {number: signal.signal(number, lambda received, frame: stop.signals.append(received))
                for number in EXIT_CODES}
    try:
        yield stop
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _report(jobs: list[Job], stop: StopRequest, console: Console) -> JobsResult:
    states = sum((job.trained for job in jobs), Counter())
    trained = sum(states.values())
    if stop.signals:
        console.print(f"{signal.Signals(stop.signals[0]).name}: stopped {len(jobs)} jobs after {trained} trials")
        return JobsResult(EXIT_CODES[stop.signals[0]], trained)
    failed = [job for job in jobs if job.exit_code]
    for job in failed:
        reason = next((line for line in reversed(job.last_lines) if line.strip()), "no output")
        console.print(f"job {job.number} ({job.device}) failed with exit code {job.exit_code}: {reason}",
                      markup=False, highlight=False, soft_wrap=True)
    console.print(f"{trained} trials trained by {len(jobs)} job{'s' if len(jobs) != 1 else ''} ("
                  + ", ".join(f"{states[state]} {'failed' if state == 'fail' else state}"
                              for state in ("complete", "pruned", "fail") if states[state] or state == "complete")
                  + ")")
    return JobsResult(failed[0].exit_code if failed else 0, trained)
