"""The HTML front (studies/plots.py), read back from the written page: hand-made studies in memory, no training."""

from __future__ import annotations

import json
import re
from html import escape
from pathlib import Path

import optuna
from optuna.trial import create_trial

from studies.api import Search
from studies.cli.plots import front_figure_data, write_front_html
from studies.cli.views import SHORTHAND
from studies.measures import OBJECTIVES
from studies.settings import StudySettings, write_settings
from trainer.loop import TrainingRecipe

THREE = ("val_loss", "flops_per_token", "latency_ms")
# The case: pgpt has higher loss and FLOPs than trial 4, and is on the front by 0.016 ms of latency.
# cgpt is lgpt's model (the same arch_hash): its result was reused, so both name one point.
ROWS = [
    ("gpt", "a", {"val_loss": 2.40, "flops_per_token": 2.0e6, "params": 400_000, "latency_ms": 1.50}),
    ("pgpt", "b", {"val_loss": 2.35, "flops_per_token": 1.8e6, "params": 362_880, "latency_ms": 1.184}),
    ("lgpt", "c", {"val_loss": 2.50, "flops_per_token": 9.0e5, "params": 250_000, "latency_ms": 1.00}),
    ("cgpt", "c", {"val_loss": 2.50, "flops_per_token": 9.0e5, "params": 250_000, "latency_ms": 1.00}),
    (None, "d", {"val_loss": 2.30, "flops_per_token": 1.5e6, "params": 500_000, "latency_ms": 1.20}),
    (None, "e", {"val_loss": 2.20, "flops_per_token": 5.0e6, "params": 1_200_000, "latency_ms": 3.00}),
]


def make_search(objectives: tuple[str, ...], rows=ROWS) -> Search:
    study = optuna.create_study(directions=[OBJECTIVES[name].direction for name in objectives])
    settings = StudySettings(objectives=objectives, data="x", block_size=16, recipe=TrainingRecipe(steps=12))
    write_settings(study, settings)
    for preset, arch, measures in rows:
        attrs = {"summary": f"d96 2L[P8m2>lin72 {arch}]", "arch_hash": arch, **measures}
        study.add_trial(create_trial(values=[measures[name] for name in objectives],
                                     user_attrs={**attrs, **({"preset": preset} if preset else {})}))
    return Search(study, settings, storage="memory")


def plotted(page: str) -> list[tuple[list[dict], dict]]:
    """(data, layout) of every Plotly.newPlot call in the page, as the browser receives them."""
    decoder, figures = json.JSONDecoder(), []
    for call in re.finditer(r'Plotly\.newPlot\(\s*"[^"]+",\s*', page):
        data, end = decoder.raw_decode(page, call.end())
        layout, _ = decoder.raw_decode(page, end + re.match(r",\s*", page[end:]).end())
        figures.append((data, layout))
    return figures


def written(search: Search, tmp_path: Path) -> tuple[str, list[tuple[list[dict], dict]]]:
    page = write_front_html(search, tmp_path / "front.html").read_text(encoding="utf-8")
    return page, plotted(page)


def axis_name(layout: dict, axis: str, letter: str) -> str:
    """'x2' -> the measure named by layout.xaxis2's title."""
    return layout[f"{letter}axis{axis[1:]}"]["title"]["text"].split(" ")[0]


def test_three_objectives_draw_every_pair_with_the_values_of_all_three(tmp_path: Path) -> None:
    page, figures = written(make_search(THREE), tmp_path)
    assert "plotly.js" in page and len(figures) == 2  # the front and the hypervolume, plotly inlined
    traces, layout = figures[0]
    by_hover = {row[1]: row[2] for row in ROWS if row[0] != "cgpt"}  # arch -> measures
    pairs = set()
    for trace in traces:
        x_name, y_name = axis_name(layout, trace["xaxis"], "x"), axis_name(layout, trace["yaxis"], "y")
        pairs.add((x_name, y_name))
        for x, y, hover in zip(trace["x"], trace["y"], trace["hovertext"]):
            measures = by_hover[re.search(r"lin72 (\w)\]", hover).group(1)]
            assert (x, y) == (measures[x_name], measures[y_name])
    assert pairs == {("flops_per_token", "val_loss"), ("latency_ms", "val_loss"), ("latency_ms", "flops_per_token")}


def test_a_front_point_that_looks_dominated_says_why_it_is_not(tmp_path: Path) -> None:
    data = front_figure_data(make_search(THREE))
    why = {p.names.split(",")[0]: p.why for p in data.points}
    assert why["pgpt"].startswith("on the front: nothing is at least as good on val_loss, flops_per_token and "
                                  "latency_ms and better on one; trial 4 has lower val_loss and lower "
                                  "flops_per_token but higher latency_ms (1.20 vs 1.18)")
    named = int(re.match(r"not on the front: trial (\d+) is at least as good", why["gpt"]).group(1))
    assert named in {p.number for p in data.points if p.on_front}  # a front trial that dominates it
    page, _ = written(make_search(THREE), tmp_path)
    assert escape("but higher latency_ms (1.20 vs 1.18)") in page  # in pgpt's hover


