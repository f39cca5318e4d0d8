"""`--storage` never spoils what it is given: cut journals, other files, pipes, bad settings; a database
password never reaches the output, and env:VAR names a storage for every command."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.storages._rdb import models as rdb_models
from optuna.storages.journal import JournalFileSymlinkLock
from optuna.trial import TrialState

from studies.errors import StudyError, Terminated
from studies.storage import backends as storage
from studies.storage.backends import (
    JournalRepaired,
    display_storage,
    open_storage,
    resolve_storage,
)
from study_helpers import (  # noqa: F401 (isolated_python_api: an autouse fixture)
    assert_one_line_error,
    cli,
    isolated_python_api,
    load_study,
    make_tiny,
)

optuna.logging.set_verbosity(optuna.logging.ERROR)
REPO = Path(__file__).resolve().parents[1]
SECRET = "SuperSecret123"
ENV_SECRET = "pa55-w0rd"


def new_study(journal: Path) -> optuna.Study:
    return optuna.create_study(study_name="s", storage=open_storage(str(journal)))


def reload(journal: Path) -> optuna.Study:
    """The study as a process that opens the journal afresh reads it."""
    return optuna.load_study(study_name="s", storage=open_storage(str(journal), create=False))


def test_a_line_being_written_waits_for_its_writer_and_a_cut_line_is_moved_aside(tmp_path: Path) -> None:
    journal = tmp_path / "studies.journal"
    study = new_study(journal)
    study.set_user_attr("before", 1)
    complete = journal.read_bytes()

    # A live writer holds the lock mid-line: the next append waits for it, then follows its line.
    writer = JournalFileSymlinkLock(str(journal))
    writer.acquire()
    with journal.open("ab") as file:
        file.write(b'{"op_code":2,"worker_id":"w","study_id":0,')
    appending = threading.Thread(target=study.set_user_attr, args=("during", 2))
    appending.start()
    time.sleep(0.3)
    assert appending.is_alive()
    with journal.open("ab") as file:
        file.write(b'"user_attr":{"live":3}}\n')
    writer.release()
    appending.join(timeout=10)
    assert reload(journal).user_attrs == {"before": 1, "live": 3, "during": 2}
    assert not list(tmp_path.glob("*.damaged-*"))

    # A writer killed mid-line (or a full disk) left a cut line: it is moved aside, then the append.
    cut = b'{"op_code":2,"worker_id":"w","study_id":0,"user_at'
    with journal.open("ab") as file:
        file.write(cut)
    with pytest.warns(JournalRepaired, match="last line was cut short"):
        study.set_user_attr("after", 4)
    assert reload(journal).user_attrs == {"before": 1, "live": 3, "during": 2, "after": 4}
    [backup] = tmp_path.glob("studies.journal.damaged-*")
    assert backup.read_bytes() == cut
    assert journal.read_bytes().startswith(complete)


def test_a_line_spoiled_by_an_old_append_after_a_cut_is_moved_aside(tmp_path: Path) -> None:
    journal = tmp_path / "studies.journal"
    new_study(journal)
    spoiled = b'{"op_code":2,"worker_id":"w","study_id":0,"user_attr":{"x":1}}'[:30] + b'{"op_code":4}\n'
    with journal.open("ab") as file:
        file.write(spoiled)
    study = optuna.load_study(study_name="s", storage=open_storage(str(journal)))
    with pytest.warns(JournalRepaired):
        study.set_user_attr("after", 1)
    assert reload(journal).user_attrs == {"after": 1}
    assert next(tmp_path.glob("*.damaged-*")).read_bytes() == spoiled


STOP_POINTS = [  # (storage, a function the write calls, the module it is looked up in)
    ("studies.journal", "_cut_damaged_tail", storage),  # in the journal's lock, before the write
    ("studies.journal", "_append_or_undo", storage),  # the write itself, then the lock's release
    ("sqlite:///studies.db", "find_or_raise_by_id", rdb_models.StudyModel),  # inside SQLAlchemy's session
]


@pytest.mark.parametrize("file, where, owner", STOP_POINTS)
def test_a_stop_during_a_storage_write_comes_after_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, file: str,
                                                      where: str, owner: object) -> None:
    """A SIGTERM raised inside the storage once left a journal's lock file behind and failed the trial
    with a FileNotFoundError, and inside SQLAlchemy made Optuna's tell fail: now it waits for the write."""
    spec = file.replace("///", f"///{tmp_path}/") if file.startswith("sqlite") else str(tmp_path / file)
    study = optuna.create_study(study_name="s", storage=open_storage(spec))
    step = getattr(owner, where)

    def stopped_midway(*args: object) -> object:
        os.kill(os.getpid(), signal.SIGTERM)
        return step(*args)

    def terminate(signum: int, frame: object) -> None:
        raise Terminated

    monkeypatch.setattr(owner, where, stopped_midway)
    interrupt = signal.getsignal(signal.SIGINT)  # the default handler, or SIG_IGN in a background job
    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        with pytest.raises(Terminated):
            study.set_user_attr("written", 1)
    finally:
        signal.signal(signal.SIGTERM, previous)
    monkeypatch.undo()
    assert signal.getsignal(signal.SIGINT) is interrupt  # put back as it was
    assert sorted(path.name for path in tmp_path.iterdir()) == [file.rsplit("/", 1)[-1]]  # no lock file behind
    study.set_user_attr("after", 2)  # the storage goes on working
    reopened = optuna.load_study(study_name="s", storage=open_storage(spec, create=False))
    assert reopened.user_attrs == {"written": 1, "after": 2}


