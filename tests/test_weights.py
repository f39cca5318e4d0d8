"""Kept weights and their export: `--keep-checkpoints` stores a trial's weights as Optuna artifacts,
`export` finds them (on another machine through `--artifacts`) and hands over the trial's own weights
with its config, or nothing; the dashboard is given the artifact store.

Module fixtures run the searches once: `kept` (four sampled trials, every one's weights kept) and
`two_studies` (studies x and y, each training both architectures of a two-architecture space with its
own seed); `two_kept` (two trials, weights kept) is conftest.py's. A test that changes files works on
its own copy of the journal and the artifact folder.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.artifacts import FileSystemArtifactStore, get_all_artifact_meta
from optuna.trial import FrozenTrial, TrialState

from search_space import architecture_hash, load_config
from studies import api
from studies.storage import artifacts as artifacts_module
from studies.storage.artifacts import CONFIG_FILE, WEIGHTS_KEY
from studies.storage.backends import open_storage
from study_helpers import (  # noqa: F401 (isolated_python_api: an autouse fixture)
    SINGLE_SPACE,
    Tiny,
    assert_one_line_error,
    cli,
    isolated_python_api,
    load_study,
    make_tiny,
    quiet_datasets,
    working_copy,
)
from trainer.checkpoint import load_checkpoint

SEARCH = ("--trials", "4", "--no-presets", "--sampler", "random", "--sampler-seed", "0", "--rungs")
WEIGHTS = "model.safetensors"


def search_keeping(root: Path, keep: str) -> Tiny:
    tiny = make_tiny(root)
    with pytest.MonkeyPatch.context() as patch, quiet_datasets():
        patch.setenv("DECODER_NAS_CACHE", str(root / "cache"))
        result = cli(*tiny.argv("search", *SEARCH, "--keep-checkpoints", keep))
    assert result.code == 0, result.err
    return tiny


@pytest.fixture(scope="module")
def kept(tmp_path_factory: pytest.TempPathFactory) -> Tiny:
    """Four sampled trials, every one's weights kept."""
    return search_keeping(tmp_path_factory.mktemp("kept"), "all")


def complete(tiny: Tiny) -> list[FrozenTrial]:
    study = optuna.load_study(study_name=tiny.study, storage=open_storage(str(tiny.storage)))
    return [t for t in study.get_trials() if t.state == TrialState.COMPLETE and "reused_from" not in t.user_attrs]


def artifact_files(folder: Path) -> set[str]:
    return {path.name for path in folder.iterdir()} if folder.is_dir() else set()


# --- weights kept as Optuna artifacts --------------------------------------------------------------------


def test_kept_weights_are_optuna_artifacts_beside_the_storage(kept: Tiny) -> None:
    store = Path(str(kept.storage) + ".artifacts")
    trials = complete(kept)
    assert len(trials) >= 2
    for trial in trials:
        record = trial.user_attrs[WEIGHTS_KEY]
        assert record["arch_hash"] == trial.user_attrs["arch_hash"]
        # the whole checkpoint, the tokenizer folder included: without it the weights do not load
        assert {"model.safetensors", CONFIG_FILE, "run.json", "tokenizer/tokenizer_spec.json"} <= set(record["files"])
        assert set(record["files"].values()) <= artifact_files(store)
        metas = get_all_artifact_meta(trial, storage=open_storage(str(kept.storage)))
        assert {m.artifact_id for m in metas} == set(record["files"].values())


