"""Latency in a study: ONNX Runtime as a latency backend, the front re-timed together (`measure`,
and at the end of `search`; a promoted sibling, a study beside a running worker), KV-cache and weight
bytes as constraints and objectives, and `export --onnx` reproducing PyTorch's logits.

One tiny study with the presets and latency as an objective, weights kept (module fixture), is
shared by the read-only tests; `measure` works on a copy of its journal.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from optuna.trial import FrozenTrial, TrialState

import objectives.onnx as onnx_module
from search_space import load_config
from studies.api import MEASURE_PASSES
from studies.fronts.front import JOINT_LATENCY_KEY, complete_trials, front_trials
from studies.settings import read_settings
from studies.storage.backends import open_storage
from studies.workers import trials as trials_module
from study_helpers import (  # noqa: F401
    PRESET_NAMES,
    PRESETS_TRAINED,
    STEPS,
    TINY_SPACE,
    Result,
    Tiny,
    assert_one_line_error,
    cli,
    isolated_python_api,
    load,
    make_tiny,
    quiet_datasets,
)
from trainer.checkpoint import load_checkpoint
from trainer.run import initialised_model

LATENCY = ("--objectives", "val_loss", "latency_ms")


@pytest.fixture(scope="module")
def timed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Tiny, Result]:
    """The presets (cgpt reuses lgpt) and one sampled trial, on val_loss and latency, weights kept."""
    tiny = make_tiny(tmp_path_factory.mktemp("timed"))
    with pytest.MonkeyPatch.context() as patch, quiet_datasets():
        patch.setenv("DECODER_NAS_CACHE", str(tiny.root / "cache"))
        result = cli(*tiny.argv("search", *LATENCY, "--trials", str(PRESETS_TRAINED + 1), "--sampler", "random",
                                "--sampler-seed", "0", "--rungs", "--keep-checkpoints", "all"))
    assert result.code == 0, result.err
    return tiny, result


def timed_together(study: optuna.Study) -> list[FrozenTrial]:
    """The trials `measure` re-times: the front and the presets, one per architecture."""
    settings = read_settings(study)
    members = {t.user_attrs["arch_hash"]: t for t in front_trials(study, settings)}
    for trial in complete_trials(study, settings.objectives):
        if "preset" in trial.user_attrs:
            members.setdefault(trial.user_attrs["arch_hash"], trial)
    return list(members.values())


# --- the ONNX Runtime backend -----------------------------------------------------------------------


@pytest.mark.slow
def test_a_study_timed_in_onnx_runtime_runs_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tiny = make_tiny(tmp_path)
    runners = []
    real = onnx_module.onnx_runner
    monkeypatch.setattr(onnx_module, "onnx_runner", lambda *a, **k: runners.append(a[0]) or real(*a, **k))
    result = cli(*tiny.argv("search", *LATENCY, "--latency-backend", "onnxruntime", "--trials", "2", "--no-presets",
                            "--sampler", "random", "--sampler-seed", "0", "--rungs"))
    assert result.code == 0, result.err
    study = load(tiny)
    assert read_settings(study).latency.backend == "onnxruntime"
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(trials) == 2
    for trial in trials:
        assert trial.user_attrs["latency_ms"] > 0 and trial.values[1] == trial.user_attrs["latency_ms"]
    # each trial timed once in ONNX Runtime, then the front re-timed there too (no torch timing): every
    # member once per pass, and another pass when the new latencies changed the front
    retimed = len(study.user_attrs[JOINT_LATENCY_KEY]["latency_ms"])
    assert 2 + retimed <= len(runners) <= 2 + MEASURE_PASSES * retimed


def test_onnx_runtime_cannot_time_decoding_and_no_study_is_made(tmp_path: Path) -> None:
    tiny = make_tiny(tmp_path)
    result = cli(*tiny.argv("search", "--latency-backend", "onnxruntime", "--latency-mode", "decode"))
    assert_one_line_error(result, "search", "--latency-backend/--latency-mode", "decode", "KV cache")
    assert not tiny.storage.exists() or optuna.get_all_study_names(open_storage(str(tiny.storage))) == []


# --- re-timing the front together ---------------------------------------------------------------------


def test_search_ends_by_retiming_the_front_and_presets(timed: tuple[Tiny, Result]) -> None:
    tiny, result = timed
    study = load(tiny)
    members = timed_together(study)
    joint = study.user_attrs[JOINT_LATENCY_KEY]
    front = json.loads(cli("pareto", *tiny.study_flags(), "--json").out)  # the counts agree with pareto --json
    assert f"re-timed {len(joint['latency_ms'])} architectures together: the {len(front)} on the front" in result.out
    assert set(joint["latency_ms"]) == {t.user_attrs["arch_hash"] for t in members}
    assert joint["device"] == "cpu" and joint["rounds"] >= 1
    # after the trials ran, before the front is shown
    lines = result.out.splitlines()
    retimed = next(i for i, line in enumerate(lines) if line.startswith("re-timed"))
    assert lines[retimed - 1].startswith("trained ")
    assert retimed < next(i for i, line in enumerate(lines) if "Pareto front of" in line)


def test_measure_retimes_together_and_the_views_use_it(timed: tuple[Tiny, Result], tmp_path: Path) -> None:
    tiny = timed[0].copy(tmp_path / "copy")
    before = {t.number: t.user_attrs["latency_ms"] for t in load(tiny).get_trials()}
    measured_before = load(tiny).user_attrs[JOINT_LATENCY_KEY]["measured_at"]

    result = cli("measure", *tiny.study_flags(), "--rounds", "2", "--device", "cpu")
    assert result.code == 0, result.err
    assert re.search(r"re-timed \d+ architectures together: the \d+ on the front.* of 'tiny' \(2 interleaved "
                     r"rounds, torch\)", result.out)
    study = load(tiny)
    joint = study.user_attrs[JOINT_LATENCY_KEY]
    assert joint["rounds"] == 2 and joint["measured_at"] > measured_before
    latencies = joint["latency_ms"]

    # every trial in storage keeps the latency it was measured with
    assert {t.number: t.user_attrs["latency_ms"] for t in study.get_trials()} == before
    # the views read the joint latency; the trial's own stays beside it
    overlaid = complete_trials(study, read_settings(study).objectives)
    for trial in overlaid:
        arch = trial.user_attrs["arch_hash"]
        if arch in latencies:
            assert trial.user_attrs["latency_ms"] == latencies[arch] == trial.values[1]
            assert trial.user_attrs["latency_ms_trial"] == before[trial.number]
    pareto = cli("pareto", *tiny.study_flags(), "--json")
    assert pareto.code == 0, pareto.err
    points = json.loads(pareto.out)
    hashes = {t.number: t.user_attrs["arch_hash"] for t in overlaid}
    assert points and all(point["latency_ms"] == latencies[hashes[point["number"]]] for point in points)
    assert {t.user_attrs["arch_hash"] for t in timed_together(study)} <= set(latencies)


def test_measure_on_a_study_without_results_is_one_line(tmp_path: Path) -> None:
    tiny = make_tiny(tmp_path)
    assert cli(*tiny.argv("search", "--trials", "0", "--no-presets")).code == 0
    assert_one_line_error(cli("measure", *tiny.study_flags(), "--device", "cpu"), "measure",
                          "has no complete trials to re-time yet")


@pytest.mark.slow
def test_measure_retimes_a_promoted_sibling(two_kept: Tiny, tmp_path: Path) -> None:
    tiny = two_kept.copy(tmp_path / "study")
    assert cli("promote", *tiny.study_flags(), "--steps", str(2 * STEPS), "--gap-trials", "0", "--device", "cpu",
               "--top", "1").code == 0
    done = cli("measure", *tiny.study_flags(), "--steps", str(2 * STEPS), "--rounds", "1", "--device", "cpu")
    assert done.code == 0, done.err
    sibling = optuna.load_study(study_name=f"tiny@{2 * STEPS}", storage=open_storage(str(tiny.storage)))
    assert f"of 'tiny@{2 * STEPS}'" in done.out and sibling.user_attrs[JOINT_LATENCY_KEY]["rounds"] == 1


@pytest.mark.slow
def test_measure_while_a_worker_trains_leaves_the_worker_going(tmp_path: Path) -> None:
    tiny = make_tiny(tmp_path)
    slow = ("--steps", "100000", "--max-seconds", "10", "--rungs", "--no-presets")  # trials train for 10 s
    assert cli(*tiny.argv("search", "--trials", "1", *slow)).code == 0
    argv = tiny.argv("worker", "--trials", "1", *slow)
    worker = subprocess.Popen([sys.executable, "-m", "studies", *argv], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not [t for t in optuna.load_study(study_name="tiny", storage=open_storage(str(tiny.storage))).trials
               if t.state == TrialState.RUNNING and "params" in t.user_attrs]:
        assert worker.poll() is None and time.monotonic() < deadline, worker.communicate()
        time.sleep(0.2)
    done = cli("measure", *tiny.study_flags(), "--rounds", "1", "--device", "cpu")
    assert done.code == 0, done.err
    _, err = worker.communicate(timeout=120)
    assert worker.returncode == 0, err
    states = [t.state for t in optuna.load_study(study_name="tiny", storage=open_storage(str(tiny.storage))).trials]
    # Unseeded, the worker may first draw trial 0's architecture again: reused free, then one more trained.
    assert len(states) >= 2 and set(states) == {TrialState.COMPLETE}


# --- KV cache and weight bytes ----------------------------------------------------------------------


def test_max_kv_cache_mb_refuses_samples_before_training_and_kv_cache_is_an_objective(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tiny = make_tiny(tmp_path, {**TINY_SPACE, "d_model": [16], "towers": [1]})  # most samples fit: a short test
    trained = []
    real = trials_module.run_training
    monkeypatch.setattr(trials_module, "run_training", lambda config, *a, **k: trained.append(config) or
                        real(config, *a, **k))
    # the paper's presets (2 layers of d16) hold 256 bytes per token; llama's one KV head 128, lfm2's one attention
    # layer 64; one layer of d16 holds 128
    limit_bytes = 200
    result = cli(*tiny.argv("search", "--objectives", "val_loss", "kv_cache_bytes", "--max-kv-cache-mb",
                            str(limit_bytes / 1e6), "--trials", "4", "--sampler", "random", "--sampler-seed", "0",
                            "--rungs"))
    assert result.code == 0, result.err
    study = load(tiny)
    trials = study.get_trials()
    presets = {t.user_attrs["preset"]: t for t in trials if "preset" in t.user_attrs}
    assert list(presets) == PRESET_NAMES
    infeasible = [t for t in trials if t.user_attrs.get("infeasible")]
    assert {name for name, t in presets.items() if t in infeasible} == {"gpt", "pgpt", "lgpt", "cgpt"}
    for trial in trials:
        assert trial.user_attrs["kv_cache_bytes"] > 0 and trial.user_attrs["weights_bytes"] > 0
    for trial in infeasible:
        assert trial.state == TrialState.PRUNED and trial.user_attrs["kv_cache_bytes"] > limit_bytes
        assert trial.user_attrs["pruned_reason"].startswith("infeasible: kv_cache_bytes")
        assert "val_loss" not in trial.user_attrs
    feasible = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(feasible) == len(trained) == 4  # only feasible samples were ever trained: llama, lfm2 and two more
    for trial in feasible:
        assert trial.user_attrs["kv_cache_bytes"] <= limit_bytes
        assert trial.values == [trial.user_attrs["val_loss"], trial.user_attrs["kv_cache_bytes"]]
    assert study.metric_names == ["val_loss", "kv_cache_bytes"]

    table = cli("pareto", *tiny.study_flags())
    assert table.code == 0, table.err
    header = next(line for line in table.out.splitlines() if "trial" in line and "val_loss" in line)
    assert "kv_cache_bytes" in header and "weights_bytes" in header
    assert any(re.search(rf"│\s+{t.number} │", line) and " 128 " in line for t in feasible
               for line in table.out.splitlines())


# --- export --onnx --------------------------------------------------------------------------------


def onnx_logits(path: Path, idx: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {onnx_module.INPUT_NAME: idx})[0]


def test_export_onnx_writes_the_trained_model(timed: tuple[Tiny, Result], tmp_path: Path) -> None:
    tiny = timed[0]
    result = cli("export", *tiny.study_flags(), "--pick", "knee", "-o", str(tmp_path / "model.yaml"),
                 "--onnx", str(tmp_path / "model.onnx"))
    assert result.code == 0, result.err
    assert "(trained weights;" in result.out
    checkpoint = load_checkpoint(tmp_path / "model-checkpoint")
    config = load_config(tmp_path / "model.yaml")
    assert checkpoint.config.replace(provenance=None) == config.replace(provenance=None)
    idx = np.random.default_rng(0).integers(0, config.vocab_size, size=(1, config.block_size), dtype=np.int64)
    expected = checkpoint.model.eval()(torch.from_numpy(idx)).detach().numpy()
    got = onnx_logits(tmp_path / "model.onnx", idx)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-4)
    untrained = initialised_model(config, checkpoint.recipe.seed).eval()(torch.from_numpy(idx)).detach().numpy()
    assert np.abs(got - untrained).max() > 1e-2  # the kept weights, not a fresh initialisation
    shorter = idx[:, : config.block_size // 2]  # the sequence axis is dynamic
    np.testing.assert_allclose(onnx_logits(tmp_path / "model.onnx", shorter), expected[:, : shorter.shape[1]],
                               atol=1e-4)


@pytest.mark.slow
def test_export_onnx_without_kept_weights_is_refused_unless_untrained_is_asked_for(tmp_path: Path) -> None:
    tiny = make_tiny(tmp_path)
    assert cli(*tiny.argv("search", "--trials", "1", "--no-presets", "--sampler", "random", "--rungs")).code == 0
    export = ("export", *tiny.study_flags(), "--trial", "0", "-o", str(tmp_path / "m.yaml"),
              "--onnx", str(tmp_path / "m.onnx"))
    assert_one_line_error(cli(*export), "export", "no trained weights", "decoder-nas train", "--untrained")
    assert not (tmp_path / "m.yaml").exists() and not (tmp_path / "m.onnx").exists()  # nothing half-written
    result = cli(*export, "--untrained")
    assert result.code == 0, result.err
    assert "UNTRAINED" in result.out and not (tmp_path / "m-checkpoint").exists()
    config = load_config(tmp_path / "m.yaml")
    idx = np.arange(config.block_size, dtype=np.int64)[None] % config.vocab_size
    expected = initialised_model(config, config.provenance["recipe"]["seed"]).eval()(torch.from_numpy(idx))
    np.testing.assert_allclose(onnx_logits(tmp_path / "m.onnx", idx), expected.detach().numpy(), atol=1e-4)
