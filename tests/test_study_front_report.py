"""benchmarks/study_front.py's report, on a journal of made-up trials: it had called the hypervolume
without its reference point since studies/ moved into rooms, and failed only after an hour of training."""

from __future__ import annotations

import sys
from pathlib import Path

import optuna
import pytest

from studies.settings import write_settings
from studies.storage.backends import open_storage
from study_helpers import make_settings

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import study_front  # noqa: E402 - a script's module, found on the path above

# (preset or None, val_loss, flops_per_token): what each promoted study holds at 2000 steps
PROMOTED = {
    "tpe-layer-s0": [("gpt", 1.9, 1000), ("lfm2", 1.6, 900), (None, 1.7, 500), (None, 1.5, 880)],  # beats both
    "modern-tpe-layer-s0": [("gpt", 1.9, 1000), ("lfm2", 1.6, 900), (None, 1.8, 400)],  # beats gpt only
}


def add_study(storage: optuna.storages.BaseStorage, name: str, points: list) -> None:
    study = optuna.create_study(study_name=name, storage=storage, directions=["minimize", "minimize"])
    settings = make_settings()
    write_settings(study, settings)
    for number, (preset, loss, flops) in enumerate(points):
        attrs = {"val_loss": loss, "flops_per_token": flops, "params": flops, "summary": f"arch{number}",
                 "arch_hash": f"{name}-{number}", **({"preset": preset} if preset else {})}
        study.add_trial(optuna.trial.create_trial(values=[loss, flops], user_attrs=attrs))


def test_the_report_reads_beaten_presets_and_hypervolumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    journal = str(tmp_path / "bench.journal")
    storage = open_storage(journal)
    for name, points in PROMOTED.items():
        add_study(storage, name, [(preset, loss + 0.3, flops) for preset, loss, flops in points])  # the 300-step study
        add_study(storage, f"{name}@2000", points)
    monkeypatch.setenv("COLUMNS", "300")
    monkeypatch.setattr(sys, "argv", ["study_front.py", "--storage", journal, "--spaces", "paper", "modern",
                                      "--variants", "tpe-layer", "--promote", "tpe-layer", "--report-only"])
    study_front.main()
    out = capsys.readouterr().out
    assert "tpe-layer-s0 2/6 (not pgpt lgpt cgpt llama)" in out  # the presets the settings list, absent ones unbeaten
    assert "modern-tpe-layer-s0 1/6 (not pgpt lgpt cgpt llama lfm2)" in out
    assert "front hypervolume" in out and "2000 steps mean" in out
