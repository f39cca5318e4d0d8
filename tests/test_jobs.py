"""studies.jobs: N worker processes sharing one study, one view of them, and stopping them all."""

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
from studies.jobs import JobSpec, job_devices, job_environment, run_jobs
from studies.storage import open_storage
from studies.trial_record import TrialRecord
from study_helpers import RECIPE, SHAPE, Tiny, cli, isolated_python_api, make_tiny  # noqa: F401 (an autouse fixture)


def worker_argv(tiny: Tiny, *extra: str) -> list[str]:
    """The tiny study without presets or early stopping: every trial trained completes."""
    return [*tiny.study_flags(), "--data", str(tiny.corpus), "--space", str(tiny.space), *SHAPE, *RECIPE,
            "--no-presets", *extra, "--rungs"]


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
    assert "4 trials trained by 2 jobs (4 complete)" in lines


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
