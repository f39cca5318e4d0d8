"""The artifact store over a study's life: checked before training, a search stopped on one line when
the store stops taking weights (its partial upload removed), the store recorded by absolute path,
`studies --delete` taking the study's weights with it, and a study deleted under `measure`."""

from __future__ import annotations

import errno
import os
import shutil
import types
from pathlib import Path

import pytest
from optuna.artifacts import FileSystemArtifactStore
from optuna.trial import TrialState

import objectives.latency
import studies.storage.artifacts
from studies.api import delete_study
from studies.storage.artifacts import ARTIFACTS_KEY, WEIGHTS_KEY
from study_helpers import Tiny, assert_one_line_error, cli, load_study, make_tiny, study_names

FILES_PER_CHECKPOINT = 5  # config, weights, optimizer, run.json, tokenizer spec
KEEP = ("--no-presets", "--rungs", "--keep-checkpoints", "all")


def store_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def trials_by_state(tiny: Tiny, study: str | None = None) -> list[TrialState]:
    return [t.state for t in load_study(tiny.storage, study or tiny.study).get_trials(deepcopy=False)]


@pytest.mark.parametrize("failure", ["full", "deleted"])
def test_a_store_that_stops_taking_weights_stops_the_search_on_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: str) -> None:
    t = make_tiny(tmp_path)
    store = tmp_path / "weights"
    real_write = FileSystemArtifactStore.write
    writes: list[str] = []

    def write(self: FileSystemArtifactStore, artifact_id: str, content: object) -> None:
        writes.append(artifact_id)
        if len(writes) <= FILES_PER_CHECKPOINT:  # the first trial's checkpoint goes in whole
            return real_write(self, artifact_id, content)
        if failure == "deleted":
            shutil.rmtree(store, ignore_errors=True)
            return real_write(self, artifact_id, content)
        (store / artifact_id).write_bytes(b"half a file")  # what a full disk leaves
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(FileSystemArtifactStore, "write", write)
    done = cli(*t.argv("search", "--trials", "3", *KEEP, "--artifacts", str(store)))
    reason = "No space left on device" if failure == "full" else "No such file or directory"
    *trial_lines, last = done.err.rstrip("\n").split("\n")  # the live view's line per trial, then the error
    assert done.code == 2 and "Traceback" not in done.err
    assert_one_line_error(last + "\n", "search", f"the artifact store stopped taking weights ({reason})",
                          "partial upload is removed")
    *before, stopped = trials_by_state(t)  # (a repeat reuses a result and uploads nothing)
    assert stopped == TrialState.FAIL and set(before) == {TrialState.COMPLETE}  # no trial after the failed upload
    if failure == "full":  # the first trial's files, none of the second's
        assert len(store_files(store)) == FILES_PER_CHECKPOINT and set(writes[FILES_PER_CHECKPOINT:]).isdisjoint(
            store_files(store))
    failed = load_study(t.storage, t.study).get_trials(deepcopy=False)[-1]
    assert "artifact store" in failed.user_attrs["fail_reason"] and WEIGHTS_KEY not in failed.user_attrs


