"""`export` hands over the weights a trial trained, or nothing (issue 26).

Files swapped in the artifact store after upload are refused by their SHA-256, and a config is never
left beside another trial's weights: re-exporting to one `-o` replaces both or neither.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from search_space import architecture_hash, load_config
from studies.artifacts import WEIGHTS_KEY
from studies.storage import open_storage
from study_helpers import SINGLE_SPACE, Tiny, assert_one_line_error, cli, make_tiny, quiet_datasets

WEIGHTS = "model.safetensors"


@pytest.fixture(scope="module")
def kept(tmp_path_factory: pytest.TempPathFactory) -> Tiny:
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
def copy(kept: Tiny, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Tiny:
    """The storage and its artifact folder copied; the test runs in an empty folder beside them."""
    tiny = kept.copy(tmp_path / "db")
    shutil.copytree(str(kept.storage) + ".artifacts", str(tiny.storage) + ".artifacts")
    (tmp_path / "out").mkdir()
    monkeypatch.chdir(tmp_path / "out")
    monkeypatch.setenv("DECODER_NAS_CACHE", str(kept.root / "cache"))
    return tiny


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
    [reused] = optuna.load_study(study_name="z", storage=open_storage(str(copy.storage))).get_trials()
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
