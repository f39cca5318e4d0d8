"""`search --jobs N`: N worker processes on one machine sharing one study, watched in one live view.

Each job is `decoder-nas worker ARGV --trials T --device D` in a process of its own, the call's
trials shared out between them as Optuna's optimize(n_trials, n_jobs) counts them: for the whole call. The study's
storage is all they share (a journal file is safe for several processes on one machine), so trial
numbers never collide. The parent launches the jobs, shows their trials as they finish, and stops
them all on Ctrl-C or SIGTERM. A job killed outright is reported at once (the others go on), its
running trial failed and re-queued, and the run exits non-zero. A job whose parent dies, even by
SIGKILL, stops as on SIGTERM: it watches its stdin, a pipe only the parent holds open
(`watch_parent`), which works wherever pipes do, unlike Linux's PR_SET_PDEATHSIG.
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
from typing import IO, ContextManager, Protocol

from trainer.threads import job_threads

from .errors import ArgumentError
from .trials import worker_id

STOP_SECONDS = 15.0  # how long a stopped job may take to record its interrupted trial before it is killed
ERROR_LINES = 20  # the last stderr lines kept per job, to say why it failed
# A finished trial's line (live.trial_line) is "trial N STATE ...": these states cost training,
# reused repeats and infeasible samples do not (trials.trained).
TRAINED_LINE = re.compile(r"trial \d+ (complete|pruned|fail)\b")
# A worker that stopped because only trained architectures were proposed says so (commands/study.py).
EXHAUSTED_LINE = re.compile(r"stopped early: .*the space looks exhausted$")
EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}  # the shell's 128 + signal number
JOB_ENV = "DECODER_NAS_JOB"  # set in a job's environment: its stdin is the parent's pipe
# More jobs than this per core only queue for the cores, each holding a worker's memory (~0.35 GB with
# torch, optuna and datasets loaded): refused, not capped, so a run is never other than the one asked for.
MAX_JOBS_PER_CORE = 4


@dataclass
class Job:
    number: int  # from 1, as the user reads it
    device: str
    process: subprocess.Popen[str]
    last_lines: deque[str] = field(default_factory=lambda: deque(maxlen=ERROR_LINES))
    trained: Counter[str] = field(default_factory=Counter)  # by state: complete, pruned, fail
    exhausted: bool = False

    @property
    def exit_code(self) -> int:
        code = self.process.returncode
        return 128 - code if code < 0 else code  # killed by signal S: Popen says -S, the shell 128 + S

    @property
    def killed_by(self) -> str | None:
        """The signal that ended the job outright (SIGKILL, the OOM killer), before it could record anything."""
        code = self.process.returncode
        return signal.Signals(-code).name if code is not None and code < 0 else None


class JobsView(Protocol):
    """How the jobs are shown while they run (studies/cli draws a bar and their lines; the API, nothing)."""

    def watching(self, total: int, jobs: int) -> ContextManager[None]: ...  # around the whole run
    def trained(self) -> None: ...  # one more trial trained, of `total`
    def say(self, line: str) -> None: ...  # a job's line, prefixed, or the launcher's own


class QuietView:
    def watching(self, total: int, jobs: int) -> ContextManager[None]:
        return contextlib.nullcontext()

    def trained(self) -> None:
        pass

    def say(self, line: str) -> None:
        pass


@dataclass
class StopRequest:
    signals: list[int] = field(default_factory=list)


def check_jobs(jobs: int, devices: Sequence[str] | None = None, argument: str = "devices") -> None:
    """Refuse a job count, or a device the jobs are to use (`devices` as the caller named them:
    `argument`), before anything is created or started."""
    if jobs < 1:
        raise ArgumentError("jobs", jobs, "give at least 1 worker process")
    cores = os.cpu_count() or 1
    if jobs > MAX_JOBS_PER_CORE * cores:
        raise ArgumentError("jobs", jobs, f"at most {MAX_JOBS_PER_CORE * cores} on this machine's {cores} CPU "
                         f"core{'s' if cores != 1 else ''} ({MAX_JOBS_PER_CORE} per core); more only wait for each "
                         "other, each holding ~0.35 GB before it trains")
    for device in devices or ():
        _check_device(device, argument, ",".join(devices or ()))


def _check_device(device: str, argument: str, given: str) -> None:
    import torch

    from trainer.loop import RecipeError, resolve_device

    if not device.strip():
        raise ArgumentError(argument, given, "an empty entry; list devices as D1,D2,... (e.g. cuda:0,cuda:1)")
    try:
        resolved = resolve_device(device.strip())
    except RecipeError as exc:
        raise ArgumentError(argument, given, str(exc)) from None
    if resolved.type == "cuda" and (resolved.index or 0) >= torch.cuda.device_count():
        raise ArgumentError(argument, given,
                            f"{device!r} asked for, but this machine has {torch.cuda.device_count()} CUDA GPUs")


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
    return {**os.environ, **job_threads(jobs), JOB_ENV: "1"}


def watch_parent() -> None:
    """In a job: stop as on SIGTERM (the trial recorded FAIL) once the parent is gone, however it died.
    The parent never writes to the job's stdin; the pipe reads end-of-file when the parent exits."""
    if os.environ.get(JOB_ENV) != "1":
        return

    def wait_for_end_of_file() -> None:
        while os.read(0, 1 << 12):
            pass
        quiet = os.open(os.devnull, os.O_WRONLY)  # nobody reads stderr any more: writes must not fail
        os.dup2(quiet, 2)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=wait_for_end_of_file, name="parent-watch", daemon=True).start()


