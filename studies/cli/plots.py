"""The interactive front, as a self-contained HTML page.

`front_figure_data` computes what the page says (plain data, no plotly); `write_front_html` draws
it: one scatter per pair of objectives (quality against each cost first), the front highlighted,
every front point labelled with its trial number (and the presets and the exported picks
named), labels turned inwards so none is cut at the plot's edge, hover in the table's number format
with a line on why each point is or is not on the front; under it a table of the front (trial,
architecture, measures), so a printout names every point; then the hypervolume after each complete trial.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path

import plotly.graph_objects as go
from optuna.trial import FrozenTrial, TrialState
from plotly.subplots import make_subplots

from ..api import Search
from ..fronts.front import REFERENCE, complete_trials, hypervolume_history, normaliser_for
from ..fronts.hypervolume import dominates
from ..measures import OBJECTIVES
from .views import SHORTHAND, shown_measures

PICK_LABELS = {"knee": "knee", "best-quality": "best quality"}  # the picks `export` offers first
RIVALS = 2  # trials named in a front point's reason: the nearest to dominating it explain it best
MANTISSAS = ((1,), (1, 2, 5), tuple(range(1, 10)))  # log ticks, coarsest first
FRONT_STYLE = {"color": "crimson", "size": 11}
OTHER_STYLE = {"color": "darkgray", "size": 7}
KEY = ("crimson: the front (no trial is at least as good on every objective and better on one); grey: the rest. "
       "Hover a point for its architecture, its measures and why it is or is not on the front.")


@dataclass(frozen=True)
class PlotPoint:
    """One architecture: its first complete trial (a repeat reuses its result)."""

    number: int
    measures: dict[str, float]  # every registered measure the trial recorded
    on_front: bool
    names: str  # its presets and picks, e.g. "lgpt/cgpt, knee"; "" for none
    summary: str  # the architecture shorthand
    why: str  # one line: why it is, or is not, on the front
    hover: str

    @property
    def label(self) -> str:
        """What the plot writes beside it: a front point's trial number and names, another's names."""
        return " ".join(filter(None, (f"#{self.number}" if self.on_front else "", self.names)))


@dataclass(frozen=True)
class FrontFigureData:
    title: str
    axes: tuple[str, ...]  # the measures drawn, quality first
    points: list[PlotPoint]
    front: list[PlotPoint]  # the front's points, in the front table's order
    columns: tuple[str, ...]  # the measures the front table shows, as the command line's table does
    history: list[tuple[int, float]]  # (trial number, hypervolume of the complete trials so far)
    hypervolume_note: str  # the current value and what it is relative to
    shorthand: str


def front_figure_data(search: Search) -> FrontFigureData:
    study, objectives = search.view, search.settings.objectives
    trials, front = complete_trials(study, objectives), search.front_trials()
    on_front = {t.number for t in front}
    labels = _labels(search, trials, front)
    normalise = normaliser_for(objectives, [t.values for t in trials]) if trials else None
    scaled = {t.number: normalise(t.values) for t in trials} if normalise else {}
    points = []
    for trial in trials:
        label, measures = labels.get(trial.number, ""), _measures(trial, objectives)
        why = _why(trial, trials if trial.number in on_front else front, objectives, scaled, trial.number in on_front)
        points.append(PlotPoint(trial.number, measures, trial.number in on_front, label,
                                trial.user_attrs.get("summary", ""), why, _hover(trial, measures, label, why)))
    by_number = {point.number: point for point in points}
    history = []
    if front and len(objectives) > 1:
        history = hypervolume_history(study, objectives, normaliser_for(objectives, [t.values for t in front]))
    title = (f"{search.name}: {search.settings.steps} steps, {len(points)} architectures, "
             f"{len(front)} on the front ({', '.join(objectives)})")
    return FrontFigureData(title, _axes(objectives), points, [by_number[t.number] for t in front],
                           tuple(o.name for o in shown_measures(front, objectives)), history,
                           _hypervolume_note(search), SHORTHAND)


def _axes(objectives: Sequence[str]) -> tuple[str, ...]:
    """Quality first, so the first row of scatters is quality against each cost. One objective
    alone is drawn against FLOPs (params for FLOPs itself): what its values cost."""
    axes = tuple(sorted(objectives, key=lambda name: OBJECTIVES[name].kind != "quality"))
    if len(axes) == 1:
        axes += ("params",) if axes[0] == "flops_per_token" else ("flops_per_token",)
    return axes


def _measures(trial: FrozenTrial, objectives: Sequence[str]) -> dict[str, float]:
    return {**{name: trial.user_attrs[name] for name in OBJECTIVES if name in trial.user_attrs},
            **dict(zip(objectives, trial.values))}  # the values the front is computed from


def _labels(search: Search, trials: list[FrozenTrial], front: list[FrozenTrial]) -> dict[int, str]:
    """Trial number -> its presets (cgpt repeats lgpt's model, so both name one point) and picks."""
    point_of = {t.user_attrs.get("arch_hash", t.number): t.number for t in trials}
    names: dict[int, list[str]] = defaultdict(list)
    for trial in search.view.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        number = point_of.get(trial.user_attrs.get("arch_hash", trial.number))
        if "preset" in trial.user_attrs and number is not None:
            names[number].append(trial.user_attrs["preset"])
    labels = {number: "/".join(presets) for number, presets in names.items()}
    if not front:
        return labels  # nothing to pick from
    for how, label in PICK_LABELS.items():
        number = search.pick(how).number
        labels[number] = ", ".join(filter(None, (labels.get(number), label)))
    return labels


def _why(trial: FrozenTrial, others: list[FrozenTrial], objectives: Sequence[str], scaled: dict[int, list[float]],
         on_front: bool) -> str:
    """Derived from the values: on the front, the trials (`others`: all of them) nearest to dominating
    it and where they fall short; off it, a front trial (`others`: the front) that dominates it."""
    mine = scaled[trial.number]
    others = [(other, scaled[other.number]) for other in others if other.number != trial.number]
    if not on_front:
        dominator = next(other for other, theirs in others if dominates(theirs, mine))
        return f"not on the front: trial {dominator.number} is at least as good on every objective and better on one"
    rivals = sorted(((other, theirs) for other, theirs in others if any(t < m for t, m in zip(theirs, mine))),
                    key=lambda pair: sum(max(0.0, t - m) for t, m in zip(pair[1], mine)))  # the shortfall
    clauses = [_rival_clause(trial, other, objectives, mine, theirs) for other, theirs in rivals[:RIVALS]]
    return "; ".join([f"on the front: nothing is at least as good on {_and(objectives)} and better on one",
                      *clauses])


def _rival_clause(trial: FrozenTrial, rival: FrozenTrial, objectives: Sequence[str], mine: list[float],
                  theirs: list[float]) -> str:
    """'trial 3 has lower val_loss but higher latency_ms (1.20 vs 1.18)': what it wins and loses."""
    better, worse = [], []
    for name, ours, its, value, rival_value in zip(objectives, mine, theirs, trial.values, rival.values):
        objective = OBJECTIVES[name]
        lower = rival_value < value
        if its < ours:
            better.append(f"{'lower' if lower else 'higher'} {name}")
        elif its > ours:
            worse.append(f"{'lower' if lower else 'higher'} {name} ({objective.format(rival_value)} vs "
                         f"{objective.format(value)})")
    return f"trial {rival.number} has {_and(better)} but {_and(worse)}"


def _and(words: Sequence[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def _hover(trial: FrozenTrial, measures: dict[str, float], label: str, why: str) -> str:
    """As the front table prints it: one number format (Objective.format) for every measure."""
    lines = [f"trial {trial.number}" + (f" ({label})" if label else ""), trial.user_attrs.get("summary", "")]
    lines += [f"{name}: {OBJECTIVES[name].format(value)} {OBJECTIVES[name].unit}".rstrip()
              for name, value in measures.items()]
    return "<br>".join([*lines, *why.split("; ")])  # a line per clause: hover boxes do not wrap


def _hypervolume_note(search: Search) -> str:
    value = search.hypervolume()
    if value is None:
        return "no hypervolume: it needs two objectives or more and a complete trial"
    return (f"hypervolume {value:.4f}: the share of the box up to {REFERENCE} that the trials dominate, each "
            "objective scaled to [0, 1] over this front's own range (best 0, worst 1); so it tracks this "
            "search's progress, and values from other budgets or studies do not compare with it")


def write_front_html(search: Search, path: Path) -> Path:
    data = front_figure_data(search)
    parts = [f"<h2>{escape(data.title)}</h2>", f"<p>{escape(KEY)}</p>",
             front_figure(data).to_html(full_html=False, include_plotlyjs=True),  # self-contained: opens offline
             front_table_html(data), f"<p>{escape(data.hypervolume_note)}</p>"]
    if data.history:
        parts.append(hypervolume_figure(data).to_html(full_html=False, include_plotlyjs=False))
    parts.append(f"<p>{escape(data.shorthand)}</p>")
    path = Path(path)
    path.write_text(f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{escape(data.title)}</title></head>"
                    f"<body style='font-family: sans-serif'>{''.join(parts)}</body></html>", encoding="utf-8")
    return path


def front_table_html(data: FrontFigureData) -> str:
    """The front as a table: trial, names, architecture and measures (objectives in bold), as `pareto` prints it."""
    if not data.front:
        return "<p>no front yet: no trial is complete</p>"
    head = "".join(f"<th>{escape(name)}</th>" for name in ("trial", "names", "architecture"))
    head += "".join(f"<th>{'<b>' + escape(name) + '</b>' if name in data.axes else escape(name)}</th>"
                    for name in data.columns)
    rows = "".join(
        "<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in (str(point.number), point.names, point.summary))
        + "".join(f"<td style='text-align: right'>{escape(OBJECTIVES[name].format(point.measures.get(name)))}</td>"
                  for name in data.columns) + "</tr>"
        for point in data.front)
    return (f"<table class='front' style='border-collapse: collapse' cellpadding='4'><caption>the front: "
            f"{len(data.front)} trials</caption><tr>{head}</tr>{rows}</table>")


def front_figure(data: FrontFigureData) -> go.Figure:
    """Every pair of axes once: row r holds axes[r] against each later axis, so two objectives
    make one scatter and three a triangle of three."""
    size = len(data.axes) - 1
    cells = [[{} if col >= row else None for col in range(size)] for row in range(size)]  # the upper triangle
    figure = make_subplots(rows=size, cols=size, specs=cells, horizontal_spacing=0.12, vertical_spacing=0.12)
    for row in range(size):
        for col in range(row, size):
            _add_pair(figure, data, data.axes[col + 1], data.axes[row], row + 1, col + 1, first=row == col == 0)
    figure.update_layout(template="plotly_white", height=max(450, 380 * size), legend={"orientation": "h"})
    return figure


def _add_pair(figure: go.Figure, data: FrontFigureData, x_name: str, y_name: str, row: int, col: int,
              first: bool) -> None:
    x_axis, y_axis = _axis(x_name, _values(data, x_name)), _axis(y_name, _values(data, y_name))
    for on_front, name, style in ((False, "other trials", OTHER_STYLE), (True, "front", FRONT_STYLE)):
        points = [p for p in data.points if p.on_front == on_front]
        x, y = [p.measures.get(x_name) for p in points], [p.measures.get(y_name) for p in points]
        figure.add_trace(go.Scatter(
            x=x, y=y, mode="markers+text", name=name, legendgroup=name, showlegend=first, marker=style,
            text=[p.label for p in points], textfont={"size": 11}, cliponaxis=False,
            textposition=_inwards(_places(x, data, x_name, x_axis), _places(y, data, y_name, y_axis)),
            hovertext=[p.hover for p in points], hoverinfo="text"), row=row, col=col)
    figure.update_xaxes(**x_axis, row=row, col=col)
    figure.update_yaxes(**y_axis, row=row, col=col)


def _places(values: list[float | None], data: FrontFigureData, name: str, axis: dict) -> list[float]:
    """Where each value lies along its axis as drawn, from 0 (the low end) to 1 (log axes in log)."""
    scale = math.log10 if axis["type"] == "log" else float
    every = [scale(v) for v in _values(data, name)]
    low, high = min(every, default=0.0), max(every, default=0.0)
    return [(scale(v) - low) / (high - low) if v is not None and high > low else 0.5 for v in values]


def _inwards(x_places: list[float], y_places: list[float]) -> list[str]:
    """A label's position beside its point, towards the plot's middle: one at an edge is never cut
    ("lgpt/cgpt, knee" centred on a point at the left edge read "gpt/cgpt, knee")."""
    return [f"{'bottom' if y > 0.8 else 'top'} {'right' if x < 0.5 else 'left'}" for x, y in zip(x_places, y_places)]


def _values(data: FrontFigureData, name: str) -> list[float]:
    return [p.measures[name] for p in data.points if name in p.measures]


def _axis(name: str, values: list[float]) -> dict:
    """Costs span decades: log, with ticks at round values written as the table writes them
    (100k 1M 10M), never plotly's unlabelled 2 3 4 ... 9. Quality and narrow ranges: linear."""
    objective = OBJECTIVES[name]
    title = {"text": f"{name} ({objective.unit})" if objective.unit else name}
    ticks = _log_ticks(min(values), max(values)) if values and min(values) > 0 else []
    if objective.kind != "cost" or len(ticks) < 2:
        return {"title": title, "type": "linear"}
    return {"title": title, "type": "log", "tickmode": "array", "tickvals": ticks,
            "ticktext": [objective.format(tick) for tick in ticks]}


def _log_ticks(low: float, high: float) -> list[float]:
    """Round values (1, 2, 5 x 10^k; every digit when the range is narrow) in [low, high]: at least three if any."""
    decades = range(math.floor(math.log10(low)), math.floor(math.log10(high)) + 1)
    ticks: list[float] = []
    for mantissas in MANTISSAS:
        ticks = [float(f"{m}e{e}") for e in decades for m in mantissas if low <= float(f"{m}e{e}") <= high]
        if len(ticks) >= 3:
            break
    return ticks


def hypervolume_figure(data: FrontFigureData) -> go.Figure:
    figure = go.Figure(go.Scatter(x=[n for n, _ in data.history], y=[v for _, v in data.history],
                                  mode="lines+markers", name="hypervolume"))
    figure.update_layout(template="plotly_white", height=320, title="hypervolume after each complete trial",
                         xaxis_title="trial", yaxis_title=f"hypervolume (reference {REFERENCE})")
    return figure
