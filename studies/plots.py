"""The interactive front: every complete trial, the front highlighted, the paper presets named,
the architecture on hover; beside it the hypervolume after each complete trial."""

from __future__ import annotations

from pathlib import Path

import optuna
import plotly.graph_objects as go
from optuna.trial import FrozenTrial, TrialState
from plotly.subplots import make_subplots

from .front import hypervolume_history, normaliser_for
from .settings import StudySettings


def _hover(trial: FrozenTrial, objectives: tuple[str, ...]) -> str:
    attrs = trial.user_attrs
    lines = [f"trial {trial.number}" + (f" ({attrs['preset']})" if "preset" in attrs else ""), attrs.get("summary", "")]
    lines += [f"{name}: {attrs[name]:.5g}" for name in ("val_loss", "flops_per_token", "params", "latency_ms") if name in attrs]
    return "<br>".join(lines)


def write_front_html(study: optuna.Study, settings: StudySettings, front: list[FrozenTrial], path: Path) -> Path:
    objectives = settings.objectives
    x_name, y_name = (objectives[1], objectives[0]) if len(objectives) > 1 else ("flops_per_token", objectives[0])
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    figure = make_subplots(rows=1, cols=2, column_widths=[0.65, 0.35],
                           subplot_titles=(f"{y_name} vs {x_name}", "hypervolume after each complete trial"))
    for label, trials, style in (("all trials", complete, {"color": "lightgray", "size": 8}),
                                 ("front", front, {"color": "crimson", "size": 11})):
        figure.add_trace(go.Scatter(
            x=[t.user_attrs.get(x_name) for t in trials], y=[t.user_attrs.get(y_name) for t in trials],
            mode="markers+text" if label == "front" else "markers", name=label, marker=style,
            text=[t.user_attrs.get("preset", "") for t in trials], textposition="top center",
            hovertext=[_hover(t, objectives) for t in trials], hoverinfo="text"), row=1, col=1)
    if front and len(objectives) > 1:
        history = hypervolume_history(study, objectives, normaliser_for(objectives, [t.values for t in front]))
        figure.add_trace(go.Scatter(x=[n for n, _ in history], y=[v for _, v in history], mode="lines+markers",
                                    name="hypervolume"), row=1, col=2)
    figure.update_xaxes(title_text=x_name, type="log" if x_name != "val_accuracy" else "linear", row=1, col=1)
    figure.update_yaxes(title_text=y_name, row=1, col=1)
    figure.update_xaxes(title_text="trial", row=1, col=2)
    figure.update_layout(title=f"{study.study_name}: {settings.steps} steps, {len(complete)} complete trials",
                         template="plotly_white")
    figure.write_html(str(path), include_plotlyjs=True)  # self-contained: opens offline
    return path
