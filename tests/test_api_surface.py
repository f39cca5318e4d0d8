"""The Python API as a notebook meets it: quiet, and misuse answered with the project's own errors."""

from __future__ import annotations

import logging
from pathlib import Path

import optuna
import pytest

from studies import Search
from study_helpers import STEPS, isolated_python_api, make_settings, make_tiny  # noqa: F401 - autouse fixture


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def optuna_records():
    """What Optuna logs at INFO, its default level (a notebook's), and restored afterwards."""
    handler = Records()
    logger = logging.getLogger("optuna")
    logger.addHandler(handler)
    optuna.logging.set_verbosity(optuna.logging.INFO)
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)
        optuna.logging.set_verbosity(optuna.logging.ERROR)


def test_the_api_does_not_print_optunas_info_lines(tmp_path: Path, optuna_records) -> None:
    tiny = make_tiny(tmp_path)
    search = Search.create("quiet", storage=str(tmp_path / "q.journal"),
                           settings=make_settings(data=str(tiny.corpus)), presets=False)
    search.run(trials=2, jobs=1, device="cpu")
    search.promote(steps=2 * STEPS, gap_trials=0, device="cpu")
    assert [r.getMessage()[:80] for r in optuna_records if r.levelno <= logging.INFO] == []
    assert optuna.logging.get_verbosity() == optuna.logging.INFO  # the notebook's level is left as it was
    optuna.create_study()  # and Optuna itself logs as before outside the API
    assert any("A new study created" in r.getMessage() for r in optuna_records)


def test_a_chosen_level_is_respected(tmp_path: Path, optuna_records) -> None:
    optuna.logging.set_verbosity(optuna.logging.DEBUG)  # as --debug does
    tiny = make_tiny(tmp_path)
    Search.create("loud", storage=str(tmp_path / "l.journal"), settings=make_settings(data=str(tiny.corpus)),
                  presets=False)
    assert any("A new study created" in r.getMessage() for r in optuna_records)