def test_a_failed_write_is_one_study_error_and_leaves_the_journal_whole(tmp_path: Path) -> None:
    """A file size limit cuts the write part way, as a full disk does (Python ignores SIGXFSZ)."""
    journal = tmp_path / "studies.journal"
    new_study(journal).set_user_attr("kept", 1)
    script = textwrap.dedent(f"""
        import resource, optuna
        from studies.errors import StudyError
        from studies.storage.backends import open_storage
        study = optuna.load_study(study_name="s", storage=open_storage({str(journal)!r}))
        size = {journal.stat().st_size}
        resource.setrlimit(resource.RLIMIT_FSIZE, (size + 20, resource.RLIM_INFINITY))
        try:
            study.set_user_attr("lost", "x" * 100)
        except StudyError as exc:
            print(exc)
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    [message] = done.stdout.splitlines()
    assert message.startswith(f"storage='{journal}': cannot write (File too large)")
    study = reload(journal)
    study.set_user_attr("later", 2)  # the next append lands on a fresh line
    assert reload(journal).user_attrs == {"kept": 1, "later": 2}


@pytest.mark.parametrize("content", [b"notes\n", b"notes without a newline", b'{"a": 1}\n', b"\x00\xff\x10"])
def test_a_file_that_is_not_a_journal_is_refused_untouched(tmp_path: Path, content: bytes) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_bytes(content)
    with pytest.raises(StudyError, match=f"^storage='{notes}': is not an Optuna journal"):
        open_storage(str(notes))
    assert notes.read_bytes() == content


def test_a_file_that_is_not_an_sqlite_database_is_refused_untouched(tmp_path: Path) -> None:
    notes = tmp_path / "notes.db"
    notes.write_bytes(b"notes\n")
    with pytest.raises(StudyError, match="is not an SQLite database"):
        open_storage(f"sqlite:///{notes}")
    assert notes.read_bytes() == b"notes\n"
    database = tmp_path / "study.db"
    optuna.create_study(study_name="s", storage=open_storage(f"sqlite:///{database}"))
    assert optuna.load_study(study_name="s", storage=open_storage(f"sqlite:///{database}", create=False))


def test_a_named_pipe_is_refused_instead_of_read_forever(tmp_path: Path) -> None:
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    for create in (True, False):
        with pytest.raises(StudyError, match=f"^storage='{pipe}': is a named pipe, not a file$"):
            open_storage(str(pipe), create=create)
    with pytest.raises(StudyError, match="is a character device"):
        open_storage("/dev/null")


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_an_in_memory_database_is_refused(url: str) -> None:
    with pytest.raises(StudyError, match="in-memory database loses every result"):
        open_storage(url)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes read-only files")
def test_read_only_files_and_folders_are_refused_for_writing_only(tmp_path: Path) -> None:
    journal = tmp_path / "studies.journal"
    new_study(journal)
    journal.chmod(0o444)
    with pytest.raises(StudyError, match="the file is read-only"):
        open_storage(str(journal))
    assert reload(journal).study_name == "s"  # reading is fine
    journal.chmod(0o644)
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(StudyError, match=f"folder {tmp_path} is read-only"):
            open_storage(str(tmp_path / "new.journal"))
    finally:
        tmp_path.chmod(0o755)


def test_a_password_is_never_shown() -> None:
    assert display_storage("postgresql://u:s3cret@127.0.0.1:1/db") == "postgresql://u:***@127.0.0.1:1/db"
    assert display_storage("postgresql://u:p@ss/w@host/db") == "postgresql://u:***@host/db"
    assert display_storage("postgresql://u@host/db") == "postgresql://u@host/db"
    assert display_storage("runs/studies.journal") == "runs/studies.journal"
    # port 1 refuses the connection at once; neither our words nor the driver's may hold the password
    with pytest.raises(StudyError) as refused:
        open_storage("postgresql://u:s3cret@127.0.0.1:1/db")
    assert str(refused.value).startswith("storage='postgresql://u:***@127.0.0.1:1/db': cannot open (")
    assert "s3cret" not in str(refused.value) and "\n" not in str(refused.value)


def test_the_storage_can_come_from_an_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    journal = tmp_path / "studies.journal"
    monkeypatch.setenv("NAS_STORAGE", str(journal))
    optuna.create_study(study_name="s", storage=open_storage("env:NAS_STORAGE"))
    assert reload(journal).study_name == "s"
    assert resolve_storage("env:NAS_STORAGE") == str(journal)
    monkeypatch.delenv("NAS_STORAGE")
    with pytest.raises(StudyError, match="^storage='env:NAS_STORAGE': environment variable NAS_STORAGE is not set$"):
        open_storage("env:NAS_STORAGE")


@pytest.mark.parametrize("variable", ["DECODER_NAS_HEARTBEAT_SECONDS", "DECODER_NAS_GRACE_SECONDS"])
@pytest.mark.parametrize("value", ["abc", "0", "-5", "nan"])
def test_a_malformed_heartbeat_setting_is_one_line_when_used(monkeypatch: pytest.MonkeyPatch, variable: str,
                                                             value: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(StudyError, match=f"^{variable}='{value}': expected a positive number of seconds$"):
        open_storage("postgresql://u@127.0.0.1:1/db")


def test_malformed_timing_settings_do_not_break_imports() -> None:
    env = {**os.environ, "DECODER_NAS_HEARTBEAT_SECONDS": "abc", "DECODER_NAS_GRACE_SECONDS": "abc",
           "DECODER_NAS_LEASE_SECONDS": "abc"}
    done = subprocess.run([sys.executable, "-c", "import studies.storage.backends, studies.workers.leases"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr


# --- secrets and env:VAR on the command line ---------------------------------------------------------


def states(storage: str | Path, name: str) -> list[TrialState]:
    return [t.state for t in load_study(storage, name).get_trials(deepcopy=False)]


def with_password(url: str, password: str) -> str:
    """The URL with `password` for its user (the CI server trusts loopback: any password is accepted)."""
    scheme, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    return f"{scheme}://{credentials.split(':')[0]}:{password}@{host}"


def test_a_database_password_never_reaches_the_output(tmp_path: Path, postgres_url: str) -> None:
    t = make_tiny(tmp_path)
    url = with_password(postgres_url, SECRET)
    name = f"secret-{uuid.uuid4().hex[:8]}"
    argv = t.argv("search", "--trials", "1", "--no-presets", study=name)
    argv[argv.index("--storage") + 1] = url
    done = cli(*argv)
    assert done.code == 0, done.err
    assert f"in {with_password(postgres_url, '***')}" in done.out  # the start line names the storage, masked
    assert "Next:" in done.out and SECRET not in done.out + done.err
    listed = cli("studies", "--storage", url)
    assert listed.code == 0 and name in listed.out and SECRET not in listed.out + listed.err
    assert cli("studies", "--storage", url, "--delete", name).code == 0


def test_a_closed_database_port_is_one_line_without_the_password(tmp_path: Path) -> None:
    t = make_tiny(tmp_path)
    argv = t.argv("search", "--trials", "1")
    argv[argv.index("--storage") + 1] = f"postgresql://u:{SECRET}@127.0.0.1:1/db"
    line = assert_one_line_error(cli(*argv), "search", "postgresql://u:***@127.0.0.1:1/db")
    assert SECRET not in line


def test_an_environment_variable_names_a_journal_for_every_command(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    t = make_tiny(tmp_path / "work")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NAS_JOURNAL", str(t.storage))
    argv = t.argv("search", "--trials", "1", "--no-presets", "--keep-checkpoints", "all")
    argv[argv.index("--storage") + 1] = "env:NAS_JOURNAL"
    done = cli(*argv)
    assert done.code == 0, done.err
    assert "--storage env:NAS_JOURNAL" in done.out  # Next: lines keep the variable, not its value
    assert states(t.storage, "tiny") == [TrialState.COMPLETE]
    assert Path(str(t.storage) + ".artifacts").is_dir()
    done = cli("export", "--study", "tiny", "--storage", "env:NAS_JOURNAL", "--trial", "0", "-o", "best.yaml")
    assert done.code == 0, done.err
    assert (tmp_path / "best-checkpoint" / "model.safetensors").is_file()
    assert not list(tmp_path.glob("env:*")) and not list((tmp_path / "work").glob("env:*"))


@pytest.mark.parametrize("value, message", [
    (None, "environment variable NAS_DB is not set"),
    ("", "environment variable NAS_DB is not set (it is empty)"),
    ("decoder-nas.journal", "is neither a URL"),
    (f"postgresql//nas:{ENV_SECRET}@db-host/nas", "is neither a URL"),  # a mistyped URL: a file name, unchecked
])
def test_env_storage_that_is_unset_empty_or_not_a_url_is_one_line_without_the_password(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str | None, message: str) -> None:
    monkeypatch.chdir(tmp_path)
    if value is None:
        monkeypatch.delenv("NAS_DB", raising=False)
    else:
        monkeypatch.setenv("NAS_DB", value)
    for argv in (["search", "--storage", "env:NAS_DB", "--trials", "0", "--jobs", "1"],
                 ["pareto", "--storage", "env:NAS_DB"]):
        done = cli(*argv)
        line = assert_one_line_error(done, argv[0], "--storage env:NAS_DB", message)
        assert ENV_SECRET not in line + done.out
    assert list(tmp_path.iterdir()) == []  # no journal made from a relative path or a mistyped URL