def test_export_on_a_second_machine_finds_the_weights_through_artifacts(
    kept: Tiny, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The journal and the store land in unrelated folders at another absolute path.
    other = kept.copy(tmp_path / "machine2" / "db")
    store = tmp_path / "machine2" / "weights"
    shutil.copytree(str(kept.storage) + ".artifacts", store)
    elsewhere = tmp_path / "machine2" / "work"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    trial = complete(kept)[0]

    lost = cli("export", *other.study_flags(), "--trial", str(trial.number), "-o", "lost.yaml")
    assert_one_line_error(lost, "export", "not in the artifact store", "--artifacts")  # nothing beside the copy

    result = cli("export", *other.study_flags(), "--trial", str(trial.number), "-o", "best.yaml",
                 "--artifacts", str(store))
    assert result.code == 0, result.err
    folder = elsewhere / "best-checkpoint"
    assert "weights: best-checkpoint" in result.out
    checkpoint = load_checkpoint(folder)
    assert architecture_hash(checkpoint.config) == trial.user_attrs["arch_hash"]
    assert checkpoint.record["metrics"]["val_loss"] == pytest.approx(trial.user_attrs["val_loss"])
    assert checkpoint.tokenizer.vocab_size > 1


def test_weights_of_another_architecture_are_refused(kept: Tiny, tmp_path: Path) -> None:
    other = kept.copy(tmp_path / "copy")
    store = tmp_path / "copy" / "weights"
    shutil.copytree(str(kept.storage) + ".artifacts", store)
    first, second = [t for t in complete(kept)][:2]
    assert first.user_attrs["arch_hash"] != second.user_attrs["arch_hash"]
    config_id = first.user_attrs[WEIGHTS_KEY]["files"][CONFIG_FILE]
    shutil.copyfile(store / second.user_attrs[WEIGHTS_KEY]["files"][CONFIG_FILE], store / config_id)

    result = cli("export", *other.study_flags(), "--trial", str(first.number), "-o", str(tmp_path / "x.yaml"),
                 "--artifacts", str(store))
    assert_one_line_error(result, "export", f"trial {first.number}'s weights", second.user_attrs["arch_hash"],
                          first.user_attrs["arch_hash"])


def test_keep_front_removes_the_weights_of_trials_off_the_front(tmp_path: Path) -> None:
    tiny = search_keeping(tmp_path, "front")
    search = api.Search.open(tiny.study, str(tiny.storage))
    front = {t.number for t in search.front_trials()}
    trials = complete(tiny)
    off_front = [t for t in trials if t.number not in front]
    assert front and off_front  # this seed leaves trials behind the front
    kept_ids = {i for t in trials if t.number in front for i in t.user_attrs[WEIGHTS_KEY]["files"].values()}
    assert artifact_files(Path(str(tiny.storage) + ".artifacts")) == kept_ids
    exported = search.export(trial=min(front), path=tmp_path / "f.yaml")
    assert exported.weights is not None and load_checkpoint(exported.weights).config is not None
    with pytest.raises(api.StudyError, match="not in the artifact store"):
        search.export(trial=off_front[0].number, path=tmp_path / "g.yaml")


def test_the_dashboard_is_given_the_artifact_store(
    kept: Tiny, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import optuna_dashboard

    calls: list[dict] = []
    monkeypatch.setattr(optuna_dashboard, "run_server", lambda storage, **kwargs: calls.append(kwargs))
    api.serve_dashboard(str(kept.storage))  # the store beside the storage
    store = calls[-1]["artifact_store"]
    assert isinstance(store, FileSystemArtifactStore)
    assert Path(store._base_path) == Path(str(kept.storage) + ".artifacts").resolve()  # noqa: SLF001

    elsewhere = tmp_path / "weights"
    assert cli("dashboard", "--storage", str(kept.storage), "--artifacts", str(elsewhere)).code == 0
    assert Path(calls[-1]["artifact_store"]._base_path) == elsewhere  # noqa: SLF001

    bare = kept.copy(tmp_path / "bare")  # no folder beside it: no store, and none created
    api.serve_dashboard(str(bare.storage))
    assert calls[-1]["artifact_store"] is None
    assert not Path(str(bare.storage) + ".artifacts").exists()


def test_two_storages_in_one_folder_keep_their_own_weights(tmp_path: Path) -> None:
    t = make_tiny(tmp_path, SINGLE_SPACE)  # one architecture: only the weights tell the trials apart
    weights = {}
    for storage, seed in (("a.journal", "0"), ("b.journal", "1")):
        argv = t.argv("search", "--trials", "1", "--no-presets", "--keep-checkpoints", "all", "--seed", seed)
        argv[argv.index("--storage") + 1] = str(tmp_path / storage)
        argv[argv.index("--study"):argv.index("--study") + 2] = []  # the default study name in both
        done = cli(*argv)
        assert done.code == 0, done.err
        exported = tmp_path / f"{storage}-best.yaml"
        done = cli("export", "--storage", str(tmp_path / storage), "--trial", "0", "-o", str(exported))
        assert done.code == 0, done.err
        checkpoint = tmp_path / f"{storage}-best-checkpoint"
        weights[storage] = (checkpoint / "model.safetensors").read_bytes()
        provenance = yaml.safe_load(exported.read_text())["provenance"]
        [trial] = load_study(tmp_path / storage, provenance["study"]).get_trials(deepcopy=False)
        assert provenance["arch_hash"] == trial.user_attrs["arch_hash"]
        kept = trial.user_attrs["weights"]["files"]["model.safetensors"]
        assert (tmp_path / f"{storage}.artifacts" / kept).read_bytes() == weights[storage]
    assert weights["a.journal"] != weights["b.journal"]


# --- the artifact folder ------------------------------------------------------------------------------


def trial_count(tiny: Tiny) -> int:
    return len(optuna.load_study(study_name="tiny", storage=open_storage(str(tiny.storage))).trials)


def files(root: Path) -> set[Path]:
    return set(root.rglob("*"))


def test_an_artifact_folder_that_cannot_be_made_is_refused_before_training(two_kept: Tiny, tmp_path: Path) -> None:
    tiny = two_kept.copy(tmp_path / "study")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    done = cli(*tiny.argv("search", "--trials", "1", "--keep-checkpoints", "all", "--artifacts", str(blocker / "w")))
    assert_one_line_error(done, "search", f"--artifacts {blocker / 'w'}: cannot create the folder")
    assert trial_count(tiny) == trial_count(two_kept)  # nothing trained, nothing recorded


def test_an_unwritable_artifact_folder_is_refused_before_training(two_kept: Tiny, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    tiny = two_kept.copy(tmp_path / "study")
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)  # root writes anyway: what the OS says is stood in for below
    monkeypatch.setattr(artifacts_module.os, "access", lambda path, mode: Path(path) != folder)
    done = cli(*tiny.argv("search", "--trials", "1", "--keep-checkpoints", "all", "--artifacts", str(folder)))
    assert_one_line_error(done, "search", f"--artifacts {folder}: the folder is not writable")
    assert trial_count(tiny) == trial_count(two_kept)  # nothing trained, nothing recorded


def test_a_deleted_artifact_folder_fails_export_on_one_line_and_writes_nothing(two_kept: Tiny, tmp_path: Path) -> None:
    tiny = two_kept.copy(tmp_path / "study")  # the copy has no artifact folder beside it: as if deleted
    out = tmp_path / "out"
    out.mkdir()
    done = cli("export", *tiny.study_flags(), "--trial", "0", "-o", str(out / "best.yaml"))
    assert_one_line_error(done, "export", "trial 0's weights", "are not in the artifact store")


def test_an_artifact_folder_replaced_by_a_symlink_is_followed(two_kept: Tiny, tmp_path: Path) -> None:
    # Documented (docs/reliability.md): a symlink is the user's own redirection, as for any path.
    tiny = two_kept.copy(tmp_path / "study")
    moved = tmp_path / "bigger-disk"
    shutil.copytree(str(two_kept.storage) + ".artifacts", moved)
    os.symlink(moved, str(tiny.storage) + ".artifacts")
    done = cli("export", *tiny.study_flags(), "--trial", "0", "-o", str(tmp_path / "best.yaml"))
    assert done.code == 0, done.err
    assert (tmp_path / "best-checkpoint" / "config.yaml").is_file()


def test_two_studies_sharing_an_artifact_folder_each_export_their_own_weights(two_kept: Tiny, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    exported = {}
    for seed, study in enumerate(("one", "two")):  # trained apart: no result reused across them
        argv = two_kept.argv("search", "--trials", "1", "--no-presets", "--keep-checkpoints", "all", "--artifacts",
                         str(shared), "--seed", str(seed), study=study)
        argv[argv.index("--storage") + 1] = str(tmp_path / "both.journal")
        assert cli(*argv).code == 0
        done = cli("export", "--study", study, "--storage", str(tmp_path / "both.journal"), "--trial", "0",
                   "-o", str(tmp_path / f"{study}.yaml"))
        assert done.code == 0, done.err
        exported[study] = (tmp_path / f"{study}-checkpoint" / "model.safetensors").read_bytes()
    assert exported["one"] != exported["two"]  # each study's own trial 0, not the other's


# --- export hands over the trial's own weights, or nothing ---------------------------------------------


@pytest.fixture(scope="module")
def two_studies(tmp_path_factory: pytest.TempPathFactory) -> Tiny:
    """Studies x and y in one storage, each training both architectures of a two-architecture space
    with its own training seed (so y reuses nothing of x), every trial's weights kept."""
    tiny = make_tiny(tmp_path_factory.mktemp("kept"), {**SINGLE_SPACE, "mlp_ratio": [2, 4]})
    with pytest.MonkeyPatch.context() as patch, quiet_datasets():
        patch.setenv("DECODER_NAS_CACHE", str(tiny.root / "cache"))
        for study, seed in (("x", "0"), ("y", "1")):
            done = cli(*tiny.argv("search", "--trials", "2", "--no-presets", "--rungs", "--keep-checkpoints", "all",
                                  "--seed", seed, study=study))
            assert done.code == 0, done.err
    return tiny


@pytest.fixture
def copy(two_studies: Tiny, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Tiny:
    """The storage and its artifact folder copied; the test runs in an empty folder beside them."""
    return working_copy(two_studies, tmp_path, monkeypatch)


def trained(tiny: Tiny, study: str) -> list[FrozenTrial]:
    trials = optuna.load_study(study_name=study, storage=open_storage(str(tiny.storage))).get_trials()
    return [t for t in trials if t.state == TrialState.COMPLETE and WEIGHTS_KEY in t.user_attrs]


def stored(tiny: Tiny, trial: FrozenTrial, name: str = WEIGHTS) -> Path:
    return Path(str(tiny.storage) + ".artifacts") / trial.user_attrs[WEIGHTS_KEY]["files"][name]


def export(tiny: Tiny, study: str, trial: FrozenTrial, output: str = "best.yaml"):
    return cli("export", *tiny.study_flags(study), "--trial", str(trial.number), "-o", output)


@pytest.mark.parametrize("swap", ["garbage", "another architecture", "the same architecture, another trial"])
def test_weights_swapped_in_the_store_are_refused(copy: Tiny, swap: str) -> None:
    first, second = trained(copy, "x")
    assert first.user_attrs["arch_hash"] != second.user_attrs["arch_hash"]
    [twin] = [t for t in trained(copy, "y") if t.user_attrs["arch_hash"] == first.user_attrs["arch_hash"]]
    source = {"another architecture": second, "the same architecture, another trial": twin}.get(swap)
    if source is None:
        stored(copy, first).write_bytes(b"not weights at all")
    else:
        assert stored(copy, source).read_bytes() != stored(copy, first).read_bytes()
        shutil.copyfile(stored(copy, source), stored(copy, first))

    result = export(copy, "x", first)
    assert_one_line_error(result, "export", f"trial {first.number}'s {WEIGHTS}", "not the file its worker uploaded")
    assert list(Path.cwd().iterdir()) == []  # no config, no checkpoint, no staging folder left behind


def test_re_exporting_to_one_file_replaces_the_config_and_the_weights_together(copy: Tiny) -> None:
    first, second = trained(copy, "x")
    for trial in (first, second):
        result = export(copy, "x", trial)
        assert result.code == 0, result.err
        assert load_config("best.yaml").provenance["trial"] == trial.number
        assert architecture_hash(load_config("best-checkpoint/config.yaml")) == trial.user_attrs["arch_hash"]
        assert Path("best-checkpoint", WEIGHTS).read_bytes() == stored(copy, trial).read_bytes()
    assert sorted(p.name for p in Path.cwd().iterdir()) == ["best-checkpoint", "best.yaml"]


def test_a_refused_re_export_leaves_the_previous_one_as_it_was(copy: Tiny) -> None:
    first, second = trained(copy, "x")
    assert export(copy, "x", first).code == 0
    before = {p: p.read_bytes() for p in Path.cwd().rglob("*") if p.is_file()}
    stored(copy, second).write_bytes(b"damaged")
    assert_one_line_error(export(copy, "x", second), "export", "not the file its worker uploaded")
    assert {p: p.read_bytes() for p in Path.cwd().rglob("*") if p.is_file()} == before


def test_a_trial_without_weights_takes_the_previous_export_s_checkpoint_with_it(copy: Tiny) -> None:
    first, _ = trained(copy, "x")
    assert export(copy, "x", first).code == 0
    # study z trains like x: its trial reuses x's result, and a reused trial has no weights of its own
    assert cli(*copy.argv("search", "--trials", "0", "--no-presets", "--rungs", "--seed", "0", study="z")).code == 0
    optuna.load_study(study_name="z", storage=open_storage(str(copy.storage))).enqueue_trial(first.params)
    assert cli(*copy.argv("search", "--trials", "1", "--no-presets", "--rungs", "--max-complete", "1",
                          study="z")).code == 0
    reused = optuna.load_study(study_name="z", storage=open_storage(str(copy.storage))).get_trials()[0]  # the queued one
    assert reused.user_attrs["reused_from_study"] == "x" and WEIGHTS_KEY not in reused.user_attrs
    result = export(copy, "z", reused)
    assert result.code == 0, result.err
    assert "weights:" not in result.out and [p.name for p in Path.cwd().iterdir()] == ["best.yaml"]


def test_a_folder_in_the_checkpoint_s_place_that_no_export_wrote_is_not_touched(copy: Tiny) -> None:
    first, _ = trained(copy, "x")
    Path("best-checkpoint").mkdir()
    Path("best-checkpoint", "notes.txt").write_text("mine")
    assert_one_line_error(export(copy, "x", first), "export", "best-checkpoint exists and is not a checkpoint")
    assert Path("best-checkpoint", "notes.txt").read_text() == "mine" and not Path("best.yaml").exists()


# --- export paths ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("where, message", [
    (lambda root: root, "is a folder; give a .onnx file name"),
    (lambda root: root / "missing" / "m.onnx", "does not exist"),
])
def test_an_onnx_path_that_cannot_be_written_is_refused_before_the_config(two_kept: Tiny, tmp_path: Path, where,
                                                                        message: str) -> None:
    before = files(tmp_path)
    done = cli("export", *two_kept.study_flags(), "--trial", "0", "-o", str(tmp_path / "best.yaml"),
               "--onnx", str(where(tmp_path)))
    assert_one_line_error(done, "export", "--onnx", message)
    assert files(tmp_path) == before


def test_onnx_to_a_device_is_one_line_and_the_device_is_kept(two_kept: Tiny, tmp_path: Path) -> None:
    """The graph is written beside the target and renamed into place: over /dev/full that replaced the device."""
    pytest.importorskip("onnxscript")
    if not Path("/dev/full").is_char_device():
        pytest.skip("no /dev/full here")
    done = cli("export", *two_kept.study_flags(), "--trial", "0", "-o", str(tmp_path / "best.yaml"),
               "--onnx", "/dev/full")
    assert_one_line_error(done, "export", "--onnx /dev/full: is not a regular file")
    assert Path("/dev/full").is_char_device()  # not replaced by the exported file


def test_export_into_a_missing_folder_is_one_line(two_kept: Tiny, tmp_path: Path) -> None:
    done = cli("export", *two_kept.study_flags(), "--trial", "0", "-o", str(tmp_path / "missing" / "best.yaml"))
    assert_one_line_error(done, "export", f"the folder {tmp_path / 'missing'} does not exist")
    assert not (tmp_path / "missing").exists()


def test_export_refuses_a_file_name_it_cannot_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tiny = make_tiny(tmp_path)
    assert cli(*tiny.argv("search", "--trials", "1", "--no-presets")).code == 0
    for output, fragment in (("best.txt", ".yaml or .json"), (str(tmp_path), "is a folder"),
                             ("/dev/full", ".yaml or .json")):
        result = cli("export", *tiny.study_flags(), "--pick", "knee", "-o", output)
        assert result.code == 2 and fragment in result.err and "Traceback" not in result.err
    def disk_full(config, path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("studies.export.export_files.save_config", disk_full)
    result = cli("export", *tiny.study_flags(), "--pick", "knee", "-o", str(tmp_path / "best.yaml"))
    assert result.code == 2 and "No space left on device" in result.err and "Traceback" not in result.err
