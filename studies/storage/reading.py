"""What the views read: every trial in brief, and the full records of the few they show.

A view (`pareto`, `export`, `studies`) needs each trial's state, objective values and a few
attributes (`VIEW_ATTRS`), and everything only of the front's handful of trials. Loading a study
through Optuna reads every attribute of every trial: a replay of the whole file for a journal, every
row of every table for a database. So a view opens the storage with `open_reader`:

- SQLite and PostgreSQL: targeted queries on Optuna's tables `studies`, `trials`, `trial_values` and
  `trial_user_attributes` (docs/views.md says why this is safe across Optuna 5.x), then Optuna's
  own `get_trial` for each trial shown in full.
- a journal file: the index beside it (studies/storage/journal_index.py), unless it is unsure.
- otherwise: Optuna.

A `StudyView` answers what the views ask of an `optuna.Study` (its name, user attributes,
`get_trials`) with brief trials, `full_trials` gives the full records, and `load` the whole study.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from ..errors import StudyError
from .backends import (
    checked_journal,
    is_journal,
    load_existing,
    open_storage,
    resolve_storage,
    trial_counts,
    unknown_study,
)
from .journal_index import VIEW_ATTRS, JournalIndex, Unsure

States = tuple[TrialState, ...] | None
# (name, user attributes, trials by state) of every study in a storage
StudyRow = tuple[str, dict[str, Any], Counter[TrialState]]


class StudyView:
    """One study as the views read it (see the module docstring)."""

    def __init__(self, name: str, user_attrs: dict[str, Any], brief: Callable[[States], list[FrozenTrial]],
                 full: Callable[[Sequence[FrozenTrial]], list[FrozenTrial]], load: Callable[[], optuna.Study]):
        self.study_name, self.user_attrs = name, user_attrs
        self._brief, self._full, self._load = brief, full, load
        self._trials: dict[States, list[FrozenTrial]] = {}

    def get_trials(self, deepcopy: bool = False, states: States = None) -> list[FrozenTrial]:
        """Trials in number order with only VIEW_ATTRS of their user attributes (`deepcopy` is moot:
        they are this view's own)."""
        key = None if states is None else tuple(states)
        if key not in self._trials:
            self._trials[key] = self._brief(key)
        return self._trials[key]

    def full_trials(self, trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
        return self._full(trials)

    def load(self) -> optuna.Study:
        return self._load()


class OptunaReader:
    """Any storage, through Optuna (a study is then the Study itself)."""

    def __init__(self, spec: str):
        self.spec = spec
        self.backend = open_storage(spec, create=False)

    def names(self) -> list[str]:
        return optuna.get_all_study_names(self.backend)

    def study(self, name: str) -> optuna.Study | StudyView:
        return load_existing(name, self.backend)

    def studies(self) -> list[StudyRow]:
        counts = trial_counts(self.backend)
        return [(s.study_name, s.user_attrs, counts[s._study_id]) for s in self.backend.get_all_studies()]  # noqa: SLF001


class RDBReader(OptunaReader):
    """SQLite and PostgreSQL: Optuna opens the database (and checks its schema version), we query it."""

    def study(self, name: str) -> optuna.Study | StudyView:
        study_id = self._study_id(name)
        return StudyView(name, self.backend.get_study_user_attrs(study_id), lambda states: self._brief(study_id, states),
                         lambda trials: [self.backend.get_trial(t._trial_id) for t in trials],  # noqa: SLF001
                         lambda: load_existing(name, self.backend))

    def _study_id(self, name: str) -> int:
        try:
            return self.backend.get_study_id_from_name(name)
        except KeyError:
            raise unknown_study(name, self.names()) from None

    def _query(self, sql: str, **bound: Any) -> list[Any]:
        assert isinstance(self.backend, RDBStorage)
        statement = sqlalchemy.text(sql)
        if "states" in bound:
            statement = statement.bindparams(sqlalchemy.bindparam("states", expanding=True))
        if "keys" in bound:
            statement = statement.bindparams(sqlalchemy.bindparam("keys", expanding=True))
        with self.backend.engine.connect() as connection:
            return list(connection.execute(statement, bound))

    def _brief(self, study_id: int, states: States) -> list[FrozenTrial]:
        chosen = "" if states is None else " AND t.state IN :states"
        bound: dict[str, Any] = {"study": study_id}
        if states is not None:
            bound["states"] = [state.name for state in states]
        trials = self._query("SELECT t.trial_id, t.number, t.state, t.datetime_start, t.datetime_complete FROM trials t "
                             f"WHERE t.study_id = :study{chosen} ORDER BY t.number", **bound)
        values: dict[int, dict[int, float]] = {}
        for trial_id, objective, value, kind in self._query(
                "SELECT v.trial_id, v.objective, v.value, v.value_type FROM trial_values v JOIN trials t "
                f"ON t.trial_id = v.trial_id WHERE t.study_id = :study{chosen}", **bound):
            values.setdefault(trial_id, {})[objective] = _stored_value(value, kind)
        attrs: dict[int, dict[str, Any]] = {}
        for trial_id, key, value_json in self._query(
                "SELECT a.trial_id, a.key, a.value_json FROM trial_user_attributes a JOIN trials t "
                f"ON t.trial_id = a.trial_id WHERE t.study_id = :study{chosen} AND a.key IN :keys",
                keys=list(VIEW_ATTRS), **bound):
            attrs.setdefault(trial_id, {})[key] = json.loads(value_json)
        brief = []
        for trial_id, number, state, started, completed in trials:
            by_objective = values.get(trial_id)
            brief.append(FrozenTrial(number, _state(state), None, _datetime(started), _datetime(completed), {}, {},
                                     attrs.get(trial_id, {}), {}, {}, trial_id,
                                     values=[by_objective[i] for i in sorted(by_objective)] if by_objective else None))
        return brief


class JournalReader:
    """A journal file, through the index beside it."""

    def __init__(self, spec: str, index: JournalIndex):
        self.spec, self.index = spec, index

    def names(self) -> list[str]:
        return [study[0] for study in self.index.studies.values()]

    def study(self, name: str) -> optuna.Study | StudyView:
        study_id = self.index.study_id(name)
        if study_id is None:
            raise unknown_study(name, self.names())
        return StudyView(name, self.index.studies[study_id][2], lambda states: self.index.brief_trials(study_id, states),
                         lambda trials: [self.index.full_trial(t._trial_id) for t in trials],  # noqa: SLF001
                         lambda: load_existing(name, open_storage(self.spec, create=False)))

    def studies(self) -> list[StudyRow]:
        counts: dict[int, Counter[TrialState]] = {study_id: Counter() for study_id in self.index.studies}
        for row in self.index.trials:
            if row[0] in counts:
                counts[row[0]][TrialState(row[2])] += 1
        return [(name, attrs, counts[study_id]) for study_id, (name, _, attrs) in self.index.studies.items()]


Reader = OptunaReader | JournalReader


def open_reader(storage: str | None) -> Reader:
    """The fastest exact reader of `storage` (a view only reads: a missing file is an error)."""
    spec = resolve_storage(storage)
    if is_journal(spec):
        checked_journal(spec, create=False)  # the same refusals as every command
        try:
            return JournalReader(spec, JournalIndex.up_to_date(Path(spec)))
        except Unsure:
            return OptunaReader(spec)
    if spec.split(":", 1)[0].lower().startswith(("sqlite", "postgresql")):
        return RDBReader(spec)
    return OptunaReader(spec)


def _stored_value(value: float | None, kind: str) -> float:
    """Optuna's TrialValueModel.stored_repr_to_value: infinities are stored as a type, not a value."""
    kind = str(kind).rsplit(".", 1)[-1]
    if kind == "INF_POS":
        return float("inf")
    if kind == "INF_NEG":
        return float("-inf")
    if value is None:
        raise StudyError(f"a finite trial value is missing (value type {kind})")
    return float(value)


def _state(stored: Any) -> TrialState:
    return TrialState[str(stored).rsplit(".", 1)[-1]]


def _datetime(stored: Any) -> datetime | None:
    """As Optuna's TrialModel reads its naive-UTC column: local time without a zone. (SQLite hands
    back text in a plain query, PostgreSQL a datetime.) No view shows it."""
    if stored is None:
        return None
    if isinstance(stored, str):
        stored = datetime.fromisoformat(stored)
    return stored.replace(tzinfo=timezone.utc).astimezone().replace(tzinfo=None)
