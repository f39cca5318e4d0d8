"""A small index beside a journal, so a view need not replay the whole file (docs/views.md).

`<journal>.index` holds what the views read of every trial (state, objective values, VIEW_ATTRS,
and the byte span of its records) and of every study, and how far into the journal it has read.
Each reader brings it up to date from that byte on, applying Optuna's own replay rules
(optuna/storages/journal/_storage.py: which records are ignored, how trial ids and numbers are
given), then replays only the spans of the few trials it shows in full.

It never disagrees with the journal: it is rebuilt from scratch when the journal is another file
(device and inode), is shorter than what was read, or no longer holds the same first and last-read
lines; and anything Optuna's replay would refuse, or that this index does not model (an unknown
record, an unreadable line before the end, parameter distributions that clash), makes it `unsure`,
and the views read through Optuna instead. Deleting the index is always safe.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import check_distribution_compatibility, json_to_distribution
from optuna.trial import FrozenTrial, TrialState

from ..measures import OBJECTIVES

VERSION = 2  # 2: VIEW_ATTRS count outcomes (reused_from, infeasible)
VIEW_ATTRS = ("arch_hash", "preset", "summary", "reused_from", "infeasible", *OBJECTIVES)  # what a view shows of every trial
# Optuna's JournalOperation codes
CREATE_STUDY, DELETE_STUDY, SET_STUDY_USER_ATTR, SET_STUDY_SYSTEM_ATTR, CREATE_TRIAL, SET_TRIAL_PARAM, \
    SET_TRIAL_STATE_VALUES, SET_TRIAL_INTERMEDIATE_VALUE, SET_TRIAL_USER_ATTR, SET_TRIAL_SYSTEM_ATTR, \
    DISCARD_TRIALS = range(11)
TRIAL_UPDATES = (SET_TRIAL_PARAM, SET_TRIAL_STATE_VALUES, SET_TRIAL_INTERMEDIATE_VALUE, SET_TRIAL_USER_ATTR,
                 SET_TRIAL_SYSTEM_ATTR)
# A trial's row: its study, number, state (TrialState value), values, VIEW_ATTRS it holds, the byte
# offsets where its records start and end, and its start and completion times (ISO text).
STUDY, NUMBER, STATE, VALUES, ATTRS, FIRST, END, STARTED, COMPLETED = range(9)
FINISHED = {state.value for state in TrialState if state.is_finished()}


class Unsure(Exception):
    """The journal holds something this index does not model exactly: read it through Optuna."""


def index_path(journal: Path) -> Path:
    return journal.with_name(journal.name + ".index")


class JournalIndex:
    def __init__(self, journal: Path):
        self.journal = journal
        self.offset = 0
        self.head: str | None = None  # sha1 of the first line
        self.tail: tuple[int, str] | None = None  # start and sha1 of the last line read
        self.identity: tuple[int, int] | None = None
        self.next_study_id = 0
        self.studies: dict[int, list[Any]] = {}  # id -> [name, directions, user_attrs]
        self.study_sizes: dict[int, int] = {}
        self.params: dict[int, dict[str, str]] = {}  # study id -> parameter -> a distribution it accepted
        self.trials: list[list[Any]] = []

    @classmethod
    def up_to_date(cls, journal: Path) -> JournalIndex:
        """The index of `journal`, read from beside it, brought up to date and saved back (when the
        folder is writable); raises Unsure where only Optuna can read the journal."""
        index = cls._load(journal) or cls(journal)
        before = index.offset
        index._read_new_records()
        if index.offset != before:
            index._save()
        return index

    @classmethod
    def _load(cls, journal: Path) -> JournalIndex | None:
        try:
            stored = json.loads(index_path(journal).read_text())
            if stored["version"] != VERSION or stored["optuna"] != optuna.__version__:
                return None
            index = cls(journal)
            index.offset, index.head, index.tail = stored["offset"], stored["head"], tuple(stored["tail"])
            index.identity, index.next_study_id = tuple(stored["identity"]), stored["next_study_id"]
            index.studies = {int(k): v for k, v in stored["studies"].items()}
            index.study_sizes = {int(k): v for k, v in stored["study_sizes"].items()}
            index.params = {int(k): v for k, v in stored["params"].items()}
            index.trials = stored["trials"]
        except (OSError, ValueError, KeyError, TypeError):
            return None  # no index yet, or one this version cannot read: rebuilt
        return index if index._matches_journal() else None

    def _matches_journal(self) -> bool:
        """Whether the journal still starts with what was read: same file, long enough, same first and
        last-read lines (a journal is only appended to; a cut is only ever of a line not yet read)."""
        if self.tail is None or self.head is None or self.identity is None:
            return False
        try:
            info = self.journal.stat()
            with self.journal.open("rb") as file:
                head = file.readline()
                file.seek(self.tail[0])
                last = file.read(self.offset - self.tail[0])
        except OSError:
            return False
        return ((info.st_dev, info.st_ino) == self.identity and info.st_size >= self.offset
                and _sha1(head) == self.head and _sha1(last) == self.tail[1])

    def _save(self) -> None:
        """Atomically (a temporary file renamed over it), so a reader racing this one sees a whole index."""
        stored = {"version": VERSION, "optuna": optuna.__version__, "offset": self.offset, "head": self.head,
                  "tail": self.tail, "identity": self.identity, "next_study_id": self.next_study_id,
                  "studies": self.studies, "study_sizes": self.study_sizes, "params": self.params,
                  "trials": self.trials}
        path = index_path(self.journal)
        try:
            handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        except OSError:
            return  # a read-only folder: the index lives in this process only
        try:
            with os.fdopen(handle, "w") as file:
                json.dump(stored, file, separators=(",", ":"))
            os.chmod(temporary, self.journal.stat().st_mode & 0o666)  # readable by whoever reads the journal
            os.replace(temporary, path)
        except OSError:
            Path(temporary).unlink(missing_ok=True)

    def _read_new_records(self) -> None:
        with self.journal.open("rb") as file:
            info = os.fstat(file.fileno())
            self.identity = (info.st_dev, info.st_ino)
            file.seek(self.offset)
            data = file.read()
        position, lines = self.offset, data.split(b"\n")
        for number, line in enumerate(lines[:-1]):  # the last piece has no newline: not written whole yet
            try:
                log = json.loads(line)
            except ValueError:
                if number < len(lines) - 2 or lines[-1]:  # Optuna refuses a bad line with anything after it
                    raise Unsure("an unreadable line before the journal's last") from None
                break  # Optuna skips a bad last line (and our next append moves it aside)
            end = position + len(line) + 1
            try:
                self._apply(log, position, end)
            except (KeyError, TypeError, ValueError) as exc:  # a record Optuna's replay would choke on too
                raise Unsure(f"a malformed record ({exc!r})") from None
            if self.head is None:
                self.head = _sha1(line + b"\n")
            self.tail, self.offset, position = (position, _sha1(line + b"\n")), end, end

    def _apply(self, log: Any, start: int, end: int) -> None:
        """Optuna's JournalStorageReplayResult.apply_logs, for what this index keeps."""
        if not isinstance(log, dict) or "op_code" not in log:
            raise Unsure("a record without an op_code")
        op = log["op_code"]
        if op == CREATE_STUDY:
            if log["study_name"] not in (study[0] for study in self.studies.values()):
                self.studies[self.next_study_id] = [log["study_name"], log["directions"], {}]
                self.study_sizes[self.next_study_id] = 0
                self.next_study_id += 1
        elif op == DELETE_STUDY:
            self.studies.pop(log["study_id"], None)
        elif op == SET_STUDY_USER_ATTR:
            if log["study_id"] in self.studies:
                self.studies[log["study_id"]][2].update(log["user_attr"])
        elif op == SET_STUDY_SYSTEM_ATTR:
            pass
        elif op == CREATE_TRIAL:
            self._create_trial(log, start, end)
        elif op in TRIAL_UPDATES:
            self._update_trial(log, end)
        elif op != DISCARD_TRIALS:  # which Optuna skips too
            raise Unsure(f"an unknown record (op_code {op})")

    def _create_trial(self, log: dict[str, Any], start: int, end: int) -> None:
        study = log["study_id"]
        if study not in self.studies:
            return
        for name, distribution in log.get("distributions", {}).items():
            if not self._param_fits(study, name, distribution):  # Optuna does not check a template
                raise Unsure(f"parameter {name!r} has clashing distributions")
        values = log.get("values")
        if values is None and log.get("value") is not None:
            values = [log["value"]]
        attrs = {key: value for key, value in log.get("user_attrs", {}).items() if key in VIEW_ATTRS}
        self.trials.append([study, self.study_sizes[study], log.get("state", TrialState.RUNNING.value), values,
                            attrs, start, end, log["datetime_start"], log.get("datetime_complete")])
        self.study_sizes[study] += 1

    def _update_trial(self, log: dict[str, Any], end: int) -> None:
        trial_id = log["trial_id"]
        if not (0 <= trial_id < len(self.trials)) or self.trials[trial_id][STATE] in FINISHED:
            return
        trial = self.trials[trial_id]
        trial[END] = end
        op = log["op_code"]
        if op == SET_TRIAL_PARAM:
            self._param_fits(trial[STUDY], log["param_name"], log["distribution"])
        elif op == SET_TRIAL_STATE_VALUES:
            state = log["state"]
            if state == trial[STATE] == TrialState.RUNNING.value:
                return
            if state == TrialState.RUNNING.value:
                trial[STARTED] = log["datetime_start"]
            if state in FINISHED:
                trial[COMPLETED] = log["datetime_complete"]
            trial[STATE] = state
            if log["values"] is not None:
                trial[VALUES] = log["values"]
        elif op == SET_TRIAL_USER_ATTR:
            trial[ATTRS].update((k, v) for k, v in log["user_attr"].items() if k in VIEW_ATTRS)

    def _param_fits(self, study: int, name: str, distribution: str) -> bool:
        """Optuna refuses a parameter whose distribution clashes with the one the study's trials have."""
        known = self.params.setdefault(study, {}).setdefault(name, distribution)
        if known == distribution:
            return True
        try:
            check_distribution_compatibility(json_to_distribution(known), json_to_distribution(distribution))
        except ValueError:
            return False
        return True

    def study_id(self, name: str) -> int | None:
        return next((sid for sid, study in self.studies.items() if study[0] == name), None)

    def brief_trials(self, study_id: int, states: tuple[TrialState, ...] | None) -> list[FrozenTrial]:
        wanted = None if states is None else {state.value for state in states}
        return [_frozen(trial_id, row, row[ATTRS]) for trial_id, row in enumerate(self.trials)
                if row[STUDY] == study_id and (wanted is None or row[STATE] in wanted)]

    def full_trial(self, trial_id: int) -> FrozenTrial:
        """The trial as Optuna replays it, from its own records only."""
        row = self.trials[trial_id]
        with self.journal.open("rb") as file:
            file.seek(row[FIRST])
            lines = file.read(row[END] - row[FIRST]).split(b"\n")[:-1]  # each ends with a newline
        create = json.loads(lines[0])
        distributions = {k: json_to_distribution(v) for k, v in create.get("distributions", {}).items()}
        params = {k: distributions[k].to_external_repr(v) for k, v in create.get("params", {}).items()}
        user_attrs, system_attrs = dict(create.get("user_attrs", {})), dict(create.get("system_attrs", {}))
        intermediate = {int(k): v for k, v in create.get("intermediate_values", {}).items()}
        state = create.get("state", TrialState.RUNNING.value)
        for line in lines[1:]:
            log = json.loads(line)
            if log.get("trial_id") != trial_id or state in FINISHED:
                continue
            op = log["op_code"]
            if op == SET_TRIAL_PARAM and self._param_fits(row[STUDY], log["param_name"], log["distribution"]):
                distribution = json_to_distribution(log["distribution"])
                distributions[log["param_name"]] = distribution
                params[log["param_name"]] = distribution.to_external_repr(log["param_value_internal"])
            elif op == SET_TRIAL_STATE_VALUES and not (log["state"] == state == TrialState.RUNNING.value):
                state = log["state"]
            elif op == SET_TRIAL_INTERMEDIATE_VALUE:
                intermediate[log["step"]] = log["intermediate_value"]
            elif op == SET_TRIAL_USER_ATTR:
                user_attrs.update(log["user_attr"])
            elif op == SET_TRIAL_SYSTEM_ATTR:
                system_attrs.update(log["system_attr"])
        trial = _frozen(trial_id, row, user_attrs)
        trial.params, trial.distributions = params, distributions
        trial.system_attrs, trial.intermediate_values = system_attrs, intermediate
        return trial


def _frozen(trial_id: int, row: list[Any], user_attrs: dict[str, Any]) -> FrozenTrial:
    return FrozenTrial(row[NUMBER], TrialState(row[STATE]), None, _time(row[STARTED]), _time(row[COMPLETED]), {}, {},
                       user_attrs, {}, {}, trial_id, values=row[VALUES])


def _time(text: str | None) -> datetime | None:
    """As Optuna's replay reads it: to local time, without a zone."""
    return None if text is None else datetime.fromisoformat(text).astimezone().replace(tzinfo=None)


def _sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()
