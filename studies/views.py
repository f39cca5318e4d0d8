"""Rich renderings of descriptions, training results and Pareto fronts."""

from __future__ import annotations

from typing import TYPE_CHECKING

import optuna
from optuna.trial import TrialState
from rich.table import Table

from search_space import DecoderConfig, summarize

from .measures import OBJECTIVES

if TYPE_CHECKING:  # describe() needs torch; the front table does not
    from objectives import Description


def description_table(config: DecoderConfig, description: Description) -> Table:
    table = Table(title=summarize(config), caption=f"FLOPs per token at context {config.block_size} (2 × multiply-adds)")
    for column in ("layer", "kind", "width", "heads", "params", "FLOPs/token"):
        table.add_column(column, justify="right" if column in ("heads", "params", "FLOPs/token") else "left")
    for row in description.layers:
        width = str(row.width_out) if row.width_in == row.width_out else f"{row.width_in}→{row.width_out}"
        table.add_row(row.name, row.kind, width, str(row.heads or ""), f"{row.params:,}", f"{row.flops_per_token:,}")
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


# The architecture shorthand, explained wherever it is shown (table footers, the HTML front, README).
SHORTHAND = ("architecture: dW = embedding width W; NL[...] = N layers: S/P = sequential/parallel block, then its "
             "heads; mR = MLP ratio R (omitted: 4); >linW or >convK:W = the width narrows to W after the layer "
             "(linear, or causal conv of kernel K); xT towers = T parallel towers")


def study_counts(study: optuna.Study) -> str:
    """The study's trials by outcome, in words that add up: complete (reused twins among them), stopped early, ..."""
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    reused = sum("reused_from" in t.user_attrs for t in complete)
    infeasible = sum(t.state == TrialState.PRUNED and bool(t.user_attrs.get("infeasible")) for t in trials)
    others = [(sum(t.state == TrialState.PRUNED for t in trials) - infeasible, "stopped early"),
              (infeasible, "infeasible"), (sum(t.state == TrialState.FAIL for t in trials), "failed")]
    return ", ".join([f"{len(complete)} complete trials" + (f" ({reused} reused a twin's result)" if reused else ""),
                      *(f"{count} {what}" for count, what in others if count)])


def front_table(front: list, settings, title: str) -> Table:
    """One row per front trial: its measures (objectives in bold) and a one-line architecture."""
    table = Table(title=title, caption=f"objectives in bold; every measure is stored with each trial\n{SHORTHAND}")
    table.add_column("trial", justify="right")
    columns = [o for o in OBJECTIVES.values() if o.name in settings.objectives
               or any(o.name in t.user_attrs for t in front)]
    for objective in columns:
        name = f"[bold]{objective.name}[/bold]" if objective.name in settings.objectives else objective.name
        table.add_column(name, justify="right")
    table.add_column("architecture")
    for trial in front:
        attrs = trial.user_attrs
        label = attrs.get("summary", "")
        if "preset" in attrs:
            label = f"[italic]{attrs['preset']}[/italic] {label}"
        table.add_row(str(trial.number), *(o.format(attrs.get(o.name)) for o in columns), label)
    return table
