"""The token store: round trips, damage, races, constant-time open, bad input, and batches equal to in-memory ones."""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import trainer.sources
import trainer.store
from study_helpers import write
from trainer.batches import sample_batch, validation_windows
from trainer.checkpoint import load_checkpoint
from trainer.data import DataError, load_corpus, open_store, prepare_data
from trainer.loop import train
from trainer.recipe import TrainingRecipe
from trainer.run import initialised_model, run_training
from trainer.tokenizers import TokenizerError, make_tokenizer

TEXT = "".join(f"Line {i}: the quick brown fox jumps over the lazy dog, ünïcode ok.\n" for i in range(300))


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return write(tmp_path / "corpus.txt", TEXT)


def stores(cache: Path) -> list[Path]:
    return sorted(p for p in (cache / "tokens").iterdir() if (p / "manifest.json").is_file())


@pytest.mark.parametrize("tokenizer", ["char", "byte", "bpe:300"])
def test_a_store_round_trips_exactly(corpus: Path, cache: Path, tokenizer: str) -> None:
    data = prepare_data(str(corpus), tokenizer, cache_dir=cache)
    text = load_corpus(str(corpus), cache_dir=cache)
    assert data.tokenizer.decode(data.train.tolist()) == text.train_text
    assert data.tokenizer.decode(data.val.tolist()) == text.val_text
    assert data.content_hash == text.content_hash
    reopened = open_store(data.store)  # on its own: the tokenizer travels with the store
    assert reopened.tokenizer.identity == data.tokenizer.identity
    assert np.array_equal(reopened.train, data.train) and np.array_equal(reopened.val, data.val)
    manifest = json.loads((data.store / "manifest.json").read_text())
    assert manifest["tokens"] == {"train": len(data.train), "val": len(data.val)}
    assert manifest["tokenizer"]["spec"] == tokenizer and manifest["dtype"] == "uint16"


def test_a_truncated_or_replaced_store_is_named(corpus: Path, cache: Path) -> None:
    store = prepare_data(str(corpus), "byte", cache_dir=cache).store
    train_bin = store / "train.bin"
    original = train_bin.read_bytes()
    train_bin.write_bytes(original[:-2])
    with pytest.raises(DataError, match="train.bin: .* bytes, but the manifest records .* the token store is damaged"):
        open_store(store)
    train_bin.write_bytes(original[:100] + bytes(reversed(original[100:200])) + original[200:])  # same size
    with pytest.raises(DataError, match="train.bin: content differs from the manifest's digest"):
        open_store(store)


