"""Corpora, token streams and batches.

One spec string names every source (see trainer.sources): a path, hf:NAME[:CONFIG][@SPLIT] or
builtin:NAME. Validation text is the hub's own "validation" (else "test") split where there is one;
otherwise the last 10% of the characters, as nanoGPT did, so losses compare with its figures.

`prepare_data` tokenises a corpus once into a token store on disk (trainer.store) and returns its
splits as read-only uint16/uint32 memory maps: no process holds a corpus in memory, and every trial
and worker of a machine shares the pages. Batches (trainer.batches) gather windows from the map and
widen only them. Free of torch: `data prepare` and `data info` never load it.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .corpora import BUILTIN_CORPORA, DEFAULT_DATA_SPEC, DEFAULT_TEXT_COLUMN, DEFAULT_TOKENIZER, DataError
from .sources import DOCUMENT_SEPARATOR, TEXT_SUFFIXES, Source, first_line, open_source
from .store import CACHE_ENV_VAR, VAL_FRACTION, Progress, TokenStore, described_stores, open_store, prepared_store
from .tokenizers import Tokenizer, check_tokenizer_spec

__all__ = ["BUILTIN_CORPORA", "CACHE_ENV_VAR", "DOCUMENT_SEPARATOR", "DataError", "TEXT_SUFFIXES", "VAL_FRACTION",
           "Corpus", "TokenizedData", "check_fits", "data_info", "default_cache_dir", "first_line", "load_corpus",
           "open_store", "prepare_data", "require_window"]


@dataclass(frozen=True)
class Corpus:
    """Train and validation text of one source. `content_hash` changes exactly when the text does."""

    name: str
    train_text: str
    val_text: str
    content_hash: str


@dataclass(frozen=True)
class TokenizedData:
    """A corpus as token ids: `train` and `val` are read-only memory maps of the store's .bin files."""

    data_spec: str
    tokenizer: Tokenizer
    train: np.ndarray
    val: np.ndarray
    content_hash: str
    store: Path  # the token store's folder

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size


def default_cache_dir() -> Path:
    """$DECODER_NAS_CACHE, else ~/.cache/decoder-nas."""
    return Path(os.environ.get(CACHE_ENV_VAR) or Path.home() / ".cache" / "decoder-nas")


def load_corpus(data_spec: str | None, text_column: str = DEFAULT_TEXT_COLUMN, cache_dir: Path | None = None) -> Corpus:
    """The whole text `data_spec` names (None: the default builtin corpus), split into train/val, in
    memory: for inspecting small corpora. Training reads a token store instead (`prepare_data`)."""
    source = _source(data_spec, text_column, Path(cache_dir or default_cache_dir()))
    train_text = "".join(source.train())
    if source.val is None:
        boundary = int(len(train_text) * (1 - VAL_FRACTION))
        train_text, val_text = train_text[:boundary], train_text[boundary:]
    else:
        val_text = "".join(source.val())
    if not (train_text + val_text).strip():
        raise DataError(f"corpus {source.spec!r} is empty")
    digest = hashlib.sha256()
    for text in (train_text, val_text):  # the definition trainer.store._tokenize streams
        encoded = text.encode("utf-8")
        digest.update(len(encoded).to_bytes(8, "little"))
        digest.update(encoded)
    return Corpus(source.spec, train_text, val_text, digest.hexdigest())


def prepare_data(
    data_spec: str | None,
    tokenizer_spec: str = DEFAULT_TOKENIZER,
    cache_dir: Path | None = None,
    text_column: str = DEFAULT_TEXT_COLUMN,
    on_progress: Progress | None = None,
) -> TokenizedData:
    """The token store of a corpus and tokenizer: opened in constant time once prepared, else built
    (streaming, in parallel, atomically; see trainer.store) under `cache_dir/tokens`."""
    check_tokenizer_spec(tokenizer_spec)  # before the corpus is read
    cache_dir = Path(cache_dir or default_cache_dir())
    source = _source(data_spec, text_column, cache_dir)
    return _as_data(source.spec, prepared_store(source, tokenizer_spec, cache_dir / "tokens", on_progress))


def data_info(data_spec: str | None, cache_dir: Path | None = None, text_column: str = DEFAULT_TEXT_COLUMN) -> list[dict]:
    """What the token stores prepared for a corpus hold, one per tokenizer (empty when none is),
    without preparing anything: counts, dtype, content hash, folder, and "current" or "stale"."""
    cache_dir = Path(cache_dir or default_cache_dir())
    return described_stores(_source(data_spec, text_column, cache_dir), cache_dir / "tokens")


def _source(data_spec: str | None, text_column: str, cache_dir: Path) -> Source:
    # `datasets` keeps its own cache of hub data under cache_dir/datasets.
    return open_source(DEFAULT_DATA_SPEC if data_spec is None else data_spec, text_column, cache_dir / "datasets")


def _as_data(spec: str, store: TokenStore) -> TokenizedData:
    return TokenizedData(spec, store.tokenizer, store.train, store.val, store.content_hash, store.folder)


def check_fits(data: TokenizedData, block_size: int) -> None:
    """Raise DataError unless both splits hold at least one window (block_size + 1 tokens)."""
    for split, tokens in (("train", data.train), ("val", data.val)):
        require_window(len(tokens), block_size, f"{data.data_spec} ({split} split)")


def require_window(n_tokens: int, block_size: int, where: str) -> None:
    if n_tokens < block_size + 1:
        raise DataError(f"{where} has {n_tokens} tokens but block_size={block_size} needs at least {block_size + 1}")
