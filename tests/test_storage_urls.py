"""Storage specs from a user: every credential form libpq accepts is masked wherever a storage is shown,
a misspelt or unsupported URL is one line saying what to write, and no command that is refused or
only reads creates a storage (or an artifact folder)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import studies.api
from studies.errors import StudyError
from studies.storage.backends import check_storage, display_storage, open_storage
from study_helpers import assert_one_line_error, cli, make_tiny, run

SECRET = "Hunter2-s3cret"
CLOSED = "127.0.0.1:1"  # port 1 refuses a connection at once

# Every place libpq (and so psycopg) takes a password from: the user-info, the query's password= or
# sslpassword= (its key maybe %-escaped), and a keyword=value string; with the password the driver gets.
FORMS = {
    "user-info": (f"postgresql://nas:{SECRET}@{CLOSED}/db", SECRET),
    "query password": (f"postgresql://nas@{CLOSED}/db?password={SECRET}", SECRET),
    "query among others": (f"postgresql://nas@{CLOSED}/db?sslmode=disable&password={SECRET}&connect_timeout=2", SECRET),
    "escaped key": (f"postgresql://nas@{CLOSED}/db?pass%77ord={SECRET}", SECRET),
    "sslpassword": (f"postgresql://nas@{CLOSED}/db?sslpassword={SECRET}", SECRET),
    "both": (f"postgresql://nas:{SECRET}@{CLOSED}/db?password={SECRET}x", SECRET + "x"),
    "with an @ in it": (f"postgresql://nas@{CLOSED}/db?password={SECRET}@x", SECRET + "@x"),
    "keyword=value": (f"host=127.0.0.1 port=1 user=nas password={SECRET} dbname=db", SECRET),
}
CREDENTIAL_FORMS = {form: url for form, (url, _) in FORMS.items()}


@pytest.mark.parametrize("storage, password", FORMS.values(), ids=FORMS.keys())
def test_every_credential_form_is_masked_however_it_is_echoed(storage: str, password: str) -> None:
    shown = display_storage(storage)
    assert SECRET not in shown and "***" in shown
    assert shown.startswith(("postgresql://nas", "host=127.0.0.1"))  # what it is stays readable
    echoed = f"could not connect to {storage!r}: password authentication failed ({password!r})"
    assert SECRET not in display_storage(storage, echoed)


def test_an_escaped_password_is_masked_in_every_spelling() -> None:
    storage = "postgresql://nas:p%40ss%2Fw0rd@db-host/nas?sslpassword=k%20ey"
    for spelling in ("p%40ss%2Fw0rd", "p@ss/w0rd", "k%20ey", "k ey"):
        assert spelling not in display_storage(storage, f"driver said: {spelling}")
    assert display_storage(storage) == "postgresql://nas:***@db-host/nas?sslpassword=***"


@pytest.mark.parametrize("storage", CREDENTIAL_FORMS.values(), ids=CREDENTIAL_FORMS.keys())
def test_no_command_prints_a_password_in_any_form(storage: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NAS_DB", storage)
    for given in (storage, "env:NAS_DB"):
        for argv in (["pareto"], ["studies"], ["search", "--trials", "0", "--jobs", "1"], ["measure"],
                     ["export", "--pick", "knee", "-o", "x.yaml"], ["dashboard", "--port", "1"]):
            done = cli(*argv, "--storage", given)
            assert done.code == 2, (argv, done)
            assert SECRET not in done.out + done.err, (argv, given, done.err)
            assert_one_line_error(done, argv[0])
    assert list(tmp_path.iterdir()) == []


def test_an_internal_error_quoting_the_url_is_masked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    storage = CREDENTIAL_FORMS["query password"]

    def broken(spec: str) -> None:
        raise RuntimeError(f"driver lost {spec} mid-query\nsecond line")

    monkeypatch.setattr(studies.api, "open_reader", broken)
    done = cli("studies", "--storage", storage)
    assert done.code == 1 and done.err.count("\n") == 1, done.err
    assert "internal error: RuntimeError: driver lost postgresql://nas@127.0.0.1:1/db?password=***" in done.err
    assert SECRET not in done.err


def test_the_banner_and_next_lines_mask_a_query_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """An SQLite URL can carry a query too: the start line, the front's title and the Next: lines show it masked."""
    t = make_tiny(tmp_path)
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///s.db?password={SECRET}"
    real = studies.api.open_storage
    monkeypatch.setattr(studies.api, "open_storage", lambda spec, create=True: real("sqlite:///s.db", create))
    argv = t.argv("search", "--trials", "1", "--no-presets")
    argv[argv.index("--storage") + 1] = url
    done = run(capsys, *argv)
    assert done.code == 0, done.err
    assert "sqlite:///s.db?password=***" in done.out and "Next:" in done.out
    assert SECRET not in done.out + done.err