def test_a_prepared_corpus_opens_without_reading_the_text_again(
    corpus: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = prepare_data(str(corpus), "char", cache_dir=cache)

    def refuse(path: Path):
        raise AssertionError("the corpus was read again")

    monkeypatch.setattr(trainer.sources, "_read_text", refuse)
    again = prepare_data(str(corpus), "char", cache_dir=cache)
    assert again.store == first.store and again.content_hash == first.content_hash


def test_an_edit_that_keeps_size_and_mtime_is_still_detected(corpus: Path, cache: Path) -> None:
    first = prepare_data(str(corpus), "char", cache_dir=cache)
    stat = corpus.stat()
    write(corpus, TEXT.replace("fox", "cat", 1))  # same length, same alphabet
    os.utime(corpus, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    edited = prepare_data(str(corpus), "char", cache_dir=cache)
    assert edited.content_hash != first.content_hash
    assert edited.tokenizer.decode(edited.train[:20].tolist()) == TEXT.replace("fox", "cat", 1)[:20]


def _prepare_counting(corpus: str, cache: str, log: str) -> str:
    build = trainer.store._build

    def counted(*args, **kwargs):
        with open(log, "a") as file:
            file.write("built\n")
        return build(*args, **kwargs)

    trainer.store._build = counted
    return str(prepare_data(corpus, "bpe:300", cache_dir=Path(cache)).store)


def test_two_processes_preparing_one_corpus_make_one_store(corpus: Path, cache: Path, tmp_path: Path) -> None:
    log = tmp_path / "builds.log"
    with multiprocessing.get_context("fork").Pool(2) as pool:
        folders = pool.starmap(_prepare_counting, [(str(corpus), str(cache), str(log))] * 2)
    assert log.read_text() == "built\n"  # the second waited on the lock and opened the first's store
    assert folders[0] == folders[1] and stores(cache) == [Path(folders[0])]
    assert not [p for p in (cache / "tokens").iterdir() if p.name.startswith(".building-")]


@pytest.mark.parametrize("failure", [OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt()])
def test_a_failed_preparation_leaves_nothing_and_the_next_succeeds(
    corpus: Path, cache: Path, monkeypatch: pytest.MonkeyPatch, failure: BaseException
) -> None:
    def fail(*args, **kwargs):
        (args[4] / "train.bin").write_bytes(b"half")  # a part already written
        raise failure

    monkeypatch.setattr(trainer.store, "_tokenize", fail)
    expected = (DataError, r"\(the disk is full\); nothing was kept") if isinstance(failure, OSError) \
        else (KeyboardInterrupt, None)
    with pytest.raises(expected[0], match=expected[1]):
        prepare_data(str(corpus), "byte", cache_dir=cache)
    assert [p.name for p in (cache / "tokens").iterdir()] == ["locks"]
    monkeypatch.undo()
    assert len(prepare_data(str(corpus), "byte", cache_dir=cache).train) > 0


def test_invalid_utf8_is_named_with_its_place(tmp_path: Path, cache: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine line\nsecond line \xe9t\xe9\n")
    with pytest.raises(DataError, match=r"bad.txt' as UTF-8 text: invalid UTF-8 byte 0xe9 at byte 22 \(line 2\)"):
        prepare_data(str(bad), "byte", cache_dir=cache)


def test_a_binary_file_is_named(tmp_path: Path, cache: Path) -> None:
    binary = tmp_path / "model.txt"
    binary.write_bytes(b"ok\x00\x00\x00\x01")
    with pytest.raises(DataError, match="model.txt' looks binary, not text: a NUL character at character 2"):
        prepare_data(str(binary), "byte", cache_dir=cache)


def test_a_vocabulary_beyond_uint32_is_refused(corpus: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    huge = make_tokenizer("byte", "")
    monkeypatch.setattr(type(huge), "vocab_size", 2**32 + 1)
    with pytest.raises(DataError, match="4294967297 tokens: more than uint32 holds"):
        prepare_data(str(corpus), "byte", cache_dir=cache)


def test_bpe_is_deterministic_and_validated(corpus: Path, tmp_path: Path) -> None:
    one = prepare_data(str(corpus), "bpe:300", cache_dir=tmp_path / "a")
    two = prepare_data(str(corpus), "bpe:300", cache_dir=tmp_path / "b")
    assert one.tokenizer.identity == two.tokenizer.identity and one.vocab_size == 300
    assert np.array_equal(one.train, two.train)
    assert len(one.train) < len(TEXT.encode()) * 0.9 * 0.6  # merges: far fewer tokens than bytes
    for spec in ("bpe:100", "bpe:x", "bpe:"):
        with pytest.raises(TokenizerError, match="expected bpe:N"):
            make_tokenizer(spec, TEXT)


def test_memory_mapped_batches_equal_in_memory_batches(corpus: Path, cache: Path) -> None:
    data = prepare_data(str(corpus), "char", cache_dir=cache)
    text = load_corpus(str(corpus), cache_dir=cache)
    in_memory = torch.tensor(data.tokenizer.encode(text.train_text), dtype=torch.int64)  # as every run before
    mapped = sample_batch(data.train, 8, 32, torch.Generator().manual_seed(5))
    held = sample_batch(in_memory, 8, 32, torch.Generator().manual_seed(5))
    assert all(torch.equal(a, b) and a.dtype == torch.int64 for a, b in zip(mapped, held))
    val = torch.tensor(data.tokenizer.encode(text.val_text), dtype=torch.int64)
    assert all(torch.equal(a, b) for a, b in zip(validation_windows(data.val, 16, 4, 3),
                                                  validation_windows(val, 16, 4, 3)))


def test_training_on_the_map_equals_training_in_memory(corpus: Path, cache: Path, tiny_config) -> None:
    data = prepare_data(str(corpus), "char", cache_dir=cache)
    config = tiny_config.replace(vocab_size=data.vocab_size, block_size=16)
    recipe = TrainingRecipe(steps=4, batch_size=4, eval_windows=8, report_every=1, warmup_steps=1)
    cpu = torch.device("cpu")
    mapped = train(initialised_model(config, 0), data.train, data.val, recipe, cpu)
    held = train(initialised_model(config, 0), torch.from_numpy(data.train.astype(np.int64)),
                 torch.from_numpy(data.val.astype(np.int64)), recipe, cpu)
    assert mapped.loss_curve == held.loss_curve and mapped.evaluation == held.evaluation


def test_a_bpe_checkpoint_decodes_with_the_stores_tokenizer(corpus: Path, cache: Path, tmp_path: Path,
                                                            tiny_config) -> None:
    data = prepare_data(str(corpus), "bpe:300", cache_dir=cache)
    recipe = TrainingRecipe(steps=2, batch_size=2, eval_windows=4, warmup_steps=1)
    run_training(tiny_config.replace(block_size=16), data, recipe, "cpu", tmp_path / "run")
    checkpoint = load_checkpoint(tmp_path / "run", torch.device("cpu"))
    assert checkpoint.tokenizer.identity == data.tokenizer.identity
    assert checkpoint.tokenizer.encode(TEXT[:200]) == data.tokenizer.encode(TEXT[:200])
    assert checkpoint.record["tokenizer"] == "bpe:300"
