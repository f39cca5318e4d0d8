"""Views read targeted rows (SQLite, PostgreSQL) or the journal's index, and agree with Optuna."""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from studies.fronts.front import complete_trials, pareto_layers
from studies.storage.backends import open_storage
from studies.storage.journal_index import JournalIndex, index_path
from studies.storage.reading import JournalReader, RDBReader, StudyView, open_reader

OBJECTIVES = ("val_loss", "flops_per_token")  # both minimised
WRITER = """
import random, sys, optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
optuna.logging.set_verbosity(optuna.logging.ERROR)
study = optuna.load_study(study_name=sys.argv[2], storage=JournalStorage(JournalFileBackend(sys.argv[1])))
rng = random.Random(1)
for _ in range(int(sys.argv[3])):
    trial = study.ask()
    trial.suggest_int("depth", 1, 8)
    trial.set_user_attr("summary", "x" * 500)
    study.tell(trial, [rng.random(), rng.random()])
"""


def plain_optuna_study(storage: object, name: str, trials: int, seed: int = 0) -> optuna.Study:
    """A study written by Optuna alone: params, attributes, and pruned, failed and running trials."""
    study = optuna.create_study(study_name=name, storage=storage, directions=["minimize", "minimize"])
    rng = random.Random(seed)
    for number in range(trials):
        trial = study.ask()
        trial.suggest_float("lr", 1e-4, 1e-2, log=True)
        trial.suggest_categorical("layout", ["sequential", "parallel"])
        trial.set_user_attr("summary", f"model {number}")
        trial.set_user_attr("val_loss", rng.random())
        trial.set_user_attr("config", {"layers": list(range(number % 5))})
        outcome = rng.random()
        if outcome < 0.1:
            study.tell(trial, state=TrialState.PRUNED)
        elif outcome < 0.15:
            study.tell(trial, state=TrialState.FAIL)
        elif outcome < 0.2:
            continue  # left running
        else:
            study.tell(trial, [trial.user_attrs["val_loss"], rng.choice([float("inf"), rng.random()])])
    return study


def assert_same_front(view: StudyView, study: optuna.Study) -> None:
    brief = view.get_trials(states=(TrialState.COMPLETE,))
    assert [(t.number, t.values) for t in brief] == [(t.number, t.values) for t in
                                                     study.get_trials(states=(TrialState.COMPLETE,))]
    front = next(pareto_layers(complete_trials(view, OBJECTIVES), OBJECTIVES), [])
    assert {t.number for t in front} == {t.number for t in study.best_trials}
    full = view.full_trials(front)
    by_number = {t.number: t for t in study.get_trials()}
    assert full == [by_number[t.number] for t in front]  # every field, params and attributes included


def test_a_journal_written_by_optuna_shows_optunas_front(tmp_path: Path) -> None:
    journal = tmp_path / "plain.journal"
    study = plain_optuna_study(optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal))),
                               "plain", 80)
    reader = open_reader(str(journal))
    assert isinstance(reader, JournalReader)
    assert_same_front(reader.study("plain"), study)
    assert index_path(journal).exists()
    assert_same_front(open_reader(str(journal)).study("plain"), study)  # from the saved index


def test_sqlite_written_by_optuna_shows_optunas_front(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'plain.db'}"
    study = plain_optuna_study(url, "plain", 60)
    reader = open_reader(url)
    assert isinstance(reader, RDBReader)
    assert_same_front(reader.study("plain"), study)


def test_postgresql_written_by_optuna_shows_optunas_front(postgres_url: str) -> None:
    name = f"plain-{uuid.uuid4().hex[:8]}"
    study = plain_optuna_study(postgres_url.replace("postgresql://", "postgresql+psycopg://"), name, 40)
    view = open_reader(postgres_url).study(name)
    assert_same_front(view, study)
    counts = {study_name: states for study_name, _, states in open_reader(postgres_url).studies()}
    assert counts[name] == Counter(t.state for t in study.get_trials())