@pytest.mark.parametrize("storage, words", [
    ("sqlite:/x.db", "give sqlite:///FILE"),
    ("sqlite:x.db", "give sqlite:///FILE"),
    ("sqlite://x.db", "an SQLite URL has no host; give sqlite:///FILE"),
    ("SQLite:/x.db", "give sqlite:///FILE"),
    ("postgresql:/db-host/nas", "give postgresql://USER@HOST/DB"),
    (f"postgres://nas:{SECRET}@db-host/nas", "write the scheme as postgresql://"),
    (f"mysql://nas:{SECRET}@db-host/nas", "MySQL is not supported"),
    (f"mysql+pymysql://nas:{SECRET}@db-host/nas", "MySQL is not supported"),
    (f"mariadb://nas:{SECRET}@db-host/nas", "MariaDB is not supported"),
    (f"host=db-host password={SECRET}", "keyword=value string; give it as a URL"),
])
def test_a_misspelt_or_unsupported_storage_says_what_to_write(storage: str, words: str, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for argv in (["search", "--trials", "0", "--jobs", "1"], ["pareto"], ["studies"]):
        done = cli(*argv, "--storage", storage)
        line = assert_one_line_error(done, argv[0], words)
        assert SECRET not in line
    with pytest.raises(StudyError, match=words.split(";")[0]):
        check_storage(storage)
    assert list(tmp_path.iterdir()) == []  # never a folder `sqlite:` or a file named after the URL


def test_a_journal_whose_name_only_looks_like_a_key_is_still_a_journal(tmp_path: Path) -> None:
    journal = tmp_path / "a=b.journal"
    open_storage(str(journal))
    assert journal.exists()


READ_ONLY = (["pareto"], ["pareto", "--json"], ["studies"], ["studies", "--delete", "tiny"], ["measure"],
             ["export", "--pick", "knee", "-o", "best.yaml"], ["export", "--trial", "0", "-o", "best.yaml"],
             ["promote", "--steps", "100"], ["dashboard", "--port", "1"])


@pytest.mark.parametrize("storage", ["decoder-nas.journal", "sqlite:///x.db", "sub.journal"])
def test_no_read_only_command_creates_a_storage_or_a_folder(storage: str, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for argv in READ_ONLY:
        done = cli(*argv, "--storage", storage, "--artifacts", "weights") if argv[0] in ("export", "dashboard", "promote") \
            else cli(*argv, "--storage", storage)
        line = assert_one_line_error(done, argv[0], "no such file", "decoder-nas search")
        assert storage in line, line  # names the storage it looked for
        assert os.listdir(tmp_path) == [], (argv, os.listdir(tmp_path))


@pytest.mark.parametrize("storage", ["decoder-nas.journal", "sqlite:///x.db"])
@pytest.mark.parametrize("refused", [
    ["--data", "missing.txt"],
    ["--objectives", "val_loss", "no_such_measure"],
    ["--block-size", "100000"],
    ["--n-head", "3"],  # the presets cannot be built at this shape
    ["--jobs", "100000"],
])
def test_a_refused_search_leaves_no_storage_behind(storage: str, refused: list[str], tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    t = make_tiny(tmp_path / "inputs")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    argv = t.argv("search", "--trials", "1")
    argv[argv.index("--storage") + 1] = storage
    for flag in refused[::2]:  # the refused value replaces the tiny study's own
        if flag in argv:
            del argv[argv.index(flag):argv.index(flag) + 2]
    assert_one_line_error(cli(*argv, *refused), "search")
    assert os.listdir(work) == []
