"""What `export` writes: names read from the storage never become paths, every output is checked before
any work (no two at one place, none over what the export reads, no link followed), and the config, the
weights, the HF folder and the ONNX file appear together or not at all. The HF folder's model card
shows anyone's text as text, and its files share one mode.

`kept` is conftest.py's `two_kept` study copied, with its artifact folder; each test runs in an empty
folder `out` beside it.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest

from search_space import load_config
from studies.export import hf_folder
from studies.export.model_export import export_run
from studies.storage.artifacts import DIGESTS_KEY, WEIGHTS_KEY
from studies.storage.backends import open_storage
from study_helpers import Tiny, assert_one_line_error, cli, working_copy
from test_hf_export import LAYER_KINDS, run_folder
from trainer.checkpoint import load_checkpoint

LONG = "a" * 300  # longer than any file name may be


@pytest.fixture
def kept(two_kept: Tiny, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Tiny:
    return working_copy(two_kept, tmp_path, monkeypatch)


def kept_trial(tiny: Tiny) -> optuna.trial.FrozenTrial:
    study = optuna.load_study(study_name=tiny.study, storage=open_storage(str(tiny.storage), create=False))
    return next(t for t in study.get_trials() if WEIGHTS_KEY in t.user_attrs)


def export(tiny: Tiny, *outputs: str, trial: int | None = None) -> Any:
    return cli("export", *tiny.study_flags(), "--trial", str(kept_trial(tiny).number if trial is None else trial),
               *outputs)


def files_under(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --- names from the storage are data -------------------------------------------------------------------


def tamper(tiny: Tiny, change: Callable[[dict[str, Any]], Any]) -> None:
    """Replace the kept trial's weights record in the journal by what `change` makes of it, as anyone who
    can write the storage could."""
    trial_id = kept_trial(tiny)._trial_id  # noqa: SLF001
    lines = tiny.storage.read_text(encoding="utf-8").splitlines(keepends=True)
    for index, line in enumerate(lines):
        record = json.loads(line)
        if record.get("trial_id") == trial_id and WEIGHTS_KEY in record.get("user_attr", {}):
            record["user_attr"][WEIGHTS_KEY] = change(record["user_attr"][WEIGHTS_KEY])
            lines[index] = json.dumps(record, separators=(",", ":")) + "\n"
    tiny.storage.write_text("".join(lines), encoding="utf-8")


def renamed(name: str) -> Callable[[dict[str, Any]], Any]:
    """run.json stored under `name` instead, its digest too (the file itself untouched)."""
    def change(weights: dict[str, Any]) -> dict[str, Any]:
        weights["files"][name] = weights["files"].pop("run.json")
        weights[DIGESTS_KEY][name] = weights[DIGESTS_KEY].pop("run.json")
        return weights
    return change


@pytest.mark.parametrize("name", ["../../../../planted.json", "tokenizer/../../../../../planted.json",
                                  "{root}/planted.json", "a/b/c/d/planted.json", "", ".", "..", ".hidden", "x\nplanted"])
def test_a_stored_file_name_never_becomes_a_path(kept: Tiny, name: str) -> None:
    root = kept.root.parent
    tamper(kept, renamed(name.format(root=root)))
    done = export(kept, "-o", "best.yaml")
    assert_one_line_error(done, "export", "not a checkpoint file name")
    assert not [p for p in root.rglob("*planted*")], "a file was planted outside the checkpoint"
    assert list(Path.cwd().iterdir()) == []


@pytest.mark.parametrize("artifact_id", ["../../../../etc/hostname", "sub/file", "not-a-uuid", 7])
def test_a_stored_artifact_id_that_optuna_never_writes_is_refused(kept: Tiny, artifact_id: Any) -> None:
    def change(weights: dict[str, Any]) -> dict[str, Any]:
        weights["files"]["run.json"] = artifact_id
        return weights
    tamper(kept, change)
    assert_one_line_error(export(kept, "-o", "best.yaml"), "export", "not an id Optuna writes")
    assert list(Path.cwd().iterdir()) == []


@pytest.mark.parametrize("record", [[], "weights", {"files": []}, {"files": {}}, {"files": {"run.json": 1}, "sha256": []}])
def test_a_damaged_weights_record_is_one_line(kept: Tiny, record: Any) -> None:
    tamper(kept, lambda weights: record)
    assert_one_line_error(export(kept, "-o", "best.yaml"), "export", "kept weights")
    assert list(Path.cwd().iterdir()) == []


# --- every output checked before any work, together --------------------------------------------------


@pytest.mark.parametrize("outputs", [
    ["-o", "o.yaml", "--onnx", "o.yaml"],
    ["-o", "o.yaml", "--onnx", "./o.yaml"],
    ["-o", "o.yaml", "--onnx", "{cwd}/o.yaml"],
    ["-o", "o.yaml", "--onnx", "sub/../o.yaml"],
    ["-o", "o.yaml", "--onnx", "linked/o.yaml"],
    ["-o", "o.yaml", "--hf", "o-checkpoint"],
    ["-o", "o.yaml", "--hf", "X", "--onnx", "X"],
    ["-o", "o.yaml", "--hf", "empty", "--onnx", "empty/model.onnx"],
])
def test_two_outputs_at_one_place_are_refused_before_anything_is_written(kept: Tiny, outputs: list[str]) -> None:
    cwd = Path.cwd()
    (cwd / "sub").mkdir()
    (cwd / "empty").mkdir()
    (cwd / "linked").symlink_to(cwd)
    before = sorted(os.listdir(cwd))
    done = export(kept, *(output.format(cwd=cwd) for output in outputs))
    assert_one_line_error(done, "export", "another output of this export")
    assert sorted(os.listdir(cwd)) == before and not list((cwd / "empty").iterdir())


def test_an_output_over_what_the_export_reads_is_refused(kept: Tiny) -> None:
    journal = kept.storage.read_bytes()
    store = Path(str(kept.storage) + ".artifacts")
    for outputs in (["-o", "o.yaml", "--onnx", str(kept.storage)], ["-o", "o.yaml", "--onnx", f"{kept.storage}.index"],
                    ["-o", "o.yaml", "--onnx", str(store / "m.onnx")],
                    ["-o", "o.yaml", "--hf", str(store / "hf")], ["-o", str(kept.storage.with_suffix(".yaml")),
                                                                 "--onnx", str(kept.storage)]):
        assert_one_line_error(export(kept, *outputs), "export", "which this export reads")
    assert kept.storage.read_bytes() == journal and not (store / "m.onnx").exists() and not (store / "hf").exists()
    assert list(Path.cwd().iterdir()) == []


def test_a_run_folder_export_never_writes_into_the_run(tmp_path: Path) -> None:
    run = run_folder(tmp_path, LAYER_KINDS["parallel"][0])
    weights = (run / "model.safetensors").read_bytes()
    for output in (["--onnx", str(run / "model.safetensors")], ["--hf", str(run / "hf")]):
        assert_one_line_error(cli("export", str(run), *output), "export", "which this export reads")
    assert (run / "model.safetensors").read_bytes() == weights and not (run / "hf").exists()


@pytest.mark.parametrize("flag", ["--hf", "--onnx"])
def test_a_symbolic_link_is_refused_before_the_model_is_built(kept: Tiny, flag: str,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    cwd = Path.cwd()
    (cwd / "target").mkdir()
    (cwd / "link").symlink_to(cwd / "target" if flag == "--hf" else cwd / "target" / "m.onnx")

    def built(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was built before the output was checked")

    monkeypatch.setattr("studies.export.model_export.load_checkpoint", built)
    assert_one_line_error(export(kept, "-o", "o.yaml", flag, "link"), "export", f"{flag} link: is a symbolic link")
    assert sorted(os.listdir(cwd)) == ["link", "target"] and not list((cwd / "target").iterdir())


@pytest.mark.parametrize("outputs", [["-o", f"{LONG}.yaml"], ["-o", "o.yaml", "--onnx", LONG],
                                     ["-o", "o.yaml", "--hf", LONG], ["-o", "o.yaml", "--onnx", f"{LONG}/m.onnx"]])
def test_a_name_the_file_system_cannot_take_is_one_line(kept: Tiny, outputs: list[str]) -> None:
    assert_one_line_error(export(kept, *outputs), "export")
    assert list(Path.cwd().iterdir()) == []


def test_onnx_failing_after_the_config_and_weights_leaves_every_output_as_it_was(
        kept: Tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("onnxruntime")
    import objectives.onnx

    assert export(kept, "-o", "o.yaml").code == 0
    before = files_under(Path.cwd())
    monkeypatch.setattr(objectives.onnx, "onnx_max_difference", lambda *args: 0.5)
    done = export(kept, "-o", "o.yaml", "--hf", "hf", "--onnx", "m.onnx")
    assert_one_line_error(done, "export", "--onnx m.onnx", "differ")
    assert files_under(Path.cwd()) == before  # the previous config and weights, nothing new, nothing hidden left
    assert sorted(os.listdir()) == ["o-checkpoint", "o.yaml"]


def test_every_output_appears_together(kept: Tiny) -> None:
    pytest.importorskip("onnxruntime")
    done = export(kept, "-o", "o.yaml", "--hf", "hf", "--onnx", "m.onnx")
    assert done.code == 0, done.err
    assert sorted(os.listdir()) == ["hf", "m.onnx", "o-checkpoint", "o.yaml"]
    assert load_config("o.yaml").provenance["trial"] == kept_trial(kept).number


# --- the HF folder: its card and its files' modes -------------------------------------------------------


def test_the_model_card_shows_anyones_text_as_text(tmp_path: Path) -> None:
    run = run_folder(tmp_path, LAYER_KINDS["parallel"][0])
    checkpoint = json.loads((run / "run.json").read_text())
    odd = "corpus|with a pipe\nand a new line [link](http://example.com) <b>bold</b> `tick`"
    checkpoint["data_spec"] = odd
    (run / "run.json").write_text(json.dumps(checkpoint))
    export_run(run, hf=tmp_path / "hf")
    card = (tmp_path / "hf" / "README.md").read_text(encoding="utf-8")
    rows = [line for line in card.splitlines() if line.startswith("|")]
    cells = [re.split(r"(?<!\\)\|", row)[1:-1] for row in rows]
    assert all(len(row) == 2 for row in cells), rows  # no cell split by a pipe, no row cut by a line break
    [data] = [row[1] for row in cells if row[0].strip() == "data"]
    assert "corpus\\|with a pipe\\nand a new line" in data and data.strip().startswith("`")  # a code span: no link


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_every_file_of_the_hf_folder_gets_the_usual_mode(tmp_path: Path, umask: int) -> None:
    previous = os.umask(umask)
    try:
        for name, (config, _) in (("gpt2", LAYER_KINDS["sequential"]), ("remote", LAYER_KINDS["parallel"])):
            run = run_folder(tmp_path / name, config)
            export_run(run, hf=tmp_path / name / "hf")
            modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / name / "hf").iterdir()}
            assert set(modes.values()) == {0o666 & ~umask}, modes
    finally:
        os.umask(previous)


def test_the_tokenizer_of_a_custom_folder_loads_as_its_card_says_without_a_question(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    transformers = pytest.importorskip("transformers")
    run = run_folder(tmp_path, LAYER_KINDS["parallel"][0])
    export_run(run, hf=tmp_path / "hf")
    card = (tmp_path / "hf" / "README.md").read_text(encoding="utf-8")
    assert "tokenizer = AutoTokenizer.from_pretrained(DIR, trust_remote_code=True)" in card

    def asked(*args: object) -> str:
        raise AssertionError("transformers asked a question")

    monkeypatch.setattr("builtins.input", asked)
    ours = load_checkpoint(run).tokenizer
    for tokenizer in (transformers.PreTrainedTokenizerFast.from_pretrained(tmp_path / "hf"),
                      transformers.AutoTokenizer.from_pretrained(tmp_path / "hf", trust_remote_code=True)):
        assert tokenizer("the rain")["input_ids"] == ours.encode("the rain")


def test_the_card_cell_keeps_plain_values_plain() -> None:
    assert hf_folder._cell("tiny") == "`tiny`"  # noqa: SLF001
    assert hf_folder._cell("a`b") == "``a`b``"  # noqa: SLF001
    assert hf_folder._cell("") == ""  # noqa: SLF001

