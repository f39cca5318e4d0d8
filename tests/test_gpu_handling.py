"""The CUDA path's logic, checked on a CPU: which GPU a job sees, the per-GPU timing lock, one device
type per study, reuse by device type, cleanup order, dynamo resets, ONNX Runtime's provider, chunked
evaluation, and CUDA events recorded on the model's own device and stream."""

from __future__ import annotations

import io
import json
import threading
import time
import types
import weakref
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState, create_trial

from objectives import latency as latency_module
from objectives import onnx as onnx_module
from search_space import preset
from studies.errors import StudyError
from studies.workers import gpu_share
from studies.workers import jobs as jobs_module
from studies.workers import trials as trials_module
from studies.workers.devices import DEVICE_TYPE_KEY, claim_device_type
from studies.workers.gpu_share import TrainingShare, gpu_key, timing_turn
from studies.workers.jobs import device_view
from studies.workers.search import run_worker
from studies.workers.trials import _twin_in
from study_helpers import isolated_python_api, make_settings, make_tiny, tiny_study_inputs  # noqa: F401 - autouse
from trainer import loop as loop_module
from trainer.loop import evaluate, train
from trainer.recipe import TrainingRecipe
from trainer.run import initialised_model

CUDA0, CUDA1 = torch.device("cuda", 0), torch.device("cuda", 1)


# --- which GPU a job sees ---------------------------------------------------------------------------------

@pytest.mark.parametrize("device, environ, expected", [
    ("cuda:1", {}, ("cuda:0", {"CUDA_VISIBLE_DEVICES": "1"})),
    ("cuda", {}, ("cuda:0", {"CUDA_VISIBLE_DEVICES": "0"})),
    ("cuda:1", {"CUDA_VISIBLE_DEVICES": "2,3"}, ("cuda:0", {"CUDA_VISIBLE_DEVICES": "3"})),
    ("cuda:0", {"CUDA_VISIBLE_DEVICES": "GPU-a1b2, GPU-c3"}, ("cuda:0", {"CUDA_VISIBLE_DEVICES": "GPU-a1b2"})),
    ("cuda:2", {"CUDA_VISIBLE_DEVICES": "5"}, ("cuda:2", {})),  # beyond what is visible: the worker refuses it
    ("cpu", {}, ("cpu", {})),
    ("auto", {}, ("auto", {})),
])
def test_a_job_on_a_gpu_sees_that_gpu_alone_as_cuda_0(device: str, environ: dict, expected: tuple) -> None:
    assert device_view(device, environ) == expected


def test_each_job_process_gets_its_gpu_in_its_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    launched = []

    class FakePopen:
        def __init__(self, argv, env, **kwargs):
            self.stdin, self.stdout, self.stderr = io.StringIO(), io.StringIO(""), io.StringIO("")
            launched.append((self.stdin, env))

    monkeypatch.setattr(jobs_module.subprocess, "Popen", FakePopen)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    env = jobs_module.job_environment(4)
    messages = jobs_module.queue.Queue()
    spec = jobs_module.JobSpec("s", "s.journal", {})
    for number, device in enumerate(jobs_module.job_devices(4, ["cuda:0", "cuda:1"]), 1):
        jobs_module._start(number, device, spec, 1, env, messages)
    assert [env["CUDA_VISIBLE_DEVICES"] for _, env in launched] == ["0", "1", "0", "1"]
    assert all(json.loads(stdin.getvalue())["device"] == "cuda:0" for stdin, _ in launched)


# --- the per-GPU timing lock ------------------------------------------------------------------------------

@pytest.fixture
def lock_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(gpu_share.tempfile, "gettempdir", lambda: str(tmp_path))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return tmp_path


def test_the_lock_is_per_physical_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-ab/1,3")
    assert gpu_key(CUDA0) == "GPU-ab_1" and gpu_key(CUDA1) == "3"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert gpu_key(CUDA1) == "1"


def test_latency_waits_for_trainers_to_pause_and_they_wait_for_it(lock_folder: Path) -> None:
    events: list[str] = []

    def time_latency() -> None:
        with timing_turn(CUDA0):
            events.append("timing")
            time.sleep(0.2)
            events.append("timed")

    with TrainingShare(CUDA0) as share:
        timer = threading.Thread(target=time_latency)
        timer.start()
        time.sleep(0.3)
        assert events == []  # a trainer's kernels may be in flight: no timing yet
        share.pause()  # a synchronised point: the timer goes first, the trainer resumes after it
        events.append("resumed")
        timer.join(5)
    assert events == ["timing", "timed", "resumed"]


def test_other_gpus_and_the_cpu_are_not_held_up(lock_folder: Path) -> None:
    with TrainingShare(CUDA0):
        started = time.monotonic()
        with timing_turn(CUDA1), timing_turn(torch.device("cpu")):
            pass
        assert time.monotonic() - started < 0.5


# --- one device type per study, reuse by device type ---------------------------------------------------------

def multi_objective_study() -> optuna.Study:
    return optuna.create_study(directions=["minimize", "minimize"])


def test_a_study_refuses_a_worker_of_another_device_type() -> None:
    study = multi_objective_study()
    claim_device_type(study, torch.device("cpu"))
    claim_device_type(study, torch.device("cpu"))
    assert study.user_attrs[DEVICE_TYPE_KEY] == "cpu"
    with pytest.raises(StudyError, match="ran on cpu.*cuda"):
        claim_device_type(study, CUDA0)