@dataclass(frozen=True)
class JobsResult:
    exit_code: int  # 0: every job succeeded; 130 after Ctrl-C, 143 after SIGTERM; else the first failure's
    trained: int  # trials trained by all jobs together
    exhausted: bool = False  # a job stopped early: the space looks exhausted
    stopped: bool = False  # this process was stopped (Ctrl-C, SIGTERM): exit_code says which
    killed: dict[str, str] = field(default_factory=dict)  # trials.worker_id of each job killed outright -> why


def run_jobs(worker_argv: Sequence[str], jobs: int, trials: int, devices: Sequence[str] | None = None,
             view: JobsView | None = None) -> JobsResult:
    """Run `jobs` workers on the study `worker_argv` names, training `trials` trials between them, and wait.
    Call it from the main thread: it handles SIGINT and SIGTERM while it runs."""
    check_jobs(jobs, devices)
    view = view or QuietView()
    lines: queue.Queue[tuple[Job, str | None]] = queue.Queue()
    started: list[Job] = []
    with _recorded_stop_signals() as stop:
        try:
            env = job_environment(jobs)
            for number, device in enumerate(job_devices(jobs, devices), 1):
                share = trials // jobs + (number <= trials % jobs)
                if share or number == 1:  # --trials 1 --jobs 2 needs one process
                    started.append(_start(number, device, worker_argv, share, env, lines))
            _watch(started, lines, trials, stop, view)
        finally:
            for job in started:  # only left running if the watch itself broke
                job.process.kill()
                job.process.wait()
    return _report(started, stop, view)


def _start(number: int, device: str, worker_argv: Sequence[str], trials: int, env: dict[str, str],
           lines: queue.Queue[tuple[Job, str | None]]) -> Job:
    job_device, visible = device_view(device, env)
    env = {**env, **visible}
    argv = [sys.executable, "-m", "studies", "worker", *worker_argv, "--trials", str(trials), "--device", job_device]
    # Off a terminal the worker prints one line per finished trial on stderr; stdout holds its front
    # table, which the caller prints once for the whole study. A session of its own: a Ctrl-C at the
    # terminal reaches the parent only, which forwards it once. Its stdin: see watch_parent.
    process = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, errors="replace", start_new_session=True)
    job = Job(number, device, process)
    threading.Thread(target=_read_lines, args=(job, process.stderr, lines), daemon=True).start()
    return job


def _read_lines(job: Job, stream: IO[str], lines: queue.Queue[tuple[Job, str | None]]) -> None:
    for line in stream:
        lines.put((job, line.rstrip("\n")))
    lines.put((job, None))  # the job closed stderr: it has exited


def _watch(jobs: list[Job], lines: queue.Queue[tuple[Job, str | None]], total: int, stop: StopRequest,
           view: JobsView) -> None:
    """Pass every job's lines on, prefixed, and count the trials trained, until all jobs exit."""
    running, forwarded, deadline = len(jobs), 0, float("inf")
    with view.watching(total, len(jobs)):
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
                if job.killed_by and not stop.signals:  # it could say nothing itself
                    view.say(f"job {job.number} ({job.device}) was killed by {job.killed_by}: its running "
                             f"trial is failed and re-queued{'; the other jobs go on' if running else ''}")
                continue
            job.last_lines.append(line)
            trained = TRAINED_LINE.match(line)
            if trained:
                job.trained[trained[1]] += 1
                view.trained()
            job.exhausted = job.exhausted or bool(EXHAUSTED_LINE.match(line))
            view.say(f"[job {job.number}] {line}")


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


def _report(jobs: list[Job], stop: StopRequest, view: JobsView) -> JobsResult:
    states = sum((job.trained for job in jobs), Counter())
    trained = sum(states.values())
    killed = {worker_id(job.process.pid): f"its worker was killed by {job.killed_by}" for job in jobs if job.killed_by}
    if stop.signals:
        view.say(f"{signal.Signals(stop.signals[0]).name}: stopped {len(jobs)} jobs after {trained} trials")
        return JobsResult(EXIT_CODES[stop.signals[0]], trained, stopped=True, killed=killed)
    failed = [job for job in jobs if job.exit_code]
    for job in failed:
        reason = next((line for line in reversed(job.last_lines) if line.strip()), "no output")
        reason = f"killed by {job.killed_by}" if job.killed_by else reason
        view.say(f"job {job.number} ({job.device}) failed with exit code {job.exit_code}: {reason}")
    view.say(f"{trained} trials trained by {len(jobs)} job{'s' if len(jobs) != 1 else ''} ("
                  + ", ".join(f"{states[state]} {'failed' if state == 'fail' else state}"
                              for state in ("complete", "pruned", "fail") if states[state] or state == "complete")
                  + ")")
    return JobsResult(failed[0].exit_code if failed else 0, trained, any(job.exhausted for job in jobs),
                      killed=killed)
