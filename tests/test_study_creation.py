"""Creating a study: its name is only a name (never a path, never reserved, misleading or too long),
studies of other tools beside it, and values every trial would fail on refused before anything is made:
a refused creation leaves no study, and the same command is refused the same way again."""

from __future__ import annotations

import shlex
import time
from pathlib import Path

import optuna
import pytest
import yaml

from studies import StudyError
from studies.api import check_study_name
from study_helpers import (  # noqa: F401 (isolated_python_api: an autouse fixture)
    TINY_SPACE,
    assert_one_line_error,
    cli,
    interrupt_once,
    isolated_python_api,
    load_study,
    make_tiny,
    study_names,
)


def files_under(root: Path) -> set[Path]:
    return {path for path in root.rglob("*")}


def foreign_study(storage: Path, name: str) -> None:
    from studies.storage.backends import open_storage

    study = optuna.create_study(study_name=name, storage=open_storage(str(storage)), directions=["minimize"] * 2)
    for value in (1.0, 2.0):
        study.tell(study.ask(), [value, 3.0 - value])


def _space_with(tmp_path: Path, **changes) -> Path:
    space = tmp_path / "bad-space.yaml"
    space.write_text(yaml.safe_dump({**TINY_SPACE, **changes}).replace("'.nan'", ".nan").replace("'.inf'", ".inf"))
    return space


# --- names ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["exp@laptop", "", "   ", "x" * 300, "tab\there"])
def test_names_that_would_collide_or_mislead_are_refused(name: str) -> None:
    with pytest.raises(StudyError):
        check_study_name(name)


@pytest.mark.parametrize("kind", ["absolute", "relative"])
def test_a_study_name_never_becomes_a_path(tmp_path: Path, kind: str) -> None:
    box = tmp_path / "box"  # the corpus cache is in tmp_path
    t = make_tiny(box / "deep" / "er" / "work")
    victim = box / "victim"
    (victim / "trial-99").mkdir(parents=True)
    (victim / "trial-99" / "model.safetensors").write_bytes(b"someone's weights")
    name = str(victim) if kind == "absolute" else "../../escaped"
    before = files_under(box)

    done = cli(*t.argv("search", "--trials", "2", "--no-presets", "--keep-checkpoints", "front", study=name))
    assert done.code == 0, done.err
    assert load_study(t.storage, name).get_trials(deepcopy=False)  # the name is the study's name, nothing more
    store = Path(str(t.storage) + ".artifacts")
    outside = {path for path in files_under(box) - before if path.parent != t.root and store not in path.parents}
    assert outside == set(), outside  # only the journal (and its lock) and the artifact store are new
    assert list(store.iterdir())  # the front's weights are there
    assert (victim / "trial-99" / "model.safetensors").read_bytes() == b"someone's weights"
    assert not (box / "escaped").exists() and not (box / "deep" / "escaped").exists()


def test_a_300_character_study_name_is_refused_before_any_training(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    t = make_tiny(tmp_path)
    trained = interrupt_once(monkeypatch, lambda attrs: True, RuntimeError)
    done = cli(*t.argv("search", "--trials", "1", study="x" * 300))
    assert_one_line_error(done, "search", "200")
    assert trained == []
    assert not t.storage.exists() or study_names(t.storage) == []


def test_a_name_with_a_space_is_quoted_in_the_next_lines(tmp_path: Path) -> None:
    t = make_tiny(tmp_path / "a folder")
    done = cli(*t.argv("search", "--trials", "1", "--no-presets", study="my exp"))
    assert done.code == 0, done.err
    lines = done.out.split("Next:\n", 1)[1].strip().splitlines()
    assert len(lines) == 5
    for line in lines:
        words = shlex.split(line.split("decoder-nas ", 1)[1])
        assert words[words.index("--study") + 1] == "my exp"
        assert words[words.index("--storage") + 1] == str(t.storage)


# --- studies made by other tools ------------------------------------------------------------------


def test_a_study_named_with_an_at_by_another_tool_does_not_break_pareto(tmp_path: Path) -> None:
    t = make_tiny(tmp_path)
    assert cli(*t.argv("search", "--trials", "1", "--no-presets", study="exp")).code == 0
    foreign_study(t.storage, "exp@laptop")
    done = cli("pareto", "--study", "exp", "--storage", str(t.storage))
    assert done.code == 0, done.err
    assert_one_line_error(cli(*t.argv("search", "--trials", "1", study="exp@laptop")), "search", "'@' is reserved")
    assert len(load_study(t.storage, "exp@laptop").get_trials(deepcopy=False)) == 2  # untouched


def test_a_plain_optuna_study_is_refused_at_once(tmp_path: Path) -> None:
    storage = tmp_path / "s.journal"
    foreign_study(storage, "plain")
    started = time.monotonic()
    done = cli("pareto", "--study", "plain", "--storage", str(storage))
    assert time.monotonic() - started < 5
    assert_one_line_error(done, "pareto", "'plain'", "decoder-nas")


# --- refused before the study is created --------------------------------------------------------------


def test_a_refused_creation_leaves_no_study(tmp_path: Path) -> None:
    t = make_tiny(tmp_path)
    argv = t.argv("search", "--trials", "1", "--n-head", "3", "--d-model", "32")
    first = cli(*argv)
    line = assert_one_line_error(first, "search", "n_head")
    assert not t.storage.exists() or study_names(t.storage) == []
    if t.storage.exists():
        assert "tiny" not in cli("studies", "--storage", str(t.storage)).out
    assert assert_one_line_error(cli(*argv), "search") == line


@pytest.mark.parametrize("extra, fragment", [
    (["--beta2", "2"], "beta2"),
    (["--lr", "nan"], "lr"),
    (["--block-size", "100000"], "block_size"),
    ("mlp_ratio_nan", "mlp_ratio"),
    ("mlp_ratio_inf", "mlp_ratio"),
    ("reduce_factor_nan", "reduce_factor"),
])
def test_values_every_trial_would_fail_on_are_refused_before_creation(tmp_path: Path, extra, fragment: str) -> None:
    t = make_tiny(tmp_path)
    if isinstance(extra, str):
        key, value = extra.rsplit("_", 1)
        space = _space_with(tmp_path, **{key: [f".{value}"]})
        extra, fragment = ["--space", str(space)], f"{space}.{key}"  # named where it is written: the space file
    for _ in range(2):
        assert_one_line_error(cli(*t.argv("search", "--trials", "1", *extra)), "search", fragment)
        assert not t.storage.exists() or study_names(t.storage) == []