def test_the_index_follows_a_journal_being_written(tmp_path: Path) -> None:
    journal = tmp_path / "live.journal"
    storage = open_storage(str(journal))
    plain_optuna_study(storage, "live", 10)
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(journal), "live", "150"])
    try:
        reads = 0
        while writer.poll() is None or reads < 2:
            index = JournalIndex.up_to_date(journal)
            # Optuna on exactly the bytes the index has read must show the same front.
            prefix = tmp_path / f"prefix-{reads}.journal"
            with journal.open("rb") as source:
                prefix.write_bytes(source.read(index.offset))
            expected = optuna.load_study(study_name="live", storage=open_storage(str(prefix)))
            assert_same_front(JournalReader(str(journal), index).study("live"), expected)
            reads += 1
    finally:
        writer.wait()
    assert writer.returncode == 0
    assert_same_front(open_reader(str(journal)).study("live"),
                      optuna.load_study(study_name="live", storage=open_storage(str(journal))))


def test_a_half_written_last_line_is_left_for_later(tmp_path: Path) -> None:
    journal = tmp_path / "cut.journal"
    study = plain_optuna_study(open_storage(str(journal)), "cut", 20)
    complete = journal.stat().st_size
    with journal.open("ab") as file:
        file.write(b'{"op_code":4,"worker_id":"w","study_id":0,"datetime_st')
    index = JournalIndex.up_to_date(journal)
    assert index.offset == complete
    assert_same_front(JournalReader(str(journal), index).study("cut"), study)


def test_the_index_is_rebuilt_for_another_journal(tmp_path: Path) -> None:
    first, second = tmp_path / "a.journal", tmp_path / "b.journal"
    plain_optuna_study(open_storage(str(first)), "s", 30, seed=1)
    other = plain_optuna_study(open_storage(str(second)), "s", 25, seed=2)
    open_reader(str(first))  # indexes the first journal
    shutil.copy(index_path(first), tmp_path / "keep.index")
    shutil.copy(second, first)  # the same path, other contents (shorter, other lines)
    assert_same_front(open_reader(str(first)).study("s"), other)
    second.write_bytes(first.read_bytes()[:-1])  # now cut inside its last record: same file, shorter
    shutil.copy(tmp_path / "keep.index", index_path(second))
    index = JournalIndex.up_to_date(second)
    assert index.offset < second.stat().st_size


def test_a_journal_the_index_cannot_model_is_read_through_optuna(tmp_path: Path) -> None:
    journal = tmp_path / "odd.journal"
    plain_optuna_study(open_storage(str(journal)), "odd", 5)
    with journal.open("ab") as file:
        file.write(b'{"op_code":99,"worker_id":"w"}\n')
    with pytest.raises(Exception):  # Optuna's own replay refuses it, and so the view does too
        open_reader(str(journal)).study("odd")


def test_a_view_of_a_journal_replays_only_the_front(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from studies import api
    from studies.api import Search
    from studies.settings import StudySettings, write_settings
    from studies.storage import reading

    journal = tmp_path / "study.journal"
    study = plain_optuna_study(open_storage(str(journal)), "s", 60)
    write_settings(study, StudySettings(objectives=OBJECTIVES))
    replayed: list[int] = []
    full_trial = JournalIndex.full_trial
    monkeypatch.setattr(JournalIndex, "full_trial", lambda self, trial_id: replayed.append(trial_id)
                        or full_trial(self, trial_id))
    for module in (api, reading):  # Optuna's replay of the whole journal is not needed
        monkeypatch.setattr(module, "open_storage", lambda *a, **k: pytest.fail("the journal was replayed"))
    search = Search.open("s", str(journal))
    assert sorted(point.number for point in search.front()) == sorted(t.number for t in study.best_trials)
    assert sorted(replayed) == sorted(t._trial_id for t in study.best_trials)  # noqa: SLF001
    assert [row["complete"] for row in api.list_studies(str(journal))] == [len(study.get_trials(
        states=(TrialState.COMPLETE,)))]
