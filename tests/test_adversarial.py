"""Adversarial inputs on the newer surfaces: each a one-line error or a documented behaviour, nothing
lost, nothing written outside the places the user named."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from search_space import ConfigError, build_decoder, preset
from search_space import model as model_module
from studies import Search, StudyError
from studies import artifacts as artifacts_module
from studies.front import JOINT_LATENCY_KEY
from studies.storage import open_storage
from study_helpers import (  # noqa: F401 (isolated_python_api: an autouse fixture)
    STEPS,
    Tiny,
    assert_one_line_error,
    cli,
    isolated_python_api,
    make_settings,
    make_tiny,
)

SECRET = "pa55-w0rd"


@pytest.fixture(scope="module")
def kept(tmp_path_factory: pytest.TempPathFactory) -> Tiny:
    """A tiny study whose trials' weights were kept (copy it before changing it). Two trained trials,
    and a repeat between them if the sampler proposes one (it is free)."""
    tiny = make_tiny(tmp_path_factory.mktemp("kept"))
    done = cli(*tiny.argv("search", "--trials", "2", "--no-presets", "--keep-checkpoints", "all"))
    assert done.code == 0, done.err
    return tiny


def trial_count(tiny: Tiny) -> int:
    return len(optuna.load_study(study_name="tiny", storage=open_storage(str(tiny.storage))).trials)


def files(root: Path) -> set[Path]:
    return set(root.rglob("*"))


# --- the artifact folder ---------------------------------------------------------------------------


def test_an_artifact_folder_that_cannot_be_made_is_refused_before_training(kept: Tiny, tmp_path: Path) -> None:
    tiny = kept.copy(tmp_path / "study")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    done = cli(*tiny.argv("search", "--trials", "1", "--keep-checkpoints", "all", "--artifacts", str(blocker / "w")))
    assert_one_line_error(done, "search", f"--artifacts {blocker / 'w'}: cannot create the folder")
    assert trial_count(tiny) == trial_count(kept)  # nothing trained, nothing recorded


def test_an_unwritable_artifact_folder_is_refused_before_training(kept: Tiny, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    tiny = kept.copy(tmp_path / "study")
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)  # root writes anyway: what the OS says is stood in for below
    monkeypatch.setattr(artifacts_module.os, "access", lambda path, mode: Path(path) != folder)
    done = cli(*tiny.argv("search", "--trials", "1", "--keep-checkpoints", "all", "--artifacts", str(folder)))
    assert_one_line_error(done, "search", f"--artifacts {folder}: the folder is not writable")
    assert trial_count(tiny) == trial_count(kept)  # nothing trained, nothing recorded


def test_a_deleted_artifact_folder_fails_export_on_one_line_and_writes_nothing(kept: Tiny, tmp_path: Path) -> None:
    tiny = kept.copy(tmp_path / "study")  # the copy has no artifact folder beside it: as if deleted
    out = tmp_path / "out"
    out.mkdir()
    done = cli("export", *tiny.study_flags(), "--trial", "0", "-o", str(out / "best.yaml"))
    assert_one_line_error(done, "export", "trial 0's weights", "are not in the artifact store")


def test_an_artifact_folder_replaced_by_a_symlink_is_followed(kept: Tiny, tmp_path: Path) -> None:
    # Documented (docs/reliability.md): a symlink is the user's own redirection, as for any path.
    tiny = kept.copy(tmp_path / "study")
    moved = tmp_path / "bigger-disk"
    shutil.copytree(str(kept.storage) + ".artifacts", moved)
    os.symlink(moved, str(tiny.storage) + ".artifacts")
    done = cli("export", *tiny.study_flags(), "--trial", "0", "-o", str(tmp_path / "best.yaml"))
    assert done.code == 0, done.err
    assert (tmp_path / "best-checkpoint" / "config.yaml").is_file()


def test_two_studies_sharing_an_artifact_folder_each_export_their_own_weights(kept: Tiny, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    exported = {}
    for seed, study in enumerate(("one", "two")):  # trained apart: no result reused across them
        argv = kept.argv("search", "--trials", "1", "--no-presets", "--keep-checkpoints", "all", "--artifacts",
                         str(shared), "--seed", str(seed), study=study)
        argv[argv.index("--storage") + 1] = str(tmp_path / "both.journal")
        assert cli(*argv).code == 0
        done = cli("export", "--study", study, "--storage", str(tmp_path / "both.journal"), "--trial", "0",
                   "-o", str(tmp_path / f"{study}.yaml"))
        assert done.code == 0, done.err
        exported[study] = (tmp_path / f"{study}-checkpoint" / "model.safetensors").read_bytes()
    assert exported["one"] != exported["two"]  # each study's own trial 0, not the other's


# --- export paths ----------------------------------------------------------------------------------


@pytest.mark.parametrize("where, message", [
    (lambda root: root, "is a folder; give a .onnx file name"),
    (lambda root: root / "missing" / "m.onnx", "does not exist"),
])
def test_an_onnx_path_that_cannot_be_written_is_refused_before_the_config(kept: Tiny, tmp_path: Path, where,
                                                                        message: str) -> None:
    before = files(tmp_path)
    done = cli("export", *kept.study_flags(), "--trial", "0", "-o", str(tmp_path / "best.yaml"),
               "--onnx", str(where(tmp_path)))
    assert_one_line_error(done, "export", "--onnx", message)
    assert files(tmp_path) == before


def test_onnx_to_a_device_is_one_line_and_the_device_is_kept(kept: Tiny, tmp_path: Path) -> None:
    """The graph is written beside the target and renamed into place: over /dev/full that replaced the device."""
    pytest.importorskip("onnxscript")
    if not Path("/dev/full").is_char_device():
        pytest.skip("no /dev/full here")
    done = cli("export", *kept.study_flags(), "--trial", "0", "-o", str(tmp_path / "best.yaml"), "--onnx", "/dev/full")
    assert_one_line_error(done, "export", "--onnx /dev/full: is not a regular file")
    assert Path("/dev/full").is_char_device()  # not replaced by the exported file


def test_export_into_a_missing_folder_is_one_line(kept: Tiny, tmp_path: Path) -> None:
    done = cli("export", *kept.study_flags(), "--trial", "0", "-o", str(tmp_path / "missing" / "best.yaml"))
    assert_one_line_error(done, "export", "cannot write")
    assert not (tmp_path / "missing").exists()


# --- measure -----------------------------------------------------------------------------------------


def test_measure_on_a_study_without_results_is_one_line(tmp_path: Path) -> None:
    tiny = make_tiny(tmp_path)
    assert cli(*tiny.argv("search", "--trials", "0", "--no-presets")).code == 0
    assert_one_line_error(cli("measure", *tiny.study_flags(), "--device", "cpu"), "measure",
                          "has no complete trials to re-time yet")


@pytest.mark.slow
def test_measure_retimes_a_promoted_sibling(kept: Tiny, tmp_path: Path) -> None:
    tiny = kept.copy(tmp_path / "study")
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
    assert states == [TrialState.COMPLETE] * 2


# --- env:VAR -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("value, message", [
    (None, "environment variable NAS_DB is not set"),
    ("", "environment variable NAS_DB is not set (it is empty)"),
    ("decoder-nas.journal", "is neither a URL"),
    (f"postgresql//nas:{SECRET}@db-host/nas", "is neither a URL"),  # a mistyped URL: a file name, unchecked
])
def test_env_storage_that_is_unset_empty_or_not_a_url_is_one_line_without_the_password(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str | None, message: str) -> None:
    monkeypatch.chdir(tmp_path)
    if value is None:
        monkeypatch.delenv("NAS_DB", raising=False)
    else:
        monkeypatch.setenv("NAS_DB", value)
    for argv in (["search", "--storage", "env:NAS_DB", "--trials", "0", "--jobs", "1"],
                 ["pareto", "--storage", "env:NAS_DB"]):
        done = cli(*argv)
        line = assert_one_line_error(done, argv[0], "--storage env:NAS_DB", message)
        assert SECRET not in line + done.out
    assert list(tmp_path.iterdir()) == []  # no journal made from a relative path or a mistyped URL


# --- the Python API ----------------------------------------------------------------------------------


@pytest.fixture
def search(kept: Tiny, tmp_path: Path) -> Search:
    return Search.load("tiny", str(kept.copy(tmp_path / "study").storage))


@pytest.mark.parametrize("call, message", [
    (lambda s: s.run(trials="3", jobs=1), "trials='3': expected int, not str"),
    (lambda s: s.run(trials=2.5, jobs=1), "trials=2.5: expected int, not float"),
    (lambda s: s.run(trials=True, jobs=1), "trials=True: expected int, not bool"),
    (lambda s: s.run(trials=1, jobs="2"), "jobs='2': expected int or None"),
    (lambda s: s.run(trials=1, jobs=1, keep_checkpoints="some"), "keep_checkpoints='some': is not one of"),
    (lambda s: s.promote(steps="2000"), "steps='2000': expected int"),
    (lambda s: s.measure(rounds=0), "rounds=0: must be at least 1"),
    (lambda s: s.export(trial="0"), "trial='0': expected int"),
    (lambda s: Search.open(None, s.storage), "name=None: expected str"),
    (lambda s: Search.open("tiny", Path(s.storage)), ": expected str"),
    (lambda s: Search.open("nope", s.storage), "unknown study 'nope' (this storage has: tiny)"),
    (lambda s: Search.create("x", s.storage, settings="defaults"), "settings='defaults': expected StudySettings"),
    (lambda s: Search.create("x", s.storage, objectives="val_loss"), "objectives: give a sequence of names"),
    (lambda s: Search.create("x", s.storage, step=5), "unknown setting step"),
])
def test_api_misuse_raises_the_projects_own_error(search: Search, call, message: str) -> None:
    trials = len(search.study.trials)
    with pytest.raises(StudyError) as raised:
        call(search)
    assert message in str(raised.value)
    assert len(search.study.trials) == trials and "x" not in optuna.get_all_study_names(search.study._storage)


def test_a_storage_file_deleted_under_an_open_search_is_a_study_error(search: Search) -> None:
    os.remove(search.storage)
    for call in (search.front, lambda: search.run(trials=1, jobs=1, device="cpu")):
        with pytest.raises(StudyError, match="the file was deleted while study 'tiny' was open"):
            call()
    assert not Path(search.storage).exists()  # not re-created empty


def test_run_twice_and_two_threads_on_one_journal_add_up(tmp_path: Path) -> None:
    # Documented: run() may be called again (it trains more), and threads share a journal safely.
    import threading

    tiny = make_tiny(tmp_path)
    search = Search.create("t", str(tmp_path / "t.journal"), settings=make_settings(data=str(tiny.corpus)),
                           presets=False)
    assert search.run(trials=1, jobs=1, device="cpu").trials_run == 1
    threads = [threading.Thread(target=search.run, kwargs={"trials": 1, "jobs": 1, "device": "cpu"}) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    states = [t.state for t in search.study.get_trials(deepcopy=False)]
    assert len(states) == 3 and set(states) <= {TrialState.COMPLETE, TrialState.PRUNED}  # a rung may stop one


# --- enormous models ---------------------------------------------------------------------------------


def test_an_enormous_model_is_refused_before_allocating(tmp_path: Path) -> None:
    config = tmp_path / "huge.yaml"
    config.write_text("d_model: 65536\nblock_size: 4096\nvocab_size: 50304\ntowers: 64\n"
                      "layers:\n  - {layout: sequential, n_head: 8}\n  - {layout: sequential, n_head: 8}\n")
    started = time.monotonic()
    assert_one_line_error(cli("describe", str(config)), "describe", "the model needs about", "GiB", "this machine has")
    assert time.monotonic() - started < 30


def test_the_memory_check_comes_before_the_build(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model_module, "physical_memory", lambda: 1 << 16)  # a 64 KiB machine
    small = preset("gpt", n_layer=2, n_head=2, d_model=64, block_size=32, vocab_size=65)
    with pytest.raises(ConfigError, match="needs about .* GiB"):
        build_decoder(small)
    assert build_decoder(small, device="meta") is not None  # counting shapes allocates nothing
