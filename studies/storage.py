"""Where studies live: one `--storage` value, a URL for Optuna RDB storage or a path for a journal file.

- `sqlite:///study.db`: one process only (SQLite must not be shared by several processes).
- `postgresql://user@host/db`: many processes and machines; Optuna's heartbeat fails the trials of
  a worker that died and a retry callback re-queues them.
- a plain file path (`studies.journal`): Optuna's journal file, safe for several processes on one
  machine. Journal storage has no heartbeat, so studies/leases.py gives running trials a lease.
"""

from __future__ import annotations

import itertools
import os
import random
import re
import time
import warnings
from pathlib import Path

import optuna
from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend

from .errors import StudyError

DEFAULT_STORAGE = "decoder-nas.journal"
PROMOTED_SEPARATOR = "@"  # NAME@STEPS holds NAME's front retrained for STEPS steps
# A worker that misses heartbeats for GRACE seconds is dead: its trial fails and is retried.
HEARTBEAT_SECONDS = int(os.environ.get("DECODER_NAS_HEARTBEAT_SECONDS", 30))
GRACE_SECONDS = int(os.environ.get("DECODER_NAS_GRACE_SECONDS", 120))
MAX_RETRY = 2
SCHEMA_ATTEMPTS = 5
_URL = re.compile(r"^(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*)://")
_RDB_SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg", "postgresql+psycopg2", "mysql", "mysql+pymysql")


def is_journal(storage: str) -> bool:
    return _URL.match(storage) is None


def open_storage(storage: str | None, create: bool = True) -> optuna.storages.BaseStorage:
    """`storage` as described above; anything else is a StudyError naming what is accepted.
    With create=False (commands that only read) a journal file that does not exist is an error."""
    storage = storage or DEFAULT_STORAGE
    match = _URL.match(storage)
    if match is None:
        path = Path(storage)
        if not create and not path.is_file():
            raise StudyError(f"--storage {storage}: no such journal file (run `decoder-nas search` to create a study)")
        if path.is_dir():
            raise StudyError(f"--storage {storage}: is a folder; give a journal file path such as {path / DEFAULT_STORAGE}")
        if not path.parent.exists():
            raise StudyError(f"--storage {storage}: folder {path.parent} does not exist")
        return JournalStorage(JournalFileBackend(str(path)))
    scheme = match["scheme"].lower()
    if scheme not in _RDB_SCHEMES:
        raise StudyError(f"--storage {storage}: unknown scheme {scheme!r}; use sqlite:///FILE (one process), "
                         "postgresql://USER@HOST/DB (many machines) or a journal file path")
    url = re.sub(r"^postgresql://", "postgresql+psycopg://", storage)  # psycopg 3 is the driver we ship
    # Workers started together race to create the schema of a fresh database; the losers retry.
    for attempt in itertools.count(1):
        try:
            with warnings.catch_warnings():  # Optuna marks its heartbeat API experimental; it is what we want
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                heartbeat = {} if scheme == "sqlite" else {
                    "heartbeat_interval": HEARTBEAT_SECONDS,
                    "grace_period": GRACE_SECONDS,
                    "heartbeat_stale_trial_callback": RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY),
                }
                return RDBStorage(url, engine_kwargs={"pool_pre_ping": True}, **heartbeat)
        except Exception as exc:  # SQLAlchemy / driver errors: say which storage and why, in one line
            racing = "already exists" in str(exc) or "duplicate key" in str(exc)
            if racing and attempt < SCHEMA_ATTEMPTS:
                time.sleep(0.2 + random.random())
                continue
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StudyError(f"--storage {storage}: cannot open ({reason})") from exc


def load_existing(name: str, backend: optuna.storages.BaseStorage) -> optuna.Study:
    try:
        return optuna.load_study(study_name=name, storage=backend)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(backend)]
        known = f" (this storage has: {', '.join(names)})" if names else " (this storage has no studies)"
        raise StudyError(f"unknown study {name!r}{known}") from None


def promoted_name(name: str, steps: int) -> str:
    return f"{name}{PROMOTED_SEPARATOR}{steps}"
