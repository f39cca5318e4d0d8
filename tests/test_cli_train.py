"""`decoder-nas train` and `generate` end to end, on a tiny model and a corpus each test writes itself."""

from __future__ import annotations

import json
from pathlib import Path

import huggingface_hub
import pytest

from studies.cli import main

TINY = ["--preset", "gpt", "--n-layer", "2", "--n-head", "2", "--d-model", "32", "--block-size", "16"]
QUICK = ["--steps", "20", "--batch-size", "4", "--eval-windows", "8"]


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Token caches go to tmp_path, never to the real home cache."""
    monkeypatch.setenv("DECODER_NAS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def last_json_line(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def test_train_json_reports_the_metrics_and_leaves_a_checkpoint(
    tmp_path: Path, corpus: Path, cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", *TINY, "--data", str(corpus), *QUICK, "--json", "--out", str(tmp_path / "run")]) == 0
    out, err = capsys.readouterr()
    summary = last_json_line(out)
    assert summary["steps"] == 20 and summary["tokens"] == 20 * 4 * 16
    assert 0.0 < summary["val_loss"] < 10 and 0.0 <= summary["val_accuracy"] <= 1.0
    assert summary["tokens_per_second"] > 0 and summary["wall_seconds"] > 0
    assert summary["params"] > 0 and summary["flops_per_token"] > 0
    assert summary["checkpoint"] == str(tmp_path / "run") and (tmp_path / "run" / "model.safetensors").is_file()
    assert "vocab_size 50304 in the config replaced by the tokenizer's" in err
    assert any((cache / "tokens").iterdir())  # the token cache honoured DECODER_NAS_CACHE


@pytest.mark.parametrize("name", ["gpt", "lfm2"])  # lfm2: a conv mixer, then rope, GQA, qk-norm, SwiGLU, RMSNorm
def test_train_resume_then_generate(
    name: str, tmp_path: Path, corpus: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    tiny = [*TINY[:1], name, *TINY[2:]]
    assert main(["train", *tiny, "--data", str(corpus), *QUICK, "--json", "--out", str(run)]) == 0
    capsys.readouterr()

    assert main(["train", "--resume", str(run), "--steps", "30", "--json"]) == 0
    resumed = last_json_line(capsys.readouterr().out)
    assert resumed["steps"] == 30 and resumed["tokens"] == 30 * 4 * 16  # the whole run, as the steps are
    assert json.loads((run / "run.json").read_text())["step"] == 30

    generate = ["generate", str(run), "--prompt", "7 little", "--max-new-tokens", "5", "--seed", "0"]
    assert main(generate) == 0
    out, err = capsys.readouterr()
    text = out.rstrip("\n")
    assert text.startswith("7 little") and len(text) == len("7 little") + 5
    assert "5 tokens" in err and "ms per token" in err
    assert main(generate) == 0
    assert capsys.readouterr().out.rstrip("\n") == text  # the seed fixes the sample


def test_train_records_the_data_path_absolute_so_resume_works_from_elsewhere(
    tmp_path: Path, corpus: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "work").mkdir()
    (tmp_path / "elsewhere").mkdir()
    write(tmp_path / "work" / "c.txt", corpus.read_text())
    monkeypatch.chdir(tmp_path / "work")
    assert main(["train", *TINY, "--data", "c.txt", *QUICK, "--out", "run"]) == 0
    assert json.loads(Path("run/run.json").read_text())["data_spec"] == str(tmp_path / "work" / "c.txt")
    monkeypatch.chdir(tmp_path / "elsewhere")
    capsys.readouterr()
    assert main(["train", "--resume", "../work/run", "--steps", "25", "--json"]) == 0, capsys.readouterr().err
    assert last_json_line(capsys.readouterr().out)["steps"] == 25


def write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("case, fragment", [
    ("missing", "does not exist"),
    ("empty", "is empty"),
    ("too short", "needs at least 65"),
    ("unknown tokenizer", "unknown tokenizer 'no-such-org/no-such-tokenizer'"),
    ("negative steps", "--steps -1: must be at least 1"),
    ("huge batch", "--batch-size 10000000000: 10000000000 windows of 16 tokens need at least"),
    ("huge evaluation", "--eval-windows 100000000000: 100000000000 windows of 16 tokens need at least"),
    ("a float count", "argument --batch-size: invalid int value: '1e8'"),
])
def test_train_errors_are_one_line_with_exit_code_2(
    case: str, fragment: str, tmp_path: Path, corpus: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    # huggingface_hub reads HF_HUB_OFFLINE at import, so the env var alone would be too late here.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    data, extra = str(corpus), list(QUICK)
    if case == "missing":
        data = str(tmp_path / "nowhere.txt")
    elif case == "empty":
        data = write(tmp_path / "empty.txt", "")
    elif case == "too short":
        data = write(tmp_path / "short.txt", "x" * 60)
        extra += ["--block-size", "64"]
    elif case == "unknown tokenizer":
        extra += ["--tokenizer", "no-such-org/no-such-tokenizer"]
    elif case == "huge batch":  # refused before any allocation: it asked numpy for terabytes, or swapped
        extra += ["--batch-size", "10000000000"]
    elif case == "huge evaluation":
        extra += ["--eval-windows", "100000000000"]
    elif case == "a float count":
        extra += ["--batch-size", "1e8"]
    else:
        extra = ["--steps", "-1"]
    assert main(["train", *TINY, "--data", data, *extra]) == 2
    err = capsys.readouterr().err
    # The error is the last line; before it may come `datasets`' own progress lines on loading the corpus.
    error = err.rstrip("\n").split("\n")[-1]
    assert error.startswith("decoder-nas train: error:") and fragment in error and "Traceback" not in err


@pytest.mark.parametrize("name", ["gpt", "llama"])
def test_evaluate_scores_a_checkpoint_on_a_local_multiple_choice_file(name, tmp_path, capsys):
    corpus = tmp_path / "mc-corpus.txt"
    corpus.write_text("the cat sat on the mat. the dog sat on the log. " * 60)
    out = tmp_path / "run"
    assert main(["train", "--preset", name, "--n-layer", "1", "--n-head", "2", "--d-model", "16",
                 "--block-size", "16", "--data", str(corpus), "--steps", "30", "--batch-size", "8",
                 "--eval-windows", "4", "--out", str(out)]) == 0
    items = tmp_path / "items.jsonl"
    items.write_text('{"context": "the cat sat on the", "choices": ["mat.", "dog"], "label": 0}\n'
                     '{"context": "the dog sat on the", "choices": ["cat", "log."], "label": 1}\n')
    capsys.readouterr()
    assert main(["evaluate", str(out), "--zero-shot", str(items), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["items"] == 2 and 0.0 <= result["accuracy"] <= 1.0 and 0.0 <= result["accuracy_norm"] <= 1.0
    items.write_text('{"premise": "x"}\n')
    assert main(["evaluate", str(out), "--zero-shot", str(items)]) == 2