def test_every_preset_and_both_picks_are_labelled_on_the_page(tmp_path: Path) -> None:
    _, figures = written(make_search(THREE), tmp_path)
    labels = {hover.split("<br>")[0]: text for trace in figures[0][0]
              for text, hover in zip(trace["text"], trace["hovertext"])}
    words = {word for text in labels.values() for word in re.split(r"[/,] ?|#\d+ ", text)}
    assert {"gpt", "pgpt", "lgpt", "cgpt", "knee", "best quality"} <= words
    assert labels["trial 5 (best quality)"] == "#5 best quality"  # the lowest val_loss, on the front
    assert labels["trial 2 (lgpt/cgpt)"] == "#2 lgpt/cgpt"  # one model, one point, two names
    assert labels["trial 0 (gpt)"] == "gpt"  # off the front: named, not numbered


def test_every_front_point_is_numbered_and_listed_in_a_table_under_the_plot(tmp_path: Path) -> None:
    search = make_search(THREE)
    page, figures = written(search, tmp_path)
    front = search.front_trials()
    assert len(front) >= 4
    numbered = {text.split(" ")[0] for trace in figures[0][0] if trace["name"] == "front" for text in trace["text"]}
    assert numbered == {f"#{t.number}" for t in front}  # a screenshot tells every front point apart
    table = page[page.index("<table class='front'"):page.index("</table>")]
    assert page.index("<table class='front'") > page.index("Plotly.newPlot")  # under the plot
    rows = re.findall(r"<tr>(.*?)</tr>", table)[1:]
    assert len(rows) == len(front)
    for trial, row in zip(front, rows):
        cells = [re.sub(r"<.*?>", "", cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row)]
        assert cells[0] == str(trial.number) and cells[2] == escape(trial.user_attrs["summary"])
        for name in THREE + ("params",):  # the objectives and the other measures the table prints
            assert OBJECTIVES[name].format(trial.user_attrs[name]) in cells
    assert "<th><b>val_loss</b></th>" in table and "<th>params</th>" in table  # objectives in bold


def test_labels_turn_inwards_so_none_is_cut_at_the_plots_edge(tmp_path: Path) -> None:
    _, figures = written(make_search(("val_loss", "flops_per_token")), tmp_path)
    traces = figures[0][0]
    placed = [(x, y, position) for trace in traces for x, y, position in zip(trace["x"], trace["y"],
                                                                            trace["textposition"])]
    xs, ys = [x for x, _, _ in placed], [y for _, y, _ in placed]
    for x, y, position in placed:
        if x == min(xs):  # at the left edge (lgpt/cgpt, the cheapest): written rightwards, into the plot
            assert position.endswith("right"), (x, position)
        if x == max(xs):
            assert position.endswith("left"), (x, position)
        if y == max(ys):  # at the top: written below the point
            assert position.startswith("bottom"), (y, position)
    assert all(trace["cliponaxis"] is False for trace in traces)  # nor clipped by the axes' box


def test_hover_uses_the_tables_number_format(tmp_path: Path) -> None:
    _, figures = written(make_search(THREE), tmp_path)
    hovers = "".join(hover for trace in figures[0][0] for hover in trace["hovertext"])
    assert "params: 363k" in hovers and "flops_per_token: 1.8M FLOPs" in hovers and "val_loss: 2.3500 nats" in hovers
    assert "e+05" not in hovers and "362880" not in hovers


def test_the_page_explains_the_shorthand_and_the_hypervolume(tmp_path: Path) -> None:
    page, figures = written(make_search(THREE), tmp_path)
    assert escape(SHORTHAND) in page
    assert "scaled to [0, 1] over this front&#x27;s own range" in page and "do not compare" in page
    history = figures[1][0][0]
    assert history["x"] == [0, 1, 2, 3, 4, 5] and history["y"] == sorted(history["y"]) and history["y"][-1] > 0


def test_two_objectives_draw_one_scatter_with_a_log_cost_axis_read_as_the_table_writes(tmp_path: Path) -> None:
    _, figures = written(make_search(("val_loss", "flops_per_token")), tmp_path)
    traces, layout = figures[0]
    assert {(t["xaxis"], t["yaxis"]) for t in traces} == {("x", "y")}
    x_axis, flops = layout["xaxis"], OBJECTIVES["flops_per_token"]
    assert x_axis["type"] == "log" and x_axis["title"]["text"].startswith("flops_per_token")
    assert x_axis["tickvals"] == [1e6, 2e6, 5e6]  # 1, 2, 5 per decade within 900k..5M: no 2 3 4 ... 9
    assert x_axis["ticktext"] == [flops.format(v) for v in x_axis["tickvals"]] == ["1M", "2M", "5M"]
    assert layout["yaxis"]["type"] == "linear" and layout["yaxis"]["title"]["text"].startswith("val_loss")


def test_an_empty_study_writes_a_page_that_says_so(tmp_path: Path) -> None:
    page, figures = written(make_search(THREE, rows=[]), tmp_path)
    assert "no hypervolume" in page and len(figures) == 1
