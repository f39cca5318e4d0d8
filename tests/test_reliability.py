"""Workers many at once, killed, terminated or interrupted, on PostgreSQL, SQLite or a journal file:
nothing finished is lost, a stopped trial is failed with its reason and retried or requeued, nothing is
left RUNNING.

The PostgreSQL tests need a server: DECODER_NAS_TEST_POSTGRES holds its URL (.ci/run starts one).
Without it they skip, unless DECODER_NAS_REQUIRE_POSTGRES=1, which makes the skip a failure, so CI
can never pass without them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

from studies.cli import main
from studies.errors import Terminated, raise_if_terminated, sigterm_raises
from study_helpers import (  # noqa: F401 (isolated_python_api: an autouse fixture)
    PRESET_NAMES,
    PRESETS_TRAINED,
    Tiny,
    cli,
    interrupt_once,
    isolated_python_api,
    load_study,
    make_tiny,
)

REPO = Path(__file__).resolve().parents[1]
TINY_SPACE = """\
n_layer: {low: 1, high: 2}
d_model: [16, 32]
n_head: [2]
mlp_ratio: [2]
layout: [sequential, parallel]
reduction: [none, linear, conv]
conv_kernel: [1, 3]
reduce_every: {low: 1, high: 2}
reduce_factor: [0.5]
towers: [1, 2]
min_head_dim: 4
"""


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DECODER_NAS_CACHE", str(tmp_path / "cache"))
    (tmp_path / "corpus.txt").write_text("".join(f"line {i}: the quick brown fox jumps over the lazy dog.\n"
                                                 for i in range(400)))
    (tmp_path / "space.yaml").write_text(TINY_SPACE)
    return tmp_path


def study_args(workdir: Path, storage: str, study: str, steps: int = 12) -> list[str]:
    return ["--study", study, "--storage", storage, "--space", str(workdir / "space.yaml"),
            "--data", str(workdir / "corpus.txt"), "--block-size", "16", "--n-layer", "2", "--n-head", "2",
            "--d-model", "16", "--steps", str(steps), "--batch-size", "4", "--eval-windows", "4",
            "--warmup-steps", "2", "--rungs"]  # no early stopping: every trial run completes


def spawn_worker(workdir: Path, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    # One thread each: three workers on two cores would otherwise spend their time contending.
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "studies.cli", "worker", *args], cwd=workdir, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def load(storage: str, name: str) -> optuna.Study:
    """Study `name` as a worker opens its storage (the file may not exist yet)."""
    from studies.storage.backends import open_storage

    return optuna.load_study(study_name=name, storage=open_storage(storage))


def storages(workdir: Path, postgres: str | None) -> str:
    return postgres if postgres else str(workdir / "studies.journal")


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["postgresql", "journal"])
def test_three_workers_three_trials_each_give_exactly_nine(backend, workdir, request):
    storage = storages(workdir, request.getfixturevalue("postgres_url") if backend == "postgresql" else None)
    name = f"concurrent-{uuid.uuid4().hex[:8]}"
    workers = [spawn_worker(workdir, [*study_args(workdir, storage, name), "--trials", "3"]) for _ in range(3)]
    for worker in workers:
        _, err = worker.communicate(timeout=600)
        assert worker.returncode == 0, err
    everything = load(storage, name).get_trials(deepcopy=False)
    trials = [t for t in everything if "reused_from" not in t.user_attrs]  # repeats are not trials run
    assert all(t.state == TrialState.COMPLETE for t in everything)
    assert len(trials) == 9  # (two workers may train one architecture at the same moment: both count)
    assert sorted(t.number for t in everything) == list(range(len(everything)))
    # the four presets were queued exactly once each, whoever created the study
    assert sorted(t.user_attrs["preset"] for t in everything if "preset" in t.user_attrs) == sorted(PRESET_NAMES)


def _kill_mid_trial(worker: subprocess.Popen, storage: str, name: str) -> int:
    """Wait until the worker is inside a trial that has started training, then SIGKILL it."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            running = [t for t in load(storage, name).get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                       if "params" in t.user_attrs]  # cheap measures done: training is under way
        except KeyError:
            running = []
        if running:
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=30)
            return running[0].number
        assert worker.poll() is None, worker.communicate()[1]
        time.sleep(0.1)
    raise AssertionError("the worker never started a trial")


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["postgresql", "journal"])
def test_a_killed_worker_loses_nothing_and_its_trial_is_retried(backend, workdir, request):
    storage = storages(workdir, request.getfixturevalue("postgres_url") if backend == "postgresql" else None)
    name = f"crash-{uuid.uuid4().hex[:8]}"
    fast_expiry = {"DECODER_NAS_HEARTBEAT_SECONDS": "1", "DECODER_NAS_GRACE_SECONDS": "3",
                   "DECODER_NAS_LEASE_SECONDS": "3"}
    # Trials that train for a few seconds (a time budget), so the kill lands mid-training; no presets,
    # so the retry is the next trial the second worker takes.
    args = [*study_args(workdir, storage, name, steps=100_000), "--max-seconds", "6", "--no-presets"]
    first = spawn_worker(workdir, [*args, "--trials", "5"], fast_expiry)
    killed = _kill_mid_trial(first, storage, name)
    before = {t.number: t for t in load(storage, name).get_trials(deepcopy=False, states=(TrialState.COMPLETE,))}

    time.sleep(4)  # past the grace period / lease: the trial's worker is now known dead
    second = spawn_worker(workdir, [*args, "--trials", "1"], fast_expiry)
    _, err = second.communicate(timeout=600)
    assert second.returncode == 0, err

    trials = {t.number: t for t in load(storage, name).get_trials(deepcopy=False)}
    assert trials[killed].state == TrialState.FAIL
    for number, trial in before.items():  # every completed trial is intact
        assert trials[number].state == TrialState.COMPLETE and trials[number].values == trial.values
    retries = [t for t in trials.values()
               if t.user_attrs.get("retried_from") == killed or t.system_attrs.get("failed_trial") == killed]
    assert len(retries) == 1
    assert retries[0].state == TrialState.COMPLETE
    assert retries[0].user_attrs["arch_hash"] == trials[killed].user_attrs["arch_hash"]
    assert sum(t.state == TrialState.COMPLETE for t in trials.values()) == len(before) + 1


