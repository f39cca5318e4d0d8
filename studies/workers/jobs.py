"""`search --jobs N`: N worker processes on one machine sharing one study, watched in one view.

Each job is `python -m studies.job` (studies/job.py) in a process of its own, given its work as data:
the study, its settings and its share of the call's trials (counted for the whole call, as Optuna's
optimize(n_trials, n_jobs) counts them) as one JSON line on its stdin. It answers in JSON events on
its stdout, one per finished trial; its stderr is shown prefixed. The study's storage is all the
jobs share (a journal file is safe for several processes on one machine), so trial numbers never
collide. The parent shows their trials as they finish and stops them all on Ctrl-C or SIGTERM. A job
killed outright is reported at once (the others go on), its running trial failed and re-queued, and
the run exits non-zero. A job whose parent dies, even by SIGKILL, stops as on SIGTERM: it watches
its stdin, a pipe only the parent holds open (`job.watch_parent`), which works wherever pipes do,
unlike Linux's PR_SET_PDEATHSIG.
"""

from __future__ import annotations

import contextlib
import json
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
from dataclasses import asdict, dataclass, field
from typing import IO, Any, ContextManager, Protocol

from trainer.threads import job_threads

from ..errors import STOP_SIGNALS, ArgumentError, signal_exit_code
from .trial_record import TrialRecord
from .trials import worker_id

STOP_SECONDS = 15.0  # how long a stopped job may take to record its interrupted trial before it is killed
ERROR_LINES = 20  # the last stderr lines kept per job, to say why it failed
# More jobs than this per core only queue for the cores, each holding a worker's memory (~0.35 GB with
# torch, optuna and datasets loaded): refused, not capped, so a run is never other than the one asked for.
MAX_JOBS_PER_CORE = 4


@dataclass(frozen=True)
class JobSpec:
    """What every job of a run trains: the study, as the parent opened it, and how."""

    study: str
    storage: str
    settings: dict[str, Any]  # StudySettings.to_dict(): the study's own, so no job reads or re-derives them
    keep_checkpoints: str = "none"
    artifacts: str | None = None
    max_complete: int | None = None


@dataclass
class Job:
    number: int  # from 1, as the user reads it
    device: str
    process: subprocess.Popen[str]
    last_lines: deque[str] = field(default_factory=lambda: deque(maxlen=ERROR_LINES))
    trained: Counter[str] = field(default_factory=Counter)  # by state: complete, pruned, fail
    exhausted: bool = False
    open_streams: int = 2  # its events (stdout) and its stderr: it has exited once both are closed

    @property
    def exit_code(self) -> int:
        code = self.process.returncode
        return signal_exit_code(-code) if code < 0 else code  # killed by signal S: Popen says -S

    @property
    def killed_by(self) -> str | None:
        """The signal that ended the job outright (SIGKILL, the OOM killer), before it could record anything."""
        code = self.process.returncode
        return signal.Signals(-code).name if code is not None and code < 0 else None


class JobsView(Protocol):
    """How the jobs are shown while they run (studies/cli draws a bar and their lines; the API, nothing)."""

    def watching(self, total: int, jobs: int) -> ContextManager[None]: ...  # around the whole run
    def trial(self, job: int, record: TrialRecord) -> None: ...  # job `job` finished a trial
    def say(self, line: str) -> None: ...  # a job's stderr line, prefixed, or the launcher's own


class QuietView:
    def watching(self, total: int, jobs: int) -> ContextManager[None]:
        return contextlib.nullcontext()

    def trial(self, job: int, record: TrialRecord) -> None:
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
    return {**os.environ, **job_threads(jobs)}


@dataclass(frozen=True)
class JobsResult:
    exit_code: int  # 0: every job succeeded; 130 after Ctrl-C, 143 after SIGTERM; else the first failure's
    trained: int  # trials trained by all jobs together
    exhausted: bool = False  # a job stopped early: the space looks exhausted
    stopped: bool = False  # this process was stopped (Ctrl-C, SIGTERM): exit_code says which
    killed: dict[str, str] = field(default_factory=dict)  # trials.worker_id of each job killed outright -> why
    failure: str = ""  # why the first failed job failed: its last line


def run_jobs(spec: JobSpec, jobs: int, trials: int, devices: Sequence[str] | None = None,
             view: JobsView | None = None) -> JobsResult:
    """Run `jobs` workers on the study `spec` names, training `trials` trials between them, and wait.
    Call it from the main thread: it handles SIGINT and SIGTERM while it runs."""
    check_jobs(jobs, devices)
    view = view or QuietView()
    messages: queue.Queue[Message] = queue.Queue()
    started: list[Job] = []
    with _recorded_stop_signals() as stop:
        try:
            env = job_environment(jobs)
            for number, device in enumerate(job_devices(jobs, devices), 1):
                share = trials // jobs + (number <= trials % jobs)
                if share or number == 1:  # --trials 1 --jobs 2 needs one process
                    started.append(_start(number, device, spec, share, env, messages))
            _watch(started, messages, trials, stop, view)
        finally:
            for job in started:  # only left running if the watch itself broke
                job.process.kill()
                job.process.wait()
    return _report(started, stop, view)