def test_a_store_on_a_full_disk_is_refused_before_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    t = make_tiny(tmp_path)

    def full(descriptor: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    full_disk = types.SimpleNamespace(**{name: getattr(os, name) for name in dir(os) if not name.startswith("__")})
    full_disk.fsync = full
    monkeypatch.setattr(studies.storage.artifacts, "os", full_disk)
    done = cli(*t.argv("search", "--trials", "2", *KEEP, "--artifacts", str(tmp_path / "weights")))
    assert_one_line_error(done, "search", f"--artifacts {tmp_path / 'weights'}: cannot write (No space left on device)")
    assert not any(state in (TrialState.COMPLETE, TrialState.FAIL) for state in trials_by_state(t))
    assert store_files(tmp_path / "weights") == []  # the probe is gone too


def test_a_relative_store_is_recorded_by_its_absolute_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    t = make_tiny(tmp_path / "study")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    assert cli(*t.argv("search", "--trials", "1", *KEEP, "--artifacts", "weights")).code == 0
    study = load_study(t.storage, t.study)
    assert study.user_attrs[ARTIFACTS_KEY] == str(tmp_path / "a" / "weights")
    monkeypatch.chdir(tmp_path / "b")  # another folder: the study's store is found, nothing is made here
    done = cli("export", *t.study_flags(), "--trial", "0", "-o", "best.yaml")
    assert done.code == 0, done.err
    assert sorted(os.listdir()) == ["best-checkpoint", "best.yaml"]


def test_export_never_makes_the_store_it_reads(two_kept: Tiny, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    t = two_kept.copy(tmp_path / "db")
    monkeypatch.chdir(tmp_path)
    done = cli("export", *t.study_flags(), "--trial", "0", "-o", "best.yaml", "--artifacts", "nowhere/weights")
    assert_one_line_error(done, "export", "not in the artifact store")
    assert sorted(os.listdir(tmp_path)) == ["db"]
    assert ARTIFACTS_KEY not in load_study(t.storage, t.study).user_attrs  # a read-only command records nothing


def test_deleting_a_study_removes_its_kept_weights_and_only_its_own(tmp_path: Path) -> None:
    t = make_tiny(tmp_path)
    store = Path(f"{t.storage}.artifacts")
    assert cli(*t.argv("search", "--trials", "1", *KEEP, study="y")).code == 0
    y_files = store_files(store)
    assert cli(*t.argv("search", "--trials", "2", *KEEP, study="x")).code == 0
    x_files = sorted(set(store_files(store)) - set(y_files))
    assert len(x_files) >= FILES_PER_CHECKPOINT
    (store / "keep-me.txt").write_text("not an artifact")
    done = cli("studies", "--storage", str(t.storage), "--delete", "x")
    assert done.code == 0 and "removed from the artifact store" in done.out, done
    assert store_files(store) == sorted([*y_files, "keep-me.txt"])
    assert cli("export", *t.study_flags("y"), "--trial", "0", "-o", str(tmp_path / "y.yaml")).code == 0


def test_deleting_a_study_whose_store_is_out_of_reach_says_where_its_weights_are(two_kept: Tiny,
                                                                                  tmp_path: Path) -> None:
    t = two_kept.copy(tmp_path / "db")  # its store beside the original, which this copy does not have
    done = cli("studies", "--storage", str(t.storage), "--delete", "tiny")
    assert done.code == 0 and "deleted study 'tiny'" in done.out
    assert done.err.count("\n") == 1 and f"{t.storage}.artifacts" in done.err and "remove them there" in done.err
    assert "tiny" not in study_names(t.storage)


@pytest.mark.parametrize("storage", ["journal", "sqlite"])
def test_a_study_deleted_under_measure_is_one_line(two_kept: Tiny, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    storage: str) -> None:
    if storage == "journal":
        spec = str(two_kept.copy(tmp_path / "db").storage)
    else:
        t = make_tiny(tmp_path)
        spec = f"sqlite:///{tmp_path / 's.db'}"
        argv = t.argv("search", "--trials", "1", "--no-presets")
        argv[argv.index("--storage") + 1] = spec
        assert cli(*argv).code == 0
    real = objectives.latency.measure_together

    def deleted_meanwhile(*args: object, **kwargs: object) -> object:
        timed = real(*args, **kwargs)
        delete_study("tiny", spec)  # another process's `studies --delete`
        return timed

    monkeypatch.setattr(objectives.latency, "measure_together", deleted_meanwhile)
    done = cli("measure", "--study", "tiny", "--storage", spec, "--rounds", "1", "--device", "cpu")
    assert_one_line_error(done, "measure", "study 'tiny' was deleted while this process used it")


def test_a_store_only_the_storage_names_is_never_made(tmp_path: Path) -> None:
    """The study's recorded store is a path the storage says: a worker writes there only if it exists."""
    t = make_tiny(tmp_path)
    store = tmp_path / "shared" / "weights"
    assert cli(*t.argv("search", "--trials", "1", *KEEP, "--artifacts", str(store))).code == 0
    shutil.rmtree(tmp_path / "shared")  # not mounted on this machine, or a name planted in the storage
    done = cli(*t.argv("search", "--trials", "1", *KEEP))
    assert_one_line_error(done, "search", f"--artifacts {store}: the study's artifact store is not on this machine")
    assert not (tmp_path / "shared").exists()
    elsewhere = tmp_path / "here"
    assert cli(*t.argv("search", "--trials", "1", *KEEP, "--artifacts", str(elsewhere))).code == 0
    assert len(store_files(elsewhere)) == FILES_PER_CHECKPOINT