@pytest.mark.slow
def test_faults_inside_trials_are_recorded_and_the_study_goes_on(workdir, monkeypatch):
    """A simulated out-of-memory, an exception in the model: each FAIL with its reason, then the next trial."""
    import search_space.model as model

    calls = {"n": 0}
    original = model.Decoder.forward

    def flaky_forward(self, idx, state=None):
        calls["n"] += 1
        if calls["n"] == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        if calls["n"] == 2:
            raise RuntimeError("a bug in the model")
        return original(self, idx, state)

    monkeypatch.setattr(model.Decoder, "forward", flaky_forward)
    storage = str(workdir / "faults.journal")
    assert main(["search", *study_args(workdir, storage, "faults"), "--trials", "3", "--no-presets", "--jobs", "1",
                 "--latency-mode", "forward"]) == 0
    trials = load(storage, "faults").get_trials(deepcopy=False)
    # latency timing calls forward too; the first two forwards of the whole run fail, in trial 0
    reasons = [t.user_attrs.get("fail_reason", "") for t in trials if t.state == TrialState.FAIL]
    assert any(reason.startswith("out of memory") for reason in reasons)
    assert any("a bug in the model" in reason for reason in reasons)
    assert trials[-1].state == TrialState.COMPLETE


@pytest.mark.slow
def test_determinism_same_config_data_seed_same_val_loss(workdir, capsys):
    argv = ["train", "--preset", "lgpt", "--n-layer", "2", "--n-head", "2", "--d-model", "16",
            "--block-size", "16", "--data", str(workdir / "corpus.txt"), "--steps", "15", "--batch-size", "4",
            "--eval-windows", "8", "--json"]
    results = []
    for _ in range(2):
        assert main(argv) == 0
        results.append(capsys.readouterr().out.strip().splitlines()[-1])
    import json

    assert json.loads(results[0])["val_loss"] == json.loads(results[1])["val_loss"]


# --- one worker stopped mid-trial: killed, terminated, interrupted -----------------------------------------