def test_a_study_from_before_the_record_is_known_by_its_trials() -> None:
    study = multi_objective_study()
    study.add_trial(create_trial(values=[1.0, 2.0], user_attrs={"device": "cuda:1"}))
    claim_device_type(study, CUDA0)  # cuda:1 and cuda:0 are one type
    with pytest.raises(StudyError, match="ran on cuda"):
        claim_device_type(study, torch.device("cpu"))


def test_reuse_matches_the_device_type_not_the_gpu_index() -> None:
    study = multi_objective_study()
    study.add_trial(create_trial(values=[1.0, 2.0], user_attrs={"arch_hash": "h", "device": "cuda:1"}))
    assert _twin_in(study, "h", None, (TrialState.COMPLETE,), "cuda") is not None
    assert _twin_in(study, "h", None, (TrialState.COMPLETE,), "cpu") is None


@pytest.fixture
def context(tmp_path: Path):
    study = multi_objective_study()
    return study, *tiny_study_inputs(tmp_path, study)


def test_the_worker_refuses_another_device_type_before_any_trial(context) -> None:
    study, settings, data = context
    study.set_user_attr(DEVICE_TYPE_KEY, "cpu")
    with pytest.raises(StudyError, match="ran on cpu"):
        run_worker(study, settings, data, torch.device("cuda"), n_trials=1)
    assert study.trials == []


def test_the_gpu_cache_is_emptied_only_once_the_failed_trial_is_freed(context, monkeypatch, lock_folder) -> None:
    # A "cuda" device on this CPU machine: the trial fails moving its model there, and its traceback
    # holds the model. Emptying the cache before that is released would return nothing to the GPU.
    study, settings, data = context
    models: list[weakref.ref] = []
    alive_at_empty_cache: list[bool] = []

    def recorded_model(config, seed):
        model = initialised_model(config, seed)
        models.append(weakref.ref(model))
        return model

    monkeypatch.setattr(trials_module, "initialised_model", recorded_model)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: alive_at_empty_cache.append(models[-1]() is not None))
    run_worker(study, settings, data, torch.device("cuda"), n_trials=1)
    assert study.trials[0].state == TrialState.FAIL
    assert alive_at_empty_cache == [False]


# --- the training loop, generation-free parts ------------------------------------------------------------------

def tiny_model():
    return initialised_model(preset("gpt", vocab_size=11, block_size=8, n_layer=1, n_head=2, d_model=16), 0)


def test_a_compiled_run_starts_dynamo_afresh(monkeypatch: pytest.MonkeyPatch) -> None:
    resets = []
    monkeypatch.setattr(torch._dynamo, "reset", lambda: resets.append(1))
    monkeypatch.setattr(torch, "compile", lambda model, **kwargs: model)
    tokens = torch.randint(11, (400,), generator=torch.Generator().manual_seed(0))
    recipe = TrainingRecipe(steps=2, batch_size=2, warmup_steps=0, eval_windows=2, compile=True)
    for _ in range(2):
        train(tiny_model(), tokens, tokens, recipe, torch.device("cpu"))
    assert resets == [1, 1]


def test_evaluation_scored_in_slices_gives_the_same_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny_model()
    tokens = torch.randint(11, (400,), generator=torch.Generator().manual_seed(1))
    whole = evaluate(model, tokens, 12, 0, torch.device("cpu"), batch_size=5)
    monkeypatch.setattr(loop_module, "EVAL_CHUNK_ELEMENTS", 11 * 3)  # three rows of logits at a time
    sliced = evaluate(model, tokens, 12, 0, torch.device("cpu"), batch_size=5)
    assert sliced.loss == pytest.approx(whole.loss, rel=1e-6) and sliced.accuracy == whole.accuracy


# --- latency on a GPU: events on the model's own device and stream ---------------------------------------------

def test_cuda_events_are_recorded_on_the_models_device_and_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    guarded, recorded = [], []

    class FakeEvent:
        def __init__(self, enable_timing: bool):
            pass

        def record(self, stream=None):
            recorded.append(stream)

        def synchronize(self):
            pass

        def elapsed_time(self, other):
            return 1.5

    class Guard:
        def __init__(self, device):
            guarded.append(device)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    fake_cuda = types.SimpleNamespace(Event=FakeEvent, device=Guard, synchronize=lambda device=None: None,
                                      current_stream=lambda device=None: f"stream of {device}")
    monkeypatch.setattr(latency_module.torch, "cuda", fake_cuda)
    assert latency_module._milliseconds(CUDA1, lambda: None, time.perf_counter) == 1.5
    assert guarded == [CUDA1]
    assert recorded == [f"stream of {CUDA1}"] * 2


def test_onnxruntime_without_its_cuda_provider_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    ort = types.SimpleNamespace(get_available_providers=lambda: ["CPUExecutionProvider"])
    with pytest.warns(RuntimeWarning, match="no CUDA provider"):
        assert onnx_module._providers(ort, CUDA0) == ["CPUExecutionProvider"]
    ort_gpu = types.SimpleNamespace(get_available_providers=lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert onnx_module._providers(ort_gpu, CUDA1)[0] == ("CUDAExecutionProvider", {"device_id": 1})
