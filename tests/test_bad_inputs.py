"""Bad input on the command line, table by table: every mistake given to the study commands, and to
train, generate and describe, is one line on stderr, exit code 2, no traceback, and changes no stored
study and no file of a run."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from study_helpers import RECIPE, SHAPE, TINY_SPACE, assert_one_line_error, cli, make_tiny, quiet_datasets

# --- beside a stored study: nothing in it changes -----------------------------------------------------


@pytest.fixture(scope="module")
def existing(tmp_path_factory: pytest.TempPathFactory):
    """A tiny study with a few trials, the files every bad input below leans on."""
    root = tmp_path_factory.mktemp("bad-inputs")
    with pytest.MonkeyPatch.context() as patch, quiet_datasets():
        patch.setenv("DECODER_NAS_CACHE", str(root / "cache"))
        tiny = make_tiny(root / "tiny", TINY_SPACE)
        result = cli(*tiny.argv("search", "--trials", "4"))
        assert result.code == 0, result.err
        (root / "malformed.yaml").write_text("vocab_size: 65\nlayers: [\n  {n_head: 4\n")
        (root / "unknown-key.yaml").write_text("vocab_size: 65\nblock_size: 16\nd_model: 16\ncolour: red\n"
                                              "layers: [{n_head: 2}]\n")
        (root / "wrong-type.yaml").write_text("vocab_size: 65\nblock_size: sixteen\nd_model: 16\nlayers: [{n_head: 2}]\n")
        (root / "heads.yaml").write_text("vocab_size: 65\nblock_size: 16\nd_model: 16\nlayers: [{n_head: 3}]\n")
        (root / "narrow.yaml").write_text("vocab_size: 65\nblock_size: 16\nd_model: 16\n"
                                          "layers: [{n_head: 4, reduction: {kind: linear, width: 2}}, {n_head: 2}]\n")
        (root / "empty.txt").write_text("")
        (root / "short.txt").write_text("tiny")
        yield tiny, root, patch


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


STUDY_CASES = {
    "malformed yaml": (["describe", "{root}/malformed.yaml"], "describe", "malformed YAML"),
    "unknown key": (["describe", "{root}/unknown-key.yaml"], "describe", "unknown key 'colour'"),
    "wrong type": (["describe", "{root}/wrong-type.yaml"], "describe", "block_size: expected int"),
    "heads do not divide": (["describe", "{root}/heads.yaml"], "describe", "do not divide the width 16"),
    "reduction below one channel per head": (["describe", "{root}/narrow.yaml"], "describe", "fewer than 1 channel"),
    "unknown preset": (["describe", "--preset", "bert"], "describe", "invalid choice: 'bert'"),
    "missing corpus": (["train", "--preset", "gpt", *SHAPE, "--data", "{root}/nope.txt", *RECIPE], "train", "nope.txt"),
    "empty corpus": (["train", "--preset", "gpt", *SHAPE, "--data", "{root}/empty.txt", *RECIPE], "train", "empty"),
    "too-short corpus": (["train", "--preset", "gpt", *SHAPE, "--data", "{root}/short.txt", *RECIPE], "train", "tokens"),
    "negative steps": (["search", "{study}", "--steps", "-5"], "search", "steps"),
    "unknown storage scheme": (["pareto", "--storage", "ftp://host/x"], "pareto", "unknown scheme 'ftp'"),
    "unknown study": (["pareto", "--study", "nope", "--storage", "{storage}"], "pareto", "unknown study 'nope'"),
    "unknown trial": (["export", "--study", "tiny", "--storage", "{storage}", "--trial", "999", "-o",
                       "{root}/x.yaml"], "export", "no such trial"),
    "settings that differ": (["search", "{study}", "--steps", "99"], "search", "recipe.steps"),
}


@pytest.mark.parametrize("name", STUDY_CASES)
def test_bad_input_is_one_line_and_changes_nothing(existing, name):
    tiny, root, _ = existing
    argv, command, fragment = STUDY_CASES[name]
    study_argv = tiny.argv("search")[1:]  # the tiny study's own flags, to be spoiled by one more flag
    expanded: list[str] = []
    for arg in argv:
        if arg == "{study}":
            expanded += study_argv
        else:
            expanded.append(arg.format(root=root, storage=tiny.storage))
    before = digest(tiny.storage)
    with quiet_datasets():
        result = cli(*expanded)
    assert_one_line_error(result, command, fragment)
    assert digest(tiny.storage) == before


# --- train, generate and describe beside a trained run folder: none of its files changes ---------------

TINY = ["--preset", "gpt", "--n-layer", "1", "--n-head", "2", "--d-model", "16", "--block-size", "16"]
QUICK = ["--steps", "4", "--batch-size", "2", "--eval-windows", "2", "--warmup-steps", "1", "--device", "cpu"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    """One tiny run folder (and its corpus) that the cases below try to misuse."""
    root = tmp_path_factory.mktemp("cli-bad-inputs")
    corpus = root / "corpus.txt"
    corpus.write_text("".join(f"{i} green bottles hanging on the wall.\n" for i in range(60)), encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch, quiet_datasets():
        patch.setenv("DECODER_NAS_CACHE", str(root / "cache"))
        result = cli("train", *TINY, "--data", str(corpus), *QUICK, "--out", str(root / "run"))
        assert result.code == 0, result.err
        yield root, corpus, patch


def fingerprint(folder: Path) -> dict[str, str]:
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in folder.rglob("*") if path.is_file()}


def run_cli(trained, *argv: str):
    root, corpus, _ = trained
    expanded = [arg.format(root=root, corpus=corpus) for arg in argv]
    before = fingerprint(root / "run")
    with quiet_datasets():
        result = cli(*expanded)
    assert fingerprint(root / "run") == before
    return result


RUN_CASES = {
    "beta2 outside [0, 1)": (["train", *TINY, "--data", "{corpus}", *QUICK, "--beta2", "2"], "train",
                             "--beta2 2.0: must be in [0, 1)"),
    "nan learning rate": (["train", *TINY, "--data", "{corpus}", *QUICK, "--lr", "nan"], "train",
                          "--lr nan: must be a finite number"),
    "no validation windows": (["train", *TINY, "--data", "{corpus}", *QUICK, "--eval-windows", "0"], "train",
                              "--eval-windows 0: must be at least 1"),
    "a billion wide": (["describe", "--preset", "gpt", "--d-model", "1000000000"], "describe",
                       "d_model: 1000000000 must be at most 65536"),
    "ten thousand layers": (["describe", "--preset", "gpt", "--n-layer", "10000"], "describe",
                            "n_layer: 10000 must be a whole number from 1 to 1024"),
    "top-k 0": (["generate", "{root}/run", "--top-k", "0"], "generate", "top_k: 0 must be at least 1"),
    "nan temperature": (["generate", "{root}/run", "--temperature", "nan"], "generate",
                        "temperature: nan must be a finite number above 0"),
    "resume at another lr": (["train", "--resume", "{root}/run", "--steps", "8", "--lr", "0.5"], "train",
                             "--lr: 0.5 differs from the 0.001", "--resume continues that run unchanged"),
    "resume on other data": (["train", "--resume", "{root}/run", "--steps", "8", "--data", "builtin:pydoc"],
                             "train", "--data: builtin:pydoc differs from the", "corpus.txt"),
    "resume as another architecture": (["train", "--resume", "{root}/run", "--steps", "8", *TINY], "train",
                                       "the checkpoint fixes the architecture"),
    "resume into another folder": (["train", "--resume", "{root}/run", "--steps", "8", "--out", "{root}/x"],
                                   "train", "--out: not used with --resume"),
    "generate on a folder without run.json": (["generate", "{root}"], "generate", "run.json is missing"),
}


@pytest.mark.parametrize("name", RUN_CASES)
def test_bad_input_is_one_line_and_changes_no_run(trained, name):
    argv, command, *fragments = RUN_CASES[name]
    assert_one_line_error(run_cli(trained, *argv), command, *fragments)


def test_resume_accepts_the_same_data_spelled_as_another_path(trained, monkeypatch):
    root, corpus, _ = trained
    monkeypatch.chdir(root)
    monkeypatch.setenv("DECODER_NAS_CACHE", str(root / "cache"))
    with quiet_datasets():
        result = cli("train", "--resume", str(root / "run"), "--steps", "6", "--data", "./corpus.txt",
                     "--lr", "0.001", "--device", "cpu")
    assert result.code == 0, result.err