def spawn(t: Tiny, command: str, storage: str, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    argv = t.argv(command, *extra)
    argv[argv.index("--storage") + 1] = storage
    return subprocess.Popen([sys.executable, "-m", "studies.cli", *argv], cwd=REPO,
                            env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_training(worker: subprocess.Popen, storage: str, name: str, complete: int = 0) -> int:
    """The number of a RUNNING trial whose cheap measures are done (it trains), once `complete` are complete."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert worker.poll() is None, worker.communicate()
        try:
            trials = load_study(storage, name).get_trials(deepcopy=False)
        except Exception:  # noqa: BLE001 - not created yet
            trials = []
        training = [t for t in trials if t.state == TrialState.RUNNING and "non_embedding_params" in t.user_attrs]
        if training and sum(t.state == TrialState.COMPLETE for t in trials) >= complete:
            return training[0].number
        time.sleep(0.1)
    raise AssertionError("the worker never started training a trial")


SLOW_RECIPE = ("--steps", "100000", "--rungs", "--no-presets")  # trials train for --max-seconds


@pytest.mark.slow
def test_a_killed_workers_trial_is_failed_after_its_lease_and_retried(tmp_path: Path) -> None:
    t = make_tiny(tmp_path)
    storage, lease = str(t.storage), {"DECODER_NAS_LEASE_SECONDS": "4"}  # renewed every second
    first = spawn(t, "worker", storage, *SLOW_RECIPE, "--max-seconds", "2", "--trials", "5", env=lease)
    killed = wait_for_training(first, storage, "tiny", complete=1)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    before = {t.number: t.values
              for t in load_study(storage, "tiny").get_trials(deepcopy=False, states=(TrialState.COMPLETE,))}
    assert before and load_study(storage, "tiny").get_trials(deepcopy=False)[killed].state == TrialState.RUNNING

    time.sleep(6)  # past its last renewal's lease
    second = spawn(t, "worker", storage, *SLOW_RECIPE, "--max-seconds", "2", "--trials", "1", env=lease)
    _, err = second.communicate(timeout=300)
    assert second.returncode == 0, err

    trials = load_study(storage, "tiny").get_trials(deepcopy=False)
    assert TrialState.RUNNING not in [trial.state for trial in trials]
    assert trials[killed].state == TrialState.FAIL
    [retry] = [trial for trial in trials if trial.user_attrs.get("retried_from") == killed]
    assert retry.state == TrialState.COMPLETE and retry.params == trials[killed].params
    assert {n: trials[n].values for n in before} == before


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["journal", "sqlite"])
def test_sigterm_fails_the_running_trial_as_terminated(tmp_path: Path, backend: str) -> None:
    t = make_tiny(tmp_path)
    storage = str(t.storage) if backend == "journal" else f"sqlite:///{tmp_path / 's.db'}"
    worker = spawn(t, "search", storage, *SLOW_RECIPE, "--max-seconds", "20", "--trials", "1")
    running = wait_for_training(worker, storage, "tiny")
    worker.send_signal(signal.SIGTERM)
    _, err = worker.communicate(timeout=60)
    assert worker.returncode == 143, err
    assert "terminated" in err and "Traceback" not in err
    trials = load_study(storage, "tiny").get_trials(deepcopy=False)
    assert TrialState.RUNNING not in [trial.state for trial in trials]
    assert trials[running].state == TrialState.FAIL
    assert trials[running].user_attrs["fail_reason"] == "terminated"


def test_a_sigterm_python_could_only_print_is_raised_at_the_next_safe_point(monkeypatch) -> None:
    """A SIGTERM whose handler runs inside a garbage-collector callback (seen in CI: sqlalchemy's
    weakref callback) raises Terminated where Python only prints it; the stop must not be lost."""
    printed = []  # what Python would print as "Exception ignored in ..."
    monkeypatch.setattr(sys, "unraisablehook", lambda report: printed.append(report.exc_type))

    class SignalledWhileCollected:
        def __del__(self) -> None:
            signal.raise_signal(signal.SIGTERM)

    with sigterm_raises():
        SignalledWhileCollected()  # its Terminated is swallowed in __del__
        with pytest.raises(Terminated):
            raise_if_terminated()
    assert printed == []  # not printed either: the worker's stderr stays one line
    raise_if_terminated()  # a stop belongs to the run it ended


@pytest.mark.slow
def test_a_promotion_interrupted_mid_trial_is_retrained_by_the_next_promote(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    t = make_tiny(tmp_path)
    assert cli(*t.argv("search", "--trials", "2", "--no-presets")).code == 0
    flags = ["promote", *t.study_flags(), "--steps", "24", "--gap-trials", "0", "--device", "cpu"]
    stopped = interrupt_once(monkeypatch, lambda attrs: "promoted_from" in attrs)
    assert cli(*flags).code == 130
    assert len(stopped) == 1
    monkeypatch.undo()

    done = cli(*flags)
    assert done.code == 0, done.err
    sibling = load_study(t.storage, "tiny@24").get_trials(deepcopy=False)
    promoted = [trial for trial in sibling if trial.user_attrs.get("promoted_from") == stopped[0]["promoted_from"]]
    assert [trial.state for trial in promoted] == [TrialState.FAIL, TrialState.COMPLETE]
    assert TrialState.WAITING not in [trial.state for trial in sibling]


def test_a_preset_interrupted_in_search_is_requeued_and_trained_by_the_next_search(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    t = make_tiny(tmp_path)
    stopped = interrupt_once(monkeypatch, lambda attrs: "preset" in attrs)
    assert cli(*t.argv("search", "--trials", "1")).code == 130
    monkeypatch.undo()

    done = cli(*t.argv("search", "--trials", str(PRESETS_TRAINED)))  # the stopped preset is queued last
    assert done.code == 0, done.err
    trials = load_study(t.storage, "tiny").get_trials(deepcopy=False)
    preset = [trial for trial in trials if trial.user_attrs.get("preset") == stopped[0]["preset"]]
    assert [trial.state for trial in preset] == [TrialState.FAIL, TrialState.COMPLETE]
    assert preset[0].user_attrs["fail_reason"] == "interrupted by the user"
