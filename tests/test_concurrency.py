"""Several processes or workers at once: a new SQLite file opened together, one architecture proposed
by two workers together, and --trials shared out between jobs."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from studies.storage.backends import open_storage
from studies.workers import claims
from study_helpers import PRESET_NAMES, PRESETS_TRAINED, RECIPE, SHAPE, isolated_python_api, make_tiny  # noqa: F401 (an autouse fixture)

OPEN_AT = """
import sys, time
from studies.storage.backends import open_storage
start = float(sys.argv[1])
for k, path in enumerate(sys.argv[2:]):
    while time.time() < start + 0.3 * k:  # every process opens file k at the same moment
        pass
    open_storage("sqlite:///" + path)
"""


@pytest.mark.slow
def test_processes_opening_one_new_sqlite_file_at_once_all_succeed(tmp_path: Path) -> None:
    # Without a lock, Optuna's schema set-up raced: "UNIQUE constraint failed: alembic_version".
    files = [str(tmp_path / f"study{k}.db") for k in range(6)]
    start = time.time() + 6  # after every interpreter has imported the project
    processes = [subprocess.Popen([sys.executable, "-c", OPEN_AT, str(start), *files], stderr=subprocess.PIPE,
                                  text=True) for _ in range(3)]
    errors = [process.communicate(timeout=120)[1] for process in processes]
    assert [process.returncode for process in processes] == [0, 0, 0], errors
    for path in files:  # each a working study database
        assert optuna.get_all_study_names(open_storage("sqlite:///" + path, create=False)) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(Path(f).name for f in files)  # no lock files


def running_trial(study: optuna.Study, arch_hash: str | None, training: bool = False) -> int:
    trial = study.ask()
    if arch_hash is not None:
        trial.set_user_attr(claims.CLAIM_KEY, arch_hash)
    if training:
        trial.set_user_attr(claims.TRAINING_KEY, 1000)
    return trial.number


def waits(study: optuna.Study, arch_hash: str, number: int, seconds: float = 1.5) -> threading.Thread:
    """wait_for_claimants in a thread, which is still waiting after `seconds` if it waits."""
    thread = threading.Thread(target=claims.wait_for_claimants, args=(study, arch_hash, number), daemon=True)
    thread.start()
    thread.join(seconds)
    return thread


@pytest.fixture
def study(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> optuna.Study:
    monkeypatch.setattr(claims, "POLL_SECONDS", 0.05)
    return optuna.create_study(storage=open_storage(str(tmp_path / "s.journal")), directions=["minimize"])


def test_a_trial_waits_while_a_lower_numbered_twin_runs_and_not_for_other_architectures(study) -> None:
    first = running_trial(study, "lgpt")
    running_trial(study, "gpt", training=True)
    second = running_trial(study, "lgpt")
    assert not waits(study, "lgpt", first).is_alive()  # the lowest claimant goes ahead
    waiting = waits(study, "lgpt", second)
    assert waiting.is_alive()
    study.tell(first, 1.0)
    waiting.join(5)
    assert not waiting.is_alive()  # and then finds the twin's result to reuse


def test_a_trial_waits_for_a_higher_numbered_twin_that_already_trains(study) -> None:
    first = running_trial(study, "lgpt")
    second = running_trial(study, "lgpt", training=True)  # it looked before the first claimed: it trains
    waiting = waits(study, "lgpt", first)
    assert waiting.is_alive()
    study.tell(second, 1.0)
    waiting.join(5)
    assert not waiting.is_alive()


def test_a_trial_waits_briefly_for_a_lower_numbered_trial_still_choosing(study, monkeypatch) -> None:
    monkeypatch.setattr(claims, "CHOOSING_SECONDS", 1.0)
    running_trial(study, None)  # sampling: it may pick the same architecture
    second = running_trial(study, "lgpt")
    started = time.monotonic()
    claims.wait_for_claimants(study, "lgpt", second)
    assert 1.0 <= time.monotonic() - started < 5  # then a worker killed while sampling holds nothing up


@pytest.mark.slow
def test_jobs_share_the_trials_and_train_the_twin_presets_once(tmp_path: Path) -> None:
    tiny = make_tiny(tmp_path)
    argv = [*tiny.study_flags(), "--data", str(tiny.corpus), "--space", str(tiny.space), *SHAPE, *RECIPE, "--rungs",
            "--device", "cpu"]
    calls = PRESETS_TRAINED + 2  # the presets (cgpt reusing lgpt) and two sampled
    done = subprocess.run([sys.executable, "-m", "studies", "search", *argv, "--jobs", "2", "--trials", str(calls)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    study = optuna.load_study(study_name="tiny", storage=open_storage(str(tiny.storage)))
    trials = study.get_trials(deepcopy=False)
    trained = [t for t in trials if "reused_from" not in t.user_attrs]
    assert len(trained) == calls and all(t.state == TrialState.COMPLETE for t in trials)  # for the call, not per job
    assert [t.user_attrs.get("preset") for t in trials[:len(PRESET_NAMES)]] == PRESET_NAMES
    assert trials[3].user_attrs["reused_from"] == 2  # cgpt is lgpt: never trained beside it
    assert [t for t in trained if "preset" not in t.user_attrs]  # the search went beyond the presets
    reused = len(trials) - len(trained)  # cgpt, and any sampled repeat
    # the jobs' line and the study's count alike: every trained one complete, and the reused ones apart from them
    assert f"{calls} trials trained by 2 jobs ({calls} complete); not trained: {reused} reused a twin's result" \
        in done.stderr.splitlines()
    assert f"the study now holds {len(trials)} trials: {calls} complete, {reused} reused a twin's result" in done.stdout
