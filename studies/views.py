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
