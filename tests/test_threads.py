"""Thread and wait policy: chosen by the processes that train, from the load they measure (trainer/threads.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from trainer import threads
from trainer.threads import CpuSample, ThreadGovernor, other_load

CLEAN_ENV = {k: v for k, v in os.environ.items() if k not in threads.USER_SETTINGS}


def test_importing_studies_leaves_the_environment_alone() -> None:
    out = subprocess.run([sys.executable, "-c", "import os, studies, studies.api, studies.cli; "
                          "print(os.environ.get('OMP_WAIT_POLICY'))"],
                         env=CLEAN_ENV, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "None"


def test_a_busy_core_at_the_start_means_passive_waiting() -> None:
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        out = subprocess.run([sys.executable, "-c", "import os; from trainer.threads import configure_process; "
                              "print(configure_process(), os.environ.get('OMP_WAIT_POLICY'))"],
                             env=CLEAN_ENV, capture_output=True, text=True, check=True)
    finally:
        spinner.kill()
        spinner.wait()
    assert out.stdout.split() == ["passive", "PASSIVE"]


@pytest.mark.parametrize("name", threads.USER_SETTINGS)
def test_the_users_own_setting_wins(name: str) -> None:
    out = subprocess.run([sys.executable, "-c", "import os; from trainer.threads import configure_process; "
                          "print(configure_process(), os.environ.get('OMP_WAIT_POLICY'))"],
                         env={**CLEAN_ENV, name: "1"}, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["user", "1" if name == "OMP_WAIT_POLICY" else "None"]


def test_a_process_that_already_loaded_torch_keeps_its_wait_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in threads.USER_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    assert threads.configure_process() == "unchanged"
    assert "OMP_WAIT_POLICY" not in os.environ


def test_other_load_leaves_out_this_process() -> None:
    before, after = CpuSample(0.0, 10.0, 1.0), CpuSample(2.0, 13.0, 2.0)  # 3 core-seconds busy, 1 of them ours
    assert other_load(before, after) == pytest.approx(1.0)


def test_the_governor_follows_the_idle_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    governor = ThreadGovernor(2)
    governor.adapt(1.0)  # one core busy elsewhere: one thread, no sibling to wait for
    assert governor.threads == torch.get_num_threads() == 1
    governor.adapt(0.4)  # between the thresholds: kept, so a load near one does not flap
    assert governor.threads == 1
    governor.adapt(0.0)
    assert governor.threads == torch.get_num_threads() == 2


def threads_seen_by_a_training_run(monkeypatch: pytest.MonkeyPatch, others: float, tiny_config, corpus) -> list[int]:
    """torch's thread count at each progress report of a run in this process, which loaded torch
    first (as a notebook does), with other processes keeping `others` cores busy."""
    from search_space import build_decoder
    from trainer.data import prepare_data
    from trainer.loop import TrainingRecipe, train

    samples = (CpuSample(0.5 * i, others * 0.5 * i, 0.0) for i in range(10_000))  # one sample each 0.5 s
    monkeypatch.setattr(threads, "cpu_sample", lambda: next(samples))
    monkeypatch.setattr(threads, "_last", None)
    monkeypatch.setattr(threads, "CHECK_SECONDS", 0.0)
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    for name in threads.USER_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    data = prepare_data(str(corpus), "char")
    model = build_decoder(tiny_config.replace(vocab_size=data.vocab_size))
    seen: list[int] = []
    recipe = TrainingRecipe(steps=4, batch_size=2, eval_windows=1, report_every=1)
    torch.set_num_threads(2)  # the program's own choice: the ceiling
    train(model, data.train, data.val, recipe, torch.device("cpu"), lambda _: seen.append(torch.get_num_threads()))
    assert torch.get_num_threads() == 2  # restored after the run
    return seen


def test_a_run_in_a_process_that_loaded_torch_first_drops_to_the_idle_cores(
    monkeypatch: pytest.MonkeyPatch, tiny_config, corpus
) -> None:
    assert threads_seen_by_a_training_run(monkeypatch, 1.5, tiny_config, corpus) == [1, 1, 1, 1]
    assert threads_seen_by_a_training_run(monkeypatch, 0.0, tiny_config, corpus) == [2, 2, 2, 2]


def test_a_passive_process_and_the_users_setting_are_left_alone(
    monkeypatch: pytest.MonkeyPatch, tiny_config, corpus
) -> None:
    monkeypatch.setattr(threads, "_passive", True)
    assert threads_seen_by_a_training_run(monkeypatch, 1.5, tiny_config, corpus) == [2, 2, 2, 2]
    monkeypatch.setattr(threads, "_passive", False)
    monkeypatch.setattr(threads, "user_chose", lambda: True)  # OMP_NUM_THREADS or the like was set
    assert threads_seen_by_a_training_run(monkeypatch, 1.5, tiny_config, corpus) == [2, 2, 2, 2]
