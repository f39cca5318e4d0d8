"""`search --jobs`: values refused before anything is made, and what a dead parent or child leaves (issue 26)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from study_helpers import Tiny, assert_one_line_error, cli, make_tiny, quiet_datasets

from studies.errors import StudyError
from studies.jobs import MAX_JOBS_PER_CORE, check_jobs


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DECODER_NAS_CACHE", str(tmp_path / "cache"))
    with quiet_datasets():
        yield


def search_argv(tiny: Tiny, *extra: str) -> list[str]:
    argv = tiny.argv("search", "--trials", "1", "--no-presets")
    at = argv.index("--jobs")
    return [*argv[:at], *argv[at + 2:], *extra]  # the test's own --jobs, if any


@pytest.mark.parametrize("extra, fragment", [
    (("--jobs", "0"), "--jobs 0: give at least 1"),
    (("--jobs", "-1"), "--jobs -1: give at least 1"),
    (("--jobs", "1000"), "--jobs 1000: at most"),
    (("--devices", "cpu,,cpu"), "an empty entry"),
    (("--devices", ""), "an empty entry"),
    (("--devices", "gpu"), "'gpu' is not a torch device"),
    (("--devices", "cpu,cuda:7"), "cuda:7"),
    (("--device", "tpu"), "--device 'tpu'"),
])
def test_bogus_jobs_and_devices_are_refused_before_the_study_is_created(tmp_path: Path, extra: tuple[str, ...],
                                                                         fragment: str) -> None:
    tiny = make_tiny(tmp_path)
    assert_one_line_error(cli(*search_argv(tiny, *extra)), "search", fragment)
    assert not tiny.storage.exists() and not Path(str(tiny.storage) + ".artifacts").exists()


def test_the_jobs_limit_follows_the_cores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    check_jobs(16 * MAX_JOBS_PER_CORE, ["cpu"])
    with pytest.raises(StudyError, match=f"at most {16 * MAX_JOBS_PER_CORE} on this machine's 16 CPU cores"):
        check_jobs(16 * MAX_JOBS_PER_CORE + 1, ["cpu"])