# What a job's reader threads pass to the watch: (job, event, a line of stderr). Neither: a stream closed.
Message = tuple["Job", dict[str, Any] | None, str | None]


def _start(number: int, device: str, spec: JobSpec, trials: int, env: dict[str, str],
           messages: queue.Queue[Message]) -> Job:
    job_device, visible = device_view(device, env)
    # A session of its own: a Ctrl-C at the terminal reaches the parent only, which forwards it once.
    process = subprocess.Popen([sys.executable, "-m", "studies.job"], env={**env, **visible}, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace",
                               start_new_session=True)
    job = Job(number, device, process)
    threading.Thread(target=_read_events, args=(job, process.stdout, messages), daemon=True).start()
    threading.Thread(target=_read_lines, args=(job, process.stderr, messages), daemon=True).start()
    request = {**asdict(spec), "trials": trials, "device": job_device}
    with contextlib.suppress(BrokenPipeError):  # a job that died at once says why on stderr
        process.stdin.write(json.dumps(request) + "\n")  # type: ignore[union-attr]
        process.stdin.flush()  # type: ignore[union-attr]
    return job  # its stdin stays open: job.watch_parent waits for it to close


def _read_events(job: Job, stream: IO[str], messages: queue.Queue[Message]) -> None:
    for line in stream:
        try:
            event = json.loads(line)
        except json.JSONDecodeError:  # not ours (job.py points stray prints at stderr): shown as a line
            messages.put((job, None, line.rstrip("\n")))
        else:
            messages.put((job, event, None))
    messages.put((job, None, None))


def _read_lines(job: Job, stream: IO[str], messages: queue.Queue[Message]) -> None:
    for line in stream:
        messages.put((job, None, line.rstrip("\n")))
    messages.put((job, None, None))


def _watch(jobs: list[Job], messages: queue.Queue[Message], total: int, stop: StopRequest, view: JobsView) -> None:
    """Pass every job's trials and lines on and count the trials trained, until all jobs exit."""
    running, forwarded, deadline = len(jobs), 0, float("inf")
    with view.watching(total, len(jobs)):
        while running:
            if len(stop.signals) > forwarded:
                forwarded, deadline = _stop_jobs(jobs, forwarded, deadline)
            if time.monotonic() > deadline:
                for job in jobs:
                    job.process.kill()
            try:
                job, event, line = messages.get(timeout=0.2)
            except queue.Empty:
                continue
            if event is not None:
                _take_event(job, event, view)
            elif line is not None:
                job.last_lines.append(line)
                view.say(f"[job {job.number}] {line}")
            else:
                job.open_streams -= 1
                if job.open_streams == 0:
                    running -= 1
                    _exited(job, running, stop, view)


def _take_event(job: Job, event: dict[str, Any], view: JobsView) -> None:
    if event["event"] == "trial":
        record = TrialRecord.from_dict(event["record"])
        if record.trained:
            job.trained[record.state] += 1
        view.trial(job.number, record)
    elif event["event"] == "done":
        job.exhausted = event["exhausted"]


def _exited(job: Job, running: int, stop: StopRequest, view: JobsView) -> None:
    job.process.wait()
    if job.killed_by and not stop.signals:  # it could say nothing itself
        view.say(f"job {job.number} ({job.device}) was killed by {job.killed_by}: its running "
                 f"trial is failed and re-queued{'; the other jobs go on' if running else ''}")


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
                for number in STOP_SIGNALS}
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
        return JobsResult(signal_exit_code(stop.signals[0]), trained, stopped=True, killed=killed)
    failed = [job for job in jobs if job.exit_code]
    reasons = [f"killed by {job.killed_by}" if job.killed_by else
               next((line for line in reversed(job.last_lines) if line.strip()), "no output") for job in failed]
    for job, reason in zip(failed, reasons, strict=True):
        view.say(f"job {job.number} ({job.device}) failed with exit code {job.exit_code}: {reason}")
    view.say(f"{trained} trials trained by {len(jobs)} job{'s' if len(jobs) != 1 else ''} ("
                  + ", ".join(f"{states[state]} {'failed' if state == 'fail' else state}"
                              for state in ("complete", "pruned", "fail") if states[state] or state == "complete")
                  + ")")
    return JobsResult(failed[0].exit_code if failed else 0, trained, any(job.exhausted for job in jobs),
                      killed=killed, failure=reasons[0] if reasons else "")
