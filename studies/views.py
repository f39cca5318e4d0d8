"""Rich renderings of descriptions, training results and Pareto fronts."""

from __future__ import annotations

from rich.table import Table

from objectives import Description
from search_space import DecoderConfig, summarize


def human(number: float) -> str:
    """1234567 -> 1.23M: tables stay narrow, --json keeps the exact values."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(number) >= scale:
            return f"{number / scale:.3g}{unit}"
    return f"{number:g}"


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


FRONT_COLUMNS = ("val_loss", "val_accuracy", "flops_per_token", "params", "latency_ms")


def front_table(front: list, settings, title: str) -> Table:
    """One row per front trial: its measures (objectives in bold) and a one-line architecture."""
    table = Table(title=title, caption="objectives in bold; every measure is stored with each trial")
    table.add_column("trial", justify="right")
    for column in FRONT_COLUMNS:
        name = f"[bold]{column}[/bold]" if column in settings.objectives else column
        table.add_column(name, justify="right")
    table.add_column("architecture")
    for trial in front:
        attrs = trial.user_attrs
        cells = []
        for column in FRONT_COLUMNS:
            value = attrs.get(column)
            if value is None:
                cells.append("")
            elif column in ("val_loss", "val_accuracy", "latency_ms"):
                cells.append(f"{value:.4f}" if column != "latency_ms" else f"{value:.2f}")
            else:
                cells.append(human(value))
        label = attrs.get("summary", "")
        if "preset" in attrs:
            label = f"[italic]{attrs['preset']}[/italic] {label}"
        table.add_row(str(trial.number), *cells, label)
    return table
