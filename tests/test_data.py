"""Corpora, token caches and batches, on tiny data each test writes itself."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import datasets
import huggingface_hub
import numpy as np
import pytest
import torch

import trainer.hub
from study_helpers import write
from trainer.batches import sample_batch, validation_windows
from trainer.data import (
    BUILTIN_CORPORA,
    DOCUMENT_SEPARATOR,
    DataError,
    check_fits,
    default_cache_dir,
    load_corpus,
    prepare_data,
)
from trainer.tokenizers import CharTokenizer

TEXT = "".join(f"Line {i}: to be, or not to be.\n" for i in range(40))  # 1,210 characters


@pytest.fixture
def text_file(tmp_path: Path) -> Path:
    return write(tmp_path / "corpus.txt", TEXT)


def write_hub_style_folder(folder: Path, splits: dict[str, list[str]]) -> str:
    """A local dataset folder that datasets.load_dataset reads like a hub repo: one jsonl file per split."""
    for split, docs in splits.items():
        write(folder / f"{split}.jsonl", "".join(json.dumps({"content": d}) + "\n" for d in docs))
    return f"hf:{folder}"


def test_single_file_splits_contiguously_90_10(text_file: Path, cache: Path) -> None:
    corpus = load_corpus(str(text_file), cache_dir=cache)
    boundary = int(len(TEXT) * 0.9)
    assert corpus.name == str(text_file)
    assert corpus.train_text == TEXT[:boundary]
    assert corpus.val_text == TEXT[boundary:]


def test_folder_loads_every_text_document_with_newlines_intact(tmp_path: Path, cache: Path) -> None:
    write(tmp_path / "docs" / "b.txt", "second\n\nparagraph two\n")
    write(tmp_path / "docs" / "a.md", "# first\nline one\nline two\n")
    write(tmp_path / "docs" / "nested" / "c.txt", "third\n")
    write(tmp_path / "docs" / "notes.csv", "ignored,not text\n")
    corpus = load_corpus(str(tmp_path / "docs"), cache_dir=cache)
    documents = ["# first\nline one\nline two\n", "second\n\nparagraph two\n", "third\n"]
    expected = DOCUMENT_SEPARATOR.join(documents)
    assert corpus.train_text + corpus.val_text == expected  # sorted by path, documents whole


def test_content_hash_follows_the_text_not_the_path(tmp_path: Path, cache: Path) -> None:
    first = load_corpus(str(write(tmp_path / "a.txt", TEXT)), cache_dir=cache)
    same = load_corpus(str(write(tmp_path / "b.txt", TEXT)), cache_dir=cache)
    assert first.content_hash == same.content_hash
    assert len(first.content_hash) == 64 and int(first.content_hash, 16) >= 0  # sha256 hex
    original_times = (tmp_path / "a.txt").stat()
    write(tmp_path / "a.txt", TEXT.replace("not", "NOT", 1))
    # Same mtime, as `cp -p` or `rsync -t` leave it: datasets' mtime-keyed cache must not serve the old text.
    os.utime(tmp_path / "a.txt", ns=(original_times.st_atime_ns, original_times.st_mtime_ns))
    edited = load_corpus(str(tmp_path / "a.txt"), cache_dir=cache)
    assert "NOT" in edited.train_text
    assert edited.content_hash != first.content_hash


def test_builtin_pydoc_is_the_offline_default(cache: Path) -> None:
    corpus = load_corpus(None, cache_dir=cache)
    assert corpus.name == "builtin:pydoc"
    assert len((corpus.train_text + corpus.val_text).encode()) > 300_000
    assert "pydoc" in BUILTIN_CORPORA and "kB" in BUILTIN_CORPORA["pydoc"].description
    assert load_corpus("builtin:pydoc", cache_dir=cache).content_hash == corpus.content_hash  # deterministic


def test_hub_dataset_uses_its_own_validation_split_and_text_column(tmp_path: Path, cache: Path) -> None:
    splits = {"train": ["doc one\nline", "doc two"], "validation": ["held out"]}
    spec = write_hub_style_folder(tmp_path / "repo", splits)
    corpus = load_corpus(spec, text_column="content", cache_dir=cache)
    assert corpus.train_text == "doc one\nline" + DOCUMENT_SEPARATOR + "doc two"
    assert corpus.val_text == "held out"


def test_hub_dataset_without_validation_split_is_split_contiguously(tmp_path: Path, cache: Path) -> None:
    spec = write_hub_style_folder(tmp_path / "repo", {"train": ["x" * 50, "y" * 48]})
    corpus = load_corpus(spec, text_column="content", cache_dir=cache)
    assert (len(corpus.train_text), len(corpus.val_text)) == (90, 10)
    assert corpus.val_text == "y" * 10


def test_hub_dataset_errors_name_the_missing_column_and_split(tmp_path: Path, cache: Path) -> None:
    spec = write_hub_style_folder(tmp_path / "repo", {"train": ["some text"]})
    with pytest.raises(DataError, match="has no column 'text'; columns: content"):
        load_corpus(spec, cache_dir=cache)
    with pytest.raises(DataError, match="has no split 'dev'; available: train"):
        load_corpus(f"{spec}@dev", text_column="content", cache_dir=cache)


def test_hub_spec_offline_fails_fast_with_one_line(monkeypatch: pytest.MonkeyPatch, cache: Path) -> None:
    # datasets and huggingface_hub read the offline flags at import, so the env vars alone come too late.
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    start = time.perf_counter()
    with pytest.raises(DataError) as info:
        load_corpus("hf:someone/no-such-corpus:default@train", cache_dir=cache)
    assert time.perf_counter() - start < 5
    message = str(info.value)
    assert "hf:someone/no-such-corpus" in message and "Hugging Face hub" in message and "\n" not in message



def test_hub_spec_with_the_hub_unreachable_fails_without_trying_to_download(
    monkeypatch: pytest.MonkeyPatch, cache: Path
) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(trainer.hub, "hub_reachable", lambda: False)  # the probe, without a network

    def download(*args: object, **kwargs: object) -> None:
        raise AssertionError("went on to download: minutes of retries without a network")

    monkeypatch.setattr(datasets, "load_dataset", download)
    with pytest.raises(DataError, match=r"^hf:someone/corpus: the Hugging Face hub cannot be reached \(offline\?\)"):
        load_corpus("hf:someone/corpus", cache_dir=cache)

@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("missing.txt", "data path '.*missing.txt' does not exist"),
        ("builtin:nope", "unknown builtin corpus 'builtin:nope'; available: pydoc"),
        ("ftp:corpus", "malformed data spec 'ftp:corpus'"),
        ("hf:a:b:c", "malformed data spec 'hf:a:b:c'"),
        ("hf:", "malformed data spec 'hf:'"),
        ("", "empty data spec"),
    ],
)
def test_bad_specs_are_named(tmp_path: Path, cache: Path, spec: str, expected: str) -> None:
    spec = str(tmp_path / spec) if spec == "missing.txt" else spec
    with pytest.raises(DataError, match=expected):
        load_corpus(spec, cache_dir=cache)


def test_empty_corpora_are_named(tmp_path: Path, cache: Path) -> None:
    empty_file = write(tmp_path / "empty.txt", "\n\n")
    with pytest.raises(DataError, match=f"corpus '{empty_file}' is empty"):
        load_corpus(str(empty_file), cache_dir=cache)
    write(tmp_path / "no-text" / "data.csv", "a,b\n")
    with pytest.raises(DataError, match="folder '.*no-text' holds no .txt or .md files"):
        load_corpus(str(tmp_path / "no-text"), cache_dir=cache)


def test_undecodable_file_is_named(tmp_path: Path, cache: Path) -> None:
    binary = tmp_path / "image.txt"
    binary.write_bytes(b"\xff\xd8\xff\xe0 not utf-8")
    with pytest.raises(DataError, match=f"could not read '{binary}' as UTF-8 text"):
        load_corpus(str(binary), cache_dir=cache)


def test_prepare_data_tokenises_both_splits(text_file: Path, cache: Path) -> None:
    data = prepare_data(str(text_file), "char", cache_dir=cache)
    corpus = load_corpus(str(text_file), cache_dir=cache)
    assert data.train.dtype == np.uint16 and data.train.ndim == 1 and isinstance(data.train, np.memmap)
    assert data.tokenizer.decode(data.train.tolist()) == corpus.train_text
    assert data.tokenizer.decode(data.val.tolist()) == corpus.val_text
    assert data.vocab_size == len(set(TEXT))
    assert (data.content_hash, data.data_spec) == (corpus.content_hash, str(text_file))


def test_second_prepare_loads_from_cache_without_tokenising(
    text_file: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = prepare_data(str(text_file), "char", cache_dir=cache)
    assert (first.store / "train.bin").is_file() and first.store.is_relative_to(cache)

    def refuse(self: CharTokenizer, text: str) -> list[int]:
        raise AssertionError("re-tokenised on a cache hit")

    monkeypatch.setattr(CharTokenizer, "encode", refuse)
    second = prepare_data(str(text_file), "char", cache_dir=cache)
    assert second.store == first.store
    assert np.array_equal(second.train, first.train) and np.array_equal(second.val, first.val)


def test_cache_key_follows_content_and_tokenizer(tmp_path: Path, text_file: Path, cache: Path) -> None:
    char = prepare_data(str(text_file), "char", cache_dir=cache).store
    byte = prepare_data(str(text_file), "byte", cache_dir=cache).store
    other_file = write(tmp_path / "other.txt", TEXT + "more")
    other_text = prepare_data(str(other_file), "char", cache_dir=cache).store
    assert len({char, byte, other_text}) == 3



@pytest.mark.parametrize("damage", [b"", b"\x00\x01 half a store", b"not a token file at all"])
def test_a_damaged_token_store_is_rebuilt(text_file: Path, cache: Path, damage: bytes) -> None:
    first = prepare_data(str(text_file), "char", cache_dir=cache)
    expected = np.array(first.train)
    (first.store / "train.bin").write_bytes(damage)  # an interrupted copy, a full disk, a stray edit
    again = prepare_data(str(text_file), "char", cache_dir=cache)
    assert np.array_equal(again.train, expected) and np.array_equal(again.val, first.val)


def test_an_unwritable_token_cache_is_one_line_naming_it(text_file: Path, cache: Path) -> None:
    write(cache / "tokens", "a file where the cache folder should be")
    with pytest.raises(DataError, match=r"cannot write the token store under .*tokens.*DECODER_NAS_CACHE"):
        prepare_data(str(text_file), "char", cache_dir=cache)


def test_default_cache_dir_honours_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DECODER_NAS_CACHE", str(tmp_path / "elsewhere"))
    assert default_cache_dir() == tmp_path / "elsewhere"
    monkeypatch.delenv("DECODER_NAS_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "decoder-nas"


def test_check_fits_says_how_many_tokens_are_needed(tmp_path: Path, cache: Path) -> None:
    data = prepare_data(str(write(tmp_path / "short.txt", "abcdefghij" * 10)), "char", cache_dir=cache)
    check_fits(data, block_size=9)  # val has 10 tokens: exactly one window of 9 + 1
    with pytest.raises(DataError, match=r"\(val split\) has 10 tokens but block_size=10 needs at least 11"):
        check_fits(data, block_size=10)


def test_sample_batch_returns_shifted_windows() -> None:
    tokens = torch.arange(100)
    x, y = sample_batch(tokens, batch_size=8, block_size=16, generator=torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (8, 16)
    assert x.dtype == torch.int64 and x.is_contiguous() and y.is_contiguous()
    starts = x[:, :1]
    assert torch.equal(x, starts + torch.arange(16))  # each row is one contiguous window of the stream
    assert torch.equal(y, x + 1)  # targets are the next tokens
    assert int(starts.max()) + 16 < len(tokens)  # the target of the last position exists


def test_sample_batch_reaches_the_last_window_and_no_further() -> None:
    tokens = torch.arange(6)
    x, y = sample_batch(tokens, batch_size=200, block_size=4, generator=torch.Generator().manual_seed(0))
    assert set(x[:, 0].tolist()) == {0, 1}
    assert y.max() == 5


def test_sample_batch_is_deterministic_per_generator_seed() -> None:
    tokens = torch.randint(50, (500,), generator=torch.Generator().manual_seed(1))
    draw = lambda seed: sample_batch(tokens, 4, 8, torch.Generator().manual_seed(seed))  # noqa: E731
    assert all(torch.equal(a, b) for a, b in zip(draw(3), draw(3)))
    assert not torch.equal(draw(3)[0], draw(4)[0])


def test_validation_windows_are_fixed_by_seed() -> None:
    tokens = torch.randint(50, (500,), generator=torch.Generator().manual_seed(1))
    first = validation_windows(tokens, block_size=8, n_windows=5, seed=7)
    torch.manual_seed(123)  # the global RNG must not matter
    again = validation_windows(tokens, block_size=8, n_windows=5, seed=7)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert first[0].shape == (5, 8)


def test_sample_batch_rejects_a_stream_shorter_than_a_window() -> None:
    with pytest.raises(DataError, match="has 8 tokens but block_size=8 needs at least 9"):
        sample_batch(torch.arange(8), 2, 8, torch.Generator().manual_seed(0))
