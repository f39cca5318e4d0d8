"""Progress for a person watching the Python API: plain lines, which a notebook and a terminal both show.

`Search.run` and `promote` print them where someone watches (`progress=None`: stderr is a terminal,
or a Jupyter kernel's), and nothing elsewhere (a script's log, a test); `progress=True/False`
decides. The command line draws its own live view (studies/cli/live.py) instead.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, TextIO

import optuna
from optuna.trial import FrozenTrial

from .trial_record import TrialRecord

if TYPE_CHECKING:  # the API imports this module before anything loads torch
    from trainer.loop import Progress

STEP_LINE_SECONDS = 30.0  # a long trial says how far it got at most this often


def person_watching(stream: TextIO | None = None) -> bool:
    """Whether someone reads `stream` (default: stderr) as it is written: a terminal, or a notebook's cell."""
    stream = sys.stderr if stream is None else stream
    if type(stream).__module__.startswith("ipykernel"):  # Jupyter's OutStream: shown under the cell
        return True
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class LineReporter:
    """A Reporter (studies/workers/trials.py) that prints a line when a trial starts, how far a long one
    got every STEP_LINE_SECONDS, and the trial's result line (trial_record.TrialRecord.line) with how
    many of `total` trials are trained so far."""

    def __init__(self, objectives: tuple[str, ...], total: int | None, stream: TextIO | None = None):
        self.objectives, self.total, self.stream = objectives, total, stream
        self.trained, self.last_line = 0, 0.0

    def trial_started(self, trial: optuna.Trial, summary: str, steps: int) -> None:
        self._say(f"trial {trial.number} started: {summary}, {steps} steps")

    def progress(self, progress: Progress) -> None:
        if time.monotonic() - self.last_line >= STEP_LINE_SECONDS:
            rate = progress.tokens / progress.seconds if progress.seconds else 0.0
            self._say(f"  step {progress.step}/{progress.steps}, loss {progress.loss:.3f}, {rate:,.0f} tokens/s")

    def trial_finished(self, trial: FrozenTrial) -> None:
        record = TrialRecord.of(trial, self.objectives)
        self.trained += record.trained
        done = f"[{self.trained}/{self.total} trained] " if self.total else ""
        self._say(done + record.line())

    def _say(self, line: str) -> None:
        print(line, file=self.stream or sys.stderr, flush=True)  # the stream of the moment: a notebook swaps it
        self.last_line = time.monotonic()


class LineJobsView:
    """A JobsView (studies/workers/jobs.py) in plain lines: each job's trials and lines, prefixed by its number."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream

    @contextlib.contextmanager
    def watching(self, total: int, jobs: int) -> Iterator[None]:
        self.say(f"{jobs} jobs training {total} trials between them")
        yield

    def trial(self, job: int, record: TrialRecord) -> None:
        self.say(f"[job {job}] {record.line()}")

    def say(self, line: str) -> None:
        print(line, file=self.stream or sys.stderr, flush=True)
