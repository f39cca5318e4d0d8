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


def test_a_process_that_already_loaded_torch_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
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


def test_the_training_loop_asks_the_governor(monkeypatch: pytest.MonkeyPatch, tiny_config, corpus) -> None:
    from search_space import build_decoder
    from trainer.data import prepare_data
    from trainer.loop import TrainingRecipe, train

    samples = (CpuSample(float(i), 1.5 * i, 0.0) for i in range(1000))  # others keep 1.5 cores busy
    monkeypatch.setattr(threads, "cpu_sample", lambda: next(samples))
    monkeypatch.setattr(threads, "CHECK_SECONDS", 0.0)
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    monkeypatch.setattr(threads, "_governor", ThreadGovernor(2))
    data = prepare_data(str(corpus), "char")
    model = build_decoder(tiny_config.replace(vocab_size=data.vocab_size))
    train(model, data.train, data.val, TrainingRecipe(steps=3, batch_size=2, eval_windows=1), torch.device("cpu"))
    assert threads._governor.threads == 1
