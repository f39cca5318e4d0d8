"""Live progress on stderr (so stdout stays clean for --json): a bar with loss, tokens/s and ETA."""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from trainer.loop import Progress as TrainingProgress

from ..workers.trial_record import TrialRecord

STDERR = Console(stderr=True)


def progress_bar(console: Console = STDERR) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )


@contextlib.contextmanager
def training_bar(description: str, steps: int, console: Console = STDERR) -> Iterator[Callable[[TrainingProgress], None]]:
    """Yields the on_progress callback for trainer.loop.train."""
    with progress_bar(console) as bar:
        task = bar.add_task(description, total=steps, status="")

        def update(progress: TrainingProgress) -> None:
            rate = progress.tokens / progress.seconds if progress.seconds > 0 else 0.0
            bar.update(task, completed=progress.step, status=f"loss {progress.loss:.3f} · {rate:,.0f} tok/s")

        yield update


class ConsoleJobsView:
    """studies.workers.jobs.JobsView on a console: one bar of trials trained by all jobs, their lines above it."""

    def __init__(self, console: Console = STDERR) -> None:
        self.console = console
        self._advance: Callable[[], None] = lambda: None

    @contextlib.contextmanager
    def watching(self, total: int, jobs: int) -> Iterator[None]:
        with progress_bar(self.console) as bar:
            task = bar.add_task("trials", total=total, status=f"{jobs} jobs")
            self._advance = lambda: bar.advance(task)
            yield

    def trial(self, job: int, record: TrialRecord) -> None:
        if record.trained:
            self._advance()
        self.say(f"[job {job}] {record.line()}")

    def say(self, line: str) -> None:
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)
