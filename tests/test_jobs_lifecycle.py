"""`search --jobs`: values refused before anything is made, and what a dead parent or child leaves (issue 26)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from studies.errors import StudyError
from studies.jobs import MAX_JOBS_PER_CORE, check_jobs
from study_helpers import Tiny, assert_one_line_error, cli, make_tiny, quiet_datasets
from test_jobs import children_of, training_started, trials_of, worker_argv


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
    (("--device", "tpu"), "--device tpu:"),
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


def start_training_jobs(tiny: Tiny) -> tuple[subprocess.Popen, list[int]]:
    """`search --jobs 2` with trials that train for a while; returns it and its jobs, once both train."""
    argv = worker_argv(tiny, "--steps", "100000", "--max-seconds", "10")
    parent = subprocess.Popen([sys.executable, "-m", "studies", "search", *argv, "--jobs", "2", "--trials", "2"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not sum(t.state == TrialState.RUNNING and "params" in t.user_attrs for t in running_or_none(tiny)) == 2:
        assert parent.poll() is None, parent.communicate()[1]
        assert time.monotonic() < deadline, "the jobs did not start training"
        time.sleep(0.2)
    jobs = children_of(parent.pid)
    assert len(jobs) == 2
    return parent, jobs


def running_or_none(tiny: Tiny) -> list[optuna.trial.FrozenTrial]:
    return trials_of(tiny) if training_started(tiny) else []


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads processes from /proc")
def test_jobs_whose_parent_is_killed_stop_and_fail_their_trials(tmp_path: Path) -> None:
    tiny = make_tiny(tmp_path)
    parent, jobs = start_training_jobs(tiny)
    parent.kill()  # SIGKILL: the parent can do nothing more
    parent.communicate(timeout=30)
    deadline = time.monotonic() + 30
    while any(alive(pid) for pid in jobs):
        assert time.monotonic() < deadline, "jobs train on without their parent"
        time.sleep(0.2)
    trials = trials_of(tiny)
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL]
    assert {t.user_attrs["fail_reason"] for t in trials} == {"terminated"}


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads processes from /proc")
@pytest.mark.parametrize("signum, reason", [(signal.SIGKILL, "its worker was killed by SIGKILL"),
                                            (signal.SIGTERM, "terminated")])
def test_a_job_killed_under_its_parent_fails_the_run_and_leaves_no_trial_running(
    tmp_path: Path, signum: int, reason: str
) -> None:
    tiny = make_tiny(tmp_path)
    parent, jobs = start_training_jobs(tiny)
    [victim] = [t for t in trials_of(tiny) if t.user_attrs.get("worker", "").endswith(f":{jobs[0]}")]
    os.kill(jobs[0], signum)
    _, err = parent.communicate(timeout=120)
    assert parent.returncode not in (0, 130, 143), err  # the parent was not stopped: a job failed
    lines = err.splitlines()
    assert lines[-1].startswith("decoder-nas search: error: a job failed"), err
    if signum == signal.SIGKILL:
        assert any(line.startswith("job 1 (auto) was killed by SIGKILL") for line in lines), err
    trials = trials_of(tiny)
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    [victim] = [t for t in trials if t.number == victim.number]
    assert victim.state == TrialState.FAIL and victim.user_attrs["fail_reason"] == reason
    assert any(t.state == TrialState.COMPLETE for t in trials)  # the other job went on
