"""Tables fit the terminal: secondary columns are left out first, the architecture is never cut."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from optuna.trial import TrialState, create_trial
from rich.console import Console

from studies.cli.views import front_table
from studies.settings import StudySettings
from study_helpers import cli, isolated_python_api, make_tiny  # noqa: F401 (an autouse fixture)
from trainer.loop import TrainingRecipe

OBJECTIVES = ("val_loss", "flops_per_token")
SECONDARY = ("val_accuracy", "params", "latency_ms", "kv_cache_bytes", "weights_bytes", "decode_state_bytes")
SUMMARIES = ["d160 3L[S2m3 P2 S2m2]", "d128 4L[P4 P4>conv3:96 S4m2 P4>lin64] x2 towers", "d96 2L[S4 S4]"]


def front() -> list:
    trials = []
    for number, summary in enumerate(SUMMARIES):
        attrs = {"val_loss": 1.8 + number / 10, "flops_per_token": 1.5e6 / (number + 1), "val_accuracy": 0.41,
                 "params": 812_345.0, "latency_ms": 1.25, "kv_cache_bytes": 4096.0, "weights_bytes": 3.2e6,
                 "decode_state_bytes": 262_144.0, "summary": summary}
        trial = create_trial(state=TrialState.COMPLETE, values=[attrs["val_loss"], attrs["flops_per_token"]],
                             user_attrs=attrs)
        trial.number = number
        trials.append(trial)
    return trials


def rendered(width: int) -> str:
    console = Console(width=width, record=True, file=open(os.devnull, "w"))
    settings = StudySettings(objectives=OBJECTIVES, data="x", block_size=16, recipe=TrainingRecipe(steps=12))
    console.print(front_table(front(), settings, "Pareto front"))
    return console.export_text()


def architectures(text: str) -> str:
    """The architecture column's cells, read top to bottom (a cell wrapped over lines joined again)."""
    return " ".join(line.split("│")[-2].strip() for line in text.splitlines() if line.startswith("│"))


@pytest.mark.parametrize("width", [80, 100, 120])
def test_the_front_fits_the_width_with_every_objective_and_architecture_whole(width: int) -> None:
    text = rendered(width)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= width
    assert "…" not in text
    for summary in SUMMARIES:
        assert summary in architectures(text), text
        if width >= 100:  # room for the objectives and the longest architecture: one line each
            assert any(summary in line for line in lines), (summary, text)
    header = next(line for line in lines if "architecture" in line and "val_loss" in line)
    for name in OBJECTIVES:
        assert name in header
    shown = [name for name in SECONDARY if name in header]
    left_out = [name for name in SECONDARY if name not in shown]
    assert shown == list(SECONDARY[:len(shown)])  # the last ones go first
    if left_out:
        assert "left out for width: " + ", ".join(left_out) in " ".join(text.split())


def test_a_wide_terminal_shows_every_measure() -> None:
    text = rendered(200)
    assert all(name in text for name in SECONDARY) and "left out" not in text


def test_narrower_than_the_architecture_folds_it_and_loses_nothing() -> None:
    text = rendered(60)
    assert max(len(line) for line in text.splitlines()) <= 60 and "…" not in text
    assert all(summary in architectures(text) for summary in SUMMARIES), text


@pytest.mark.slow
def test_pareto_follows_columns_off_a_terminal(tmp_path: Path) -> None:
    tiny = make_tiny(tmp_path)
    assert cli(*tiny.argv("search", "--trials", "2", "--no-presets", "--objectives", "val_loss", "params")).code == 0
    for width in (80, 100):
        done = subprocess.run([sys.executable, "-m", "studies", "pareto", *tiny.study_flags()], capture_output=True,
                              text=True, env={**os.environ, "COLUMNS": str(width)}, timeout=120)
        assert done.returncode == 0, done.stderr
        assert max(len(line) for line in done.stdout.splitlines()) <= width and "…" not in done.stdout
