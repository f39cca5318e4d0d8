"""`search --jobs`: N worker processes sharing one study, one view of them, values refused before anything
is made, and stopping them all, or what a dead parent or child leaves."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from rich.console import Console

from studies import Search
from studies.cli.progress import ConsoleJobsView
from studies.errors import StudyError
from studies.storage.backends import open_storage
from studies.workers.jobs import MAX_JOBS_PER_CORE, JobSpec, check_jobs, job_devices, job_environment, run_jobs
from studies.workers.trial_record import TrialRecord
from study_helpers import (  # noqa: F401 (isolated_python_api: an autouse fixture)
    RECIPE,
    SHAPE,
    Tiny,
    assert_one_line_error,
    cli,
    isolated_python_api,
    make_tiny,
)


def worker_argv(tiny: Tiny, *extra: str, presets: bool = False) -> list[str]:
    """The tiny study without early stopping (and, unless asked, without presets): every trial trained completes."""
    return [*tiny.study_flags(), "--data", str(tiny.corpus), "--space", str(tiny.space), *SHAPE, *RECIPE,
            *([] if presets else ["--no-presets"]), *extra, "--rungs"]


def trials_of(tiny: Tiny) -> list[optuna.trial.FrozenTrial]:
    study = optuna.load_study(study_name=tiny.study, storage=open_storage(str(tiny.storage)))
    return study.get_trials(deepcopy=False)


def training_started(tiny: Tiny) -> bool:
    try:
        trials = trials_of(tiny)
    except KeyError:  # the study is not created yet
        return False
    return any(t.state == TrialState.RUNNING and "params" in t.user_attrs for t in trials)  # measures done


def children_of(pid: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (command)": state, ppid, ...
        except (OSError, IndexError):
            continue  # the process ended while we looked
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def test_devices_go_round_robin():
    assert job_devices(8, ["cuda:0", "cuda:1"]) == ["cuda:0", "cuda:1"] * 4
    assert job_devices(3, ["cuda:0", "cuda:1"]) == ["cuda:0", "cuda:1", "cuda:0"]
    assert job_devices(2, None) == ["auto", "auto"]


def test_cores_are_split_evenly_between_jobs(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert job_environment(4)["OMP_NUM_THREADS"] == job_environment(4)["MKL_NUM_THREADS"] == "4"
    assert job_environment(3)["OMP_NUM_THREADS"] == "5"
    assert job_environment(32)["OMP_NUM_THREADS"] == "1"


@pytest.mark.slow
def test_search_jobs_2_shares_its_trials_between_the_processes_of_one_study(tmp_path):
    tiny = make_tiny(tmp_path)
    search = subprocess.run([sys.executable, "-m", "studies", "search", *worker_argv(tiny), "--jobs", "2",
                             "--trials", "4", "--device", "cpu"], capture_output=True, text=True, timeout=300)
    assert search.returncode == 0, search.stderr
    assert "trained 4 trials in 2 processes" in search.stdout and "Pareto front of 'tiny'" in search.stdout
    trials = trials_of(tiny)
    assert sorted(t.number for t in trials) == list(range(len(trials)))
    trained = [t for t in trials if "reused_from" not in t.user_attrs]  # a repeat's result is reused, not trained
    assert len(trained) == 4 and all(t.state == TrialState.COMPLETE for t in trials)
    lines = search.stderr.splitlines()
    assert any(line.startswith("[job 1] trial ") for line in lines), lines
    assert any(line.startswith("[job 2] trial ") for line in lines), lines
    assert any(line.startswith("4 trials trained by 2 jobs (4 complete)") for line in lines), lines


@pytest.mark.slow
def test_sigterm_stops_every_job_and_leaves_no_trial_running(tmp_path):
    tiny = make_tiny(tmp_path)
    # Trials that train for a while, so the signal lands mid-training.
    argv = worker_argv(tiny, "--steps", "100000", "--max-seconds", "60")
    parent = subprocess.Popen([sys.executable, "-m", "studies", "search", *argv, "--jobs", "2", "--trials", "100"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 45
    while not training_started(tiny):
        assert parent.poll() is None, parent.communicate()[1]
        assert time.monotonic() < deadline, "no job started training"
        time.sleep(0.2)
    jobs = children_of(parent.pid)
    assert len(jobs) == 2

    parent.send_signal(signal.SIGTERM)
    _, err = parent.communicate(timeout=30)
    assert parent.returncode == 143, err
    assert any(line.startswith("SIGTERM: stopped 2 jobs") for line in err.splitlines()), err
    assert err.splitlines()[-1].startswith("decoder-nas search: terminated"), err
    assert not [pid for pid in jobs if Path(f"/proc/{pid}").exists()]
    interrupted = [t for t in trials_of(tiny) if t.state != TrialState.COMPLETE]
    assert interrupted and all(t.state == TrialState.FAIL for t in interrupted)


def created(tiny: Tiny) -> JobSpec:
    """The tiny study, created with no trials yet, as a job receives it."""
    assert cli(*tiny.argv("search", "--trials", "0", "--no-presets", "--rungs")).code == 0
    return JobSpec(tiny.study, str(tiny.storage), Search.load(tiny.study, str(tiny.storage)).settings.to_dict())


def test_a_job_takes_its_work_as_data_and_answers_in_json_events(tmp_path):
    spec = created(make_tiny(tmp_path))
    request = {**asdict(spec), "trials": 1, "device": "cpu"}
    job = subprocess.Popen([sys.executable, "-m", "studies.job"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    job.stdin.write(json.dumps(request) + "\n")
    job.stdin.flush()  # and kept open, as the parent does: its end of file stops the job
    out, err = job.stdout.read(), job.stderr.read()
    assert job.wait(timeout=120) == 0, err
    job.stdin.close()
    events = [json.loads(line) for line in out.splitlines()]  # nothing else on stdout
    assert [event["event"] for event in events] == ["trial", "done"]
    record = TrialRecord.from_dict(events[0]["record"])
    assert record.number == 0 and record.state == "complete" and record.trained
    assert set(record.measures) == set(spec.settings["objectives"])
    assert events[1] == {"event": "done", "trained": 1, "exhausted": False}


@pytest.mark.slow
def test_a_failing_job_makes_the_run_fail_with_its_error_line(tmp_path):
    spec = replace(created(make_tiny(tmp_path)), study="elsewhere")
    out = io.StringIO()
    done = run_jobs(spec, jobs=2, trials=2, view=ConsoleJobsView(Console(file=out)))
    assert done.exit_code == 2 and done.trained == 0
    failures = [line for line in out.getvalue().splitlines() if line.startswith("job ")]
    assert len(failures) == 2, out.getvalue()
    for number, line in enumerate(failures, 1):
        assert line.startswith(f"job {number} (auto) failed with exit code 2: "), line
        assert "unknown study 'elsewhere' (this storage has: tiny)" in line


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
    """`search --jobs 2` with trials that train for a while; returns it and its jobs, once both train.
    The two trials are the first two presets: sampled ones could be twins, and one job would wait instead of train."""
    argv = worker_argv(tiny, "--steps", "100000", "--max-seconds", "10", presets=True)
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
    started = [t for t in trials_of(tiny) if t.state != TrialState.WAITING]  # the other presets wait their turn
    assert [t.state for t in started] == [TrialState.FAIL, TrialState.FAIL]
    assert {t.user_attrs["fail_reason"] for t in started} == {"terminated"}


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
    assert lines[-1].startswith("decoder-nas search: error: job 1 (auto) failed with exit code"), err  # and why
    if signum == signal.SIGKILL:
        assert any(line.startswith("job 1 (auto) was killed by SIGKILL") for line in lines), err
    trials = trials_of(tiny)
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    [victim] = [t for t in trials if t.number == victim.number]
    assert victim.state == TrialState.FAIL and victim.user_attrs["fail_reason"] == reason
    assert any(t.state == TrialState.COMPLETE for t in trials)  # the other job went on
