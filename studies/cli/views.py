"""Rich renderings of descriptions, training results and Pareto fronts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from optuna.trial import FrozenTrial
from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from search_space import DecoderConfig, summarize

from ..measures import OBJECTIVES, Objective
from ..workers.trial_record import study_counts

if TYPE_CHECKING:  # describe() needs torch; the front table does not
    from objectives import Description

    from ..api import Search


def description_table(config: DecoderConfig, description: Description) -> Table:
    caption = (f"FLOPs per token at context {config.block_size} (2 × multiply-adds); decoding state at full "
               f"context {description.decode_state_bytes:,} bytes (float32)")
    table = Table(title=summarize(config), caption=caption)
    for column in ("layer", "kind", "width", "heads", "params", "FLOPs/token"):
        table.add_column(column, justify="right" if column in ("heads", "params", "FLOPs/token") else "left")
    for row in description.layers:
        width = str(row.width_out) if row.width_in == row.width_out else f"{row.width_in}→{row.width_out}"
        heads = f"{row.heads}/{row.kv_heads}" if row.heads and row.kv_heads != row.heads else str(row.heads or "")
        table.add_row(row.name, row.kind, width, heads, f"{row.params:,}", f"{row.flops_per_token:,}")
    table.add_section()
    table.add_row("total", "", "", "", f"{description.params:,}", f"{description.flops_per_token:,}")
    table.add_row("non-embedding", "", "", "", f"{description.non_embedding_params:,}", "")
    return table


def metrics_table(title: str, metrics: dict) -> Table:
    table = Table(title=title, show_header=False)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        if isinstance(value, float):
            text = f"{value:,.4f}" if abs(value) < 100 else f"{value:,.0f}"
        elif isinstance(value, int):
            text = f"{value:,}"
        else:
            text = str(value)
        table.add_row(key, text)
    return table


UNBOUNDED = 100_000  # columns: room to measure a table's natural width in

# The architecture shorthand, explained wherever it is shown (table footers, the HTML front, README).
SHORTHAND = ("architecture: dW = embedding width W; rope = rotary positions, rms = RMSNorm; NL[...] = N layers: "
             "S/P = sequential/parallel block, then its heads (/K = over K KV heads, wN = a window of N tokens, "
             "qk = qk-norm) or cK = a gated short conv of kernel K; mR = MLP ratio R (omitted: 4), g = SwiGLU; "
             ">linW or >convK:W = the width narrows to W after the layer (linear, or causal conv of kernel K); "
             "xT towers = T parallel towers")


def front_title(search: Search) -> str:
    """`Pareto front of 'NAME' (300 steps; 27 trials: 18 complete, ...)`: the study's counts as every summary says them."""
    return (f"Pareto front of {search.name!r} ({search.settings.steps} steps; "
            f"{study_counts(search.view.get_trials(deepcopy=False))})")


def shown_measures(front: Sequence[FrozenTrial], objectives: Sequence[str]) -> list[Objective]:
    """The measures a front table shows: the objectives and every other measure a front trial recorded."""
    return [o for o in OBJECTIVES.values() if o.name in objectives or any(o.name in t.user_attrs for t in front)]


def front_table(front: list, settings, title: str) -> FrontTable:
    """One row per front trial: its measures (objectives in bold) and a one-line architecture."""
    return FrontTable(front, settings, title)


@dataclass
class FrontTable:
    """The front table, fit to the width it is drawn in: measures that are not objectives are left
    out, the last first, until it fits (the caption names them); the objectives and the architecture
    always show, folded onto a second line rather than cut where even they do not fit."""

    front: list
    settings: Any
    title: str

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        objectives = self.settings.objectives
        shown = shown_measures(self.front, objectives)
        left_out: list[str] = []
        table = self._table(shown, left_out)
        unbounded = options.update_width(UNBOUNDED)  # Measurement.get clips to the width it is given
        while Measurement.get(console, unbounded, table).maximum > options.max_width:
            secondary = [o for o in shown if o.name not in objectives]
            if not secondary:  # even so too wide: rich shrinks the columns, folding what they hold
                yield self._table(shown, left_out, whole=False)
                return
            shown.remove(secondary[-1])
            left_out.insert(0, secondary[-1].name)
            table = self._table(shown, left_out)
        yield table

    def _table(self, columns: list, left_out: list[str], whole: bool = True) -> Table:
        hidden = f" (left out for width: {', '.join(left_out)}; `pareto --json` has every one)" if left_out else ""
        table = Table(title=self.title, caption=f"objectives in bold; every measure is stored with each "
                                                f"trial{hidden}\n{SHORTHAND}")
        # Headers and architectures are kept whole where the width allows (rich would shrink them
        # first), and folded, never cut, where it does not.
        table.add_column("trial", justify="right", overflow="fold")
        for objective in columns:
            name = f"[bold]{objective.name}[/bold]" if objective.name in self.settings.objectives else objective.name
            table.add_column(name, justify="right", overflow="fold", min_width=len(objective.name) if whole else None)
        labels = [(f"[italic]{t.user_attrs['preset']}[/italic] " if "preset" in t.user_attrs else "")
                  + t.user_attrs.get("summary", "") for t in self.front]
        widest = max((len(Text.from_markup(label)) for label in labels), default=0)
        table.add_column("architecture", overflow="fold", min_width=widest if whole else None)
        for trial, label in zip(self.front, labels):
            table.add_row(str(trial.number), *(o.format(trial.user_attrs.get(o.name)) for o in columns), label)
        return table
