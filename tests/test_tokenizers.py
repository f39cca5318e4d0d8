"""Tokenizers: exact round trips, vocabularies, save/load, and one-line errors for bad specs."""

from __future__ import annotations

import json
import time
from pathlib import Path

import huggingface_hub
import pytest
import tokenizers
from tokenizers import decoders, models, pre_tokenizers, trainers

import trainer.hub
from trainer.tokenizers import (
    ByteTokenizer,
    CharTokenizer,
    HuggingFaceTokenizer,
    TokenizerError,
    load_tokenizer,
    make_tokenizer,
)

SAMPLE = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll: Speak, speak. Café 🎭\n"


def train_bpe_file(directory: Path) -> Path:
    """A small byte-level BPE trained here, so hub-style tokenizers are tested without a network."""
    animals = ("lazy dog", "quick brown fox")
    lines = [f"line {i}: the {animals[i % 2]} jumps {i * 7 % 13} times." for i in range(300)]
    bpe = tokenizers.Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()  # byte-level on both sides: any text decodes back exactly
    trainer = trainers.BpeTrainer(
        vocab_size=300, show_progress=False, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator(lines, trainer=trainer)
    directory.mkdir(parents=True)
    path = directory / "tokenizer.json"
    bpe.save(str(path))
    return path


@pytest.fixture
def bpe_file(tmp_path: Path) -> Path:
    return train_bpe_file(tmp_path / "bpe-source")


def test_char_vocabulary_is_the_sorted_characters_of_the_corpus() -> None:
    tokenizer = make_tokenizer("char", "hello world")
    assert isinstance(tokenizer, CharTokenizer)
    assert tokenizer.chars == " dehlorw"
    assert tokenizer.vocab_size == 8
    assert tokenizer.encode("hello") == [3, 2, 4, 4, 5]  # ids are positions in the sorted vocabulary


@pytest.mark.parametrize("spec", ["char", "byte"])
def test_builtin_tokenizers_round_trip(spec: str) -> None:
    tokenizer = make_tokenizer(spec, SAMPLE)
    ids = tokenizer.encode(SAMPLE)
    assert all(0 <= i < tokenizer.vocab_size for i in ids)
    assert tokenizer.decode(ids) == SAMPLE


def test_byte_tokenizer_uses_utf8_bytes() -> None:
    tokenizer = make_tokenizer("byte", "")
    assert isinstance(tokenizer, ByteTokenizer)
    assert tokenizer.vocab_size == 256
    assert tokenizer.encode("é") == [0xC3, 0xA9]
    assert tokenizer.decode([0xC3]) == "\ufffd"  # a cut-off sample shows a replacement char, no crash


def test_char_tokenizer_names_characters_it_has_never_seen() -> None:
    tokenizer = make_tokenizer("char", "abc")
    with pytest.raises(TokenizerError, match="'xz'"):
        tokenizer.encode("abzx")


def test_char_tokenizer_needs_a_corpus() -> None:
    with pytest.raises(TokenizerError, match="non-empty corpus"):
        make_tokenizer("char", "")


def test_char_encode_is_fast_on_a_megabyte() -> None:
    text = (SAMPLE * (1_000_000 // len(SAMPLE)))[:1_000_000]
    tokenizer = make_tokenizer("char", text)
    start = time.perf_counter()
    ids = tokenizer.encode(text)
    assert time.perf_counter() - start < 1.0  # vectorised; a per-character loop would be several times slower
    assert len(ids) == len(text)


@pytest.mark.parametrize("as_folder", [False, True])
def test_tokenizer_json_round_trips(bpe_file: Path, as_folder: bool) -> None:
    spec = str(bpe_file.parent if as_folder else bpe_file)
    tokenizer = make_tokenizer(spec, corpus_text="ignored: the vocabulary comes from the file")
    assert isinstance(tokenizer, HuggingFaceTokenizer)
    assert tokenizer.name == spec
    text = "line 42: the lazy dog jumps 3 times.\nCafé 🎭"
    ids = tokenizer.encode(text)
    assert len(ids) < len(text.encode())  # merges learned: fewer tokens than bytes
    assert tokenizer.decode(ids) == text


@pytest.mark.parametrize("spec", ["char", "byte", "bpe"])
def test_save_and_load_preserve_the_tokenizer(tmp_path: Path, bpe_file: Path, spec: str) -> None:
    original = make_tokenizer(str(bpe_file) if spec == "bpe" else spec, SAMPLE)
    run_dir = tmp_path / "run"
    original.save(run_dir)
    loaded = load_tokenizer(run_dir)
    assert type(loaded) is type(original)
    for attribute in ("name", "identity", "vocab_size"):
        assert getattr(loaded, attribute) == getattr(original, attribute)
    assert loaded.encode(SAMPLE) == original.encode(SAMPLE)
    assert loaded.decode(original.encode(SAMPLE)) == SAMPLE


def test_identity_follows_the_vocabulary(bpe_file: Path) -> None:
    assert make_tokenizer("char", "abc").identity == make_tokenizer("char", "cabcab").identity
    assert make_tokenizer("char", "abc").identity != make_tokenizer("char", "abd").identity
    assert make_tokenizer("byte", "").identity != make_tokenizer(str(bpe_file), "").identity


def test_missing_tokenizer_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "tokenizer.json"
    with pytest.raises(TokenizerError, match=f"{missing} does not exist"):
        make_tokenizer(str(missing), SAMPLE)


def test_malformed_tokenizer_file_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "tokenizer.json"
    bad.write_text('{"not": "a tokenizer"}')
    with pytest.raises(TokenizerError, match=f"{bad} is not a valid tokenizer.json"):
        make_tokenizer(str(bad), SAMPLE)


def test_load_tokenizer_from_a_folder_without_one(tmp_path: Path) -> None:
    with pytest.raises(TokenizerError, match="no saved tokenizer"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer_spec.json").write_text(json.dumps({"kind": "morse"}))
    with pytest.raises(TokenizerError, match="unknown tokenizer kind 'morse'"):
        load_tokenizer(tmp_path)


@pytest.mark.parametrize("name", ["gpt2", "not a repo!"])
def test_hub_tokenizer_offline_fails_fast_with_one_line(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    # huggingface_hub reads HF_HUB_OFFLINE at import, so the env var alone would be too late here.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    start = time.perf_counter()
    with pytest.raises(TokenizerError) as info:
        make_tokenizer(name, SAMPLE)
    assert time.perf_counter() - start < 5
    message = str(info.value)
    assert repr(name) in message and "Hugging Face hub" in message and "\n" not in message


def test_hub_tokenizer_with_the_hub_unreachable_fails_without_trying_to_download(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(trainer.hub, "hub_reachable", lambda: False)  # the probe, without a network

    def download(name: str) -> tokenizers.Tokenizer:
        raise AssertionError("went on to download: minutes of retries without a network")

    monkeypatch.setattr(tokenizers.Tokenizer, "from_pretrained", download)
    with pytest.raises(TokenizerError, match=r"^tokenizer 'gpt2': the Hugging Face hub cannot be reached"):
        make_tokenizer("gpt2", SAMPLE)


class FakeConnection:
    def __enter__(self) -> "FakeConnection":
        return self

    def __exit__(self, *exc: object) -> None:
        pass


@pytest.mark.parametrize("proxies, address", [
    ({}, ("huggingface.co", 443)),
    ({"https": "http://proxy.example:3128"}, ("proxy.example", 3128)),  # the hub is reached through the proxy
])
def test_the_hub_probe_connects_once_with_a_short_timeout(monkeypatch: pytest.MonkeyPatch, proxies: dict,
                                                          address: tuple) -> None:
    calls = []
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "https://huggingface.co")
    monkeypatch.setattr(trainer.hub.urllib.request, "getproxies", lambda: proxies)
    monkeypatch.setattr(trainer.hub.socket, "create_connection",
                        lambda where, timeout: calls.append((where, timeout)) or FakeConnection())
    assert trainer.hub.hub_reachable()
    assert calls == [(address, trainer.hub.PROBE_SECONDS)] and trainer.hub.PROBE_SECONDS <= 5


def test_the_hub_probe_reports_a_failed_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(where: tuple, timeout: float) -> None:
        raise OSError("Name or service not known")

    monkeypatch.setattr(trainer.hub.socket, "create_connection", refuse)
    assert not trainer.hub.hub_reachable()


def test_a_saved_spec_missing_its_key_is_one_error_naming_the_file(tmp_path: Path) -> None:
    from trainer.tokenizers import SPEC_FILE, load_tokenizer

    (tmp_path / SPEC_FILE).write_text('{"kind": "char"}')
    with pytest.raises(TokenizerError, match="without 'chars'"):
        load_tokenizer(tmp_path)
