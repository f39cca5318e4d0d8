"""Bad input to train, generate and describe: one line, exit code 2, and no file of a run changed."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from study_helpers import assert_one_line_error, cli, quiet_datasets

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


CASES = {
    "beta2 outside [0, 1)": (["train", *TINY, "--data", "{corpus}", *QUICK, "--beta2", "2"], "train",
                             "beta2: 2.0 must be in [0, 1)"),
    "nan learning rate": (["train", *TINY, "--data", "{corpus}", *QUICK, "--lr", "nan"], "train",
                          "lr: nan must be a finite number"),
    "no validation windows": (["train", *TINY, "--data", "{corpus}", *QUICK, "--eval-windows", "0"], "train",
                              "eval-windows: 0 must be at least 1"),
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


@pytest.mark.parametrize("name", CASES)
def test_bad_input_is_one_line_and_changes_no_run(trained, name):
    argv, command, *fragments = CASES[name]
    assert_one_line_error(run_cli(trained, *argv), command, *fragments)


def test_resume_accepts_the_same_data_spelled_as_another_path(trained, monkeypatch):
    root, corpus, _ = trained
    monkeypatch.chdir(root)
    monkeypatch.setenv("DECODER_NAS_CACHE", str(root / "cache"))
    with quiet_datasets():
        result = cli("train", "--resume", str(root / "run"), "--steps", "6", "--data", "./corpus.txt",
                     "--lr", "0.001", "--device", "cpu")
    assert result.code == 0, result.err
