"""`decoder-nas data prepare/info`, and a bpe:N study carried through export -> train -> generate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import trainer.store
from search_space import load_config
from study_helpers import cli, isolated_python_api, make_tiny  # noqa: F401  (autouse fixture)
from trainer.checkpoint import load_checkpoint
from trainer.data import prepare_data


def test_a_prepared_store_is_used_by_train_and_described_by_info(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tiny = make_tiny(tmp_path)
    prepared = cli("data", "prepare", str(tiny.corpus), "--tokenizer", "byte", "--json")
    assert prepared.code == 0, prepared.err
    [store] = json.loads(prepared.out)
    assert store["tokenizer"] == "byte" and store["vocab_size"] == 256 and store["dtype"] == "uint16"
    assert store["train_tokens"] + store["val_tokens"] == len(tiny.corpus.read_bytes())

    def refuse(*args, **kwargs):
        raise AssertionError("tokenised again although the store was prepared")

    monkeypatch.setattr(trainer.store, "_build", refuse)
    trained = cli("train", "--data", str(tiny.corpus), "--tokenizer", "byte", "--preset", "gpt", "--n-layer", "1",
                  "--n-head", "2", "--d-model", "16", "--block-size", "16", "--steps", "2", "--batch-size", "2",
                  "--eval-windows", "2", "--json")
    assert trained.code == 0, trained.err
    assert json.loads(trained.out.strip().splitlines()[-1])["content_hash"] == store["content_hash"]

    info = cli("data", "info", str(tiny.corpus), "--json")
    assert [(s["folder"], s["state"]) for s in json.loads(info.out)] == [(store["folder"], "current")]
    tiny.corpus.write_text(tiny.corpus.read_text() + "an edit\n")
    assert json.loads(cli("data", "info", str(tiny.corpus), "--json").out)[0]["state"] == "stale"
    assert "no token store prepared" in cli("data", "info", "builtin:pydoc").out
    (Path(store["folder"]) / "val.bin").write_bytes(b"")
    [damaged] = json.loads(cli("data", "info", str(tiny.corpus), "--json").out)
    assert damaged["state"].startswith("damaged: ") and "val.bin: 0 bytes, but the manifest records" in damaged["state"]


def test_data_prepare_errors_are_one_line(tmp_path: Path) -> None:
    result = cli("data", "prepare", str(tmp_path / "missing.txt"))
    assert result.code == 2 and result.err.count("\n") == 1 and "does not exist" in result.err
    result = cli("data", "prepare", str(make_tiny(tmp_path).corpus), "--tokenizer", "bpe:12")
    assert result.code == 2 and result.err.count("\n") == 1 and "expected bpe:N" in result.err


def test_a_bpe_study_survives_export_train_and_generate(tmp_path: Path) -> None:
    tiny = make_tiny(tmp_path)
    searched = cli(*tiny.argv("search", "--trials", "1", "--no-presets", "--tokenizer", "bpe:300"))
    assert searched.code == 0, searched.err
    exported = cli("export", *tiny.study_flags(), "--pick", "knee", "-o", str(tmp_path / "best.yaml"))
    assert exported.code == 0, exported.err
    provenance = load_config(tmp_path / "best.yaml").provenance
    assert provenance["tokenizer"] == "bpe:300"  # the study remembered it, the export carries it
    trained = cli("train", str(tmp_path / "best.yaml"), "--device", "cpu", "--json", "--out", str(tmp_path / "run"))
    assert trained.code == 0, trained.err
    assert abs(json.loads(trained.out.strip().splitlines()[-1])["val_loss"] - provenance["metrics"]["val_loss"]) < 1e-4
    checkpoint = load_checkpoint(tmp_path / "run")
    store_tokenizer = prepare_data(str(tiny.corpus), "bpe:300").tokenizer
    assert checkpoint.tokenizer.identity == store_tokenizer.identity and checkpoint.tokenizer.vocab_size == 300
    generated = cli("generate", str(tmp_path / "run"), "--prompt", "Verse 3: the rain", "--max-new-tokens", "5",
                    "--seed", "0")
    assert generated.code == 0 and generated.out.startswith("Verse 3: the rain"), generated.err
