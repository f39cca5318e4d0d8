"""The live view of a running search: trials i/N with ETA, the current trial's steps and loss, and
the recent trials with the current front marked. Off a terminal it prints one line per trial."""

from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from trainer.loop import Progress

from ..fronts.front import front_trials
from ..measures import OBJECTIVES
from ..settings import StudySettings
from ..workers.trial_record import OUTCOMES, TrialRecord
from .progress import STDERR, progress_bar

RECENT_ROWS = 10


class LiveReporter:
    def __init__(self, study: optuna.Study, settings: StudySettings, total_trials: int | None,
                 console: Console = STDERR):
        self.study, self.settings, self.console = study, settings, console
        self.objectives = list(settings.objectives)
        self.front: set[int] = set()  # recomputed when a trial finishes, not on every redraw
        self.bar = progress_bar(console)
        self.trials_task = self.bar.add_task("trials", total=total_trials, status="")
        self.step_task = self.bar.add_task("trial", total=1, status="", visible=False)
        self.finished: list[TrialRecord] = []
        self.live = Live(self._render(), console=console, refresh_per_second=4, transient=False)

    def __enter__(self) -> LiveReporter:
        if self.console.is_terminal:
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.console.is_terminal:
            self.live.update(self._render())
            self.live.__exit__(*exc)

    def trial_started(self, trial: optuna.Trial, summary: str, steps: int) -> None:
        # reset, not update: a reused task keeps its finish time, and its ETA would read 0:00:00
        self.bar.reset(self.step_task, description=f"#{trial.number} {summary}", total=steps, completed=0,
                       status="measuring", visible=True)
        self._refresh()

    def progress(self, progress: Progress) -> None:
        rate = progress.tokens / progress.seconds if progress.seconds else 0.0
        self.bar.update(self.step_task, completed=progress.step, status=f"loss {progress.loss:.3f} · {rate:,.0f} tok/s")
        self._refresh()

    def trial_finished(self, trial: FrozenTrial) -> None:
        record = TrialRecord.of(trial, self.objectives)
        self.finished.append(record)
        self.front = {t.number for t in front_trials(self.study, self.settings)}
        if record.trained:
            self.bar.advance(self.trials_task)
        self.bar.update(self.step_task, visible=False)
        if self.console.is_terminal:
            self._refresh()
        else:
            self.console.print(record.line(), soft_wrap=True)

    def _refresh(self) -> None:
        if self.console.is_terminal:
            self.live.update(self._render())

    def _render(self) -> Group:
        table = Table(title="recent trials (★ on the front)", title_justify="left")
        for column in ("#", "architecture", "state", *self.objectives):  # folded where narrow, never cut
            table.add_column(column, justify="right" if column not in ("architecture", "state") else "left",
                             overflow="fold", min_width=len(column))
        for record in self.finished[-RECENT_ROWS:]:
            marker = "★" if record.number in self.front else ""
            values = [OBJECTIVES[name].format(record.measures.get(name)) for name in self.objectives]
            table.add_row(f"{marker}{record.number}", record.architecture, OUTCOMES[record.state], *values)
        return Group(self.bar, table)

