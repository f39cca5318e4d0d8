"""Corpora, token streams and batches.

One spec string names every source, and every source goes through Hugging Face `datasets`:

    path/to/file.txt or path/to/folder   local .txt/.md files, one document per file
    hf:NAME[:CONFIG][@SPLIT]             a hub dataset; SPLIT (default "train") is trained on
    builtin:NAME                         a corpus shipped with Python, no network (see BUILTIN_CORPORA)

Validation text is the hub's own "validation" (else "test") split where there is one; otherwise
the last 10% of the characters, as nanoGPT did, so losses compare with its figures.

Token ids are cached under `cache_dir/tokens/`, keyed by the corpus content and the tokenizer's
vocabulary, so a study's many trials tokenise once. In memory they are 1-D int64 tensors.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import datasets
import numpy as np
import torch

from .corpora import BUILTIN_CORPORA, DEFAULT_DATA_SPEC, DataError
from .hub import require_hub
from .tokenizers import Tokenizer, make_tokenizer

VAL_FRACTION = 0.1
TEXT_SUFFIXES = (".txt", ".md")
DOCUMENT_SEPARATOR = "\n\n"  # between documents of one corpus, so none runs into the next
CACHE_ENV_VAR = "DECODER_NAS_CACHE"

_HF_SPEC = re.compile(r"hf:(?P<name>[^:@]+)(?::(?P<config>[^:@]+))?(?:@(?P<split>[^:@]+))?")
_HUB_VAL_SPLITS = ("validation", "test")
_SPEC_FORMS = "a path, hf:NAME[:CONFIG][@SPLIT] or builtin:NAME"


@dataclass(frozen=True)
class Corpus:
    """Train and validation text of one source. `content_hash` changes exactly when the text does."""

    name: str
    train_text: str
    val_text: str
    content_hash: str


@dataclass(frozen=True)
class TokenizedData:
    """A corpus as token ids: `train` and `val` are 1-D int64 tensors (ready for nn.Embedding)."""

    data_spec: str
    tokenizer: Tokenizer
    train: torch.Tensor
    val: torch.Tensor
    content_hash: str
    cache_file: Path

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size


def default_cache_dir() -> Path:
    """$DECODER_NAS_CACHE, else ~/.cache/decoder-nas."""
    return Path(os.environ.get(CACHE_ENV_VAR) or Path.home() / ".cache" / "decoder-nas")


def load_corpus(data_spec: str | None, text_column: str = "text", cache_dir: Path | None = None) -> Corpus:
    """Load the text `data_spec` names (None: the default builtin corpus) and split it into train/val.

    `text_column` picks the column of a hub dataset; local files and builtins always use "text".
    `datasets` keeps its own cache under `cache_dir/datasets`.
    """
    spec = DEFAULT_DATA_SPEC if data_spec is None else data_spec
    datasets_cache = Path(cache_dir or default_cache_dir()) / "datasets"
    if not spec.strip():
        raise DataError(f"empty data spec: expected {_SPEC_FORMS}")
    if spec.startswith("builtin:"):
        splits, train_split, text_column = _load_builtin(spec), "train", "text"
    elif spec.startswith("hf:"):
        splits, train_split = _load_hub(spec, datasets_cache)
    elif re.match(r"[A-Za-z][\w-]*:", spec) and not Path(spec).exists():
        raise DataError(f"malformed data spec {spec!r}: expected {_SPEC_FORMS}")
    else:
        splits, train_split, text_column = _load_text_files(spec, datasets_cache), "train", "text"
    return _split_corpus(spec, splits, train_split, text_column)


def prepare_data(
    data_spec: str | None,
    tokenizer_spec: str = "char",
    cache_dir: Path | None = None,
    text_column: str = "text",
) -> TokenizedData:
    """Load a corpus, build its tokenizer and return its token ids, tokenising only on a cache miss."""
    cache_dir = Path(cache_dir or default_cache_dir())
    corpus = load_corpus(data_spec, text_column, cache_dir)
    tokenizer = make_tokenizer(tokenizer_spec, corpus.train_text + corpus.val_text)
    cache_key = hashlib.sha256(f"{corpus.content_hash}\n{tokenizer.identity}".encode()).hexdigest()[:32]
    cache_file = cache_dir / "tokens" / f"{cache_key}.npz"
    try:
        train, val = _read_tokens(cache_file)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):  # missing or damaged: tokenise again
        _write_tokens(cache_file, tokenizer, corpus)
        train, val = _read_tokens(cache_file)
    return TokenizedData(corpus.name, tokenizer, train, val, corpus.content_hash, cache_file)


def check_fits(data: TokenizedData, block_size: int) -> None:
    """Raise DataError unless both splits hold at least one window (block_size + 1 tokens)."""
    for split, tokens in (("train", data.train), ("val", data.val)):
        _require_window(tokens, block_size, f"{data.data_spec} ({split} split)")


def sample_batch(
    tokens: torch.Tensor, batch_size: int, block_size: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """`batch_size` random windows of `tokens`: inputs x and targets y = x shifted left by one."""
    _require_window(tokens, block_size, "token stream")
    # Offsets are drawn where the generator lives (the tokens' device), so a GPU run never syncs here.
    offsets = torch.randint(len(tokens) - block_size, (batch_size,), generator=generator, device=generator.device)
    windows = tokens[offsets[:, None] + torch.arange(block_size + 1, device=generator.device)]
    return windows[:, :-1].contiguous(), windows[:, 1:].contiguous()


def validation_windows(
    tokens: torch.Tensor, block_size: int, n_windows: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed set of windows: the same seed gives the same (x, y), so every trial is scored alike."""
    return sample_batch(tokens, n_windows, block_size, torch.Generator().manual_seed(seed))


def _load_builtin(spec: str) -> Mapping[str, datasets.Dataset]:
    name = spec.removeprefix("builtin:")
    if name not in BUILTIN_CORPORA:
        raise DataError(f"unknown builtin corpus {spec!r}; available: {', '.join(sorted(BUILTIN_CORPORA))}")
    return {"train": datasets.Dataset.from_dict({"text": BUILTIN_CORPORA[name].documents()})}


def _load_text_files(spec: str, datasets_cache: Path) -> Mapping[str, datasets.Dataset]:
    path = Path(spec)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES)
        if not files:
            raise DataError(f"folder {spec!r} holds no {' or '.join(TEXT_SUFFIXES)} files")
    elif path.is_file():
        files = [path]
    else:
        raise DataError(f"data path {spec!r} does not exist")
    try:
        return datasets.load_dataset(
            "text",
            data_files={"train": [str(f) for f in files]},
            sample_by="document",  # whole files, so newlines survive
            cache_dir=str(datasets_cache),
            # datasets keys local files by mtime; re-read them (milliseconds) so an edit is never masked.
            download_mode="force_redownload",
        )
    except datasets.exceptions.DatasetGenerationError as exc:
        raise DataError(f"could not read {spec!r} as UTF-8 text: {exc.__cause__ or exc}") from exc


def _load_hub(spec: str, datasets_cache: Path) -> tuple[Mapping[str, datasets.Dataset], str]:
    match = _HF_SPEC.fullmatch(spec)
    if match is None:
        raise DataError(f"malformed data spec {spec!r}: expected hf:NAME[:CONFIG][@SPLIT]")
    name, config = match["name"], match["config"]
    require_hub(name, spec, DataError)
    try:
        return datasets.load_dataset(name, config, cache_dir=str(datasets_cache)), match["split"] or "train"
    except ConnectionError as exc:
        raise DataError(f"{spec!r}: could not reach the Hugging Face hub (offline?), nor is it cached") from exc
    except datasets.exceptions.DatasetNotFoundError as exc:
        raise DataError(f"{spec!r}: dataset {name!r} was not found on the Hugging Face hub") from exc
    except (OSError, ValueError, datasets.exceptions.DatasetsError) as exc:
        raise DataError(f"{spec!r}: could not load dataset {name!r}: {first_line(exc)}") from exc


def _split_corpus(
    spec: str, splits: Mapping[str, datasets.Dataset], train_split: str, text_column: str
) -> Corpus:
    if train_split not in splits:
        raise DataError(f"{spec!r} has no split {train_split!r}; available: {', '.join(splits)}")
    train_text = _join_documents(spec, splits[train_split], text_column)
    val_split = next((s for s in _HUB_VAL_SPLITS if s in splits and s != train_split), None)
    if val_split is not None:
        val_text = _join_documents(spec, splits[val_split], text_column)
    else:
        boundary = int(len(train_text) * (1 - VAL_FRACTION))  # contiguous: the last 10% of characters
        train_text, val_text = train_text[:boundary], train_text[boundary:]
    if not (train_text + val_text).strip():
        raise DataError(f"corpus {spec!r} is empty")
    return Corpus(spec, train_text, val_text, _content_hash(train_text, val_text))


def _join_documents(spec: str, dataset: datasets.Dataset, text_column: str) -> str:
    if text_column not in dataset.column_names:
        raise DataError(f"{spec!r} has no column {text_column!r}; columns: {', '.join(dataset.column_names)}")
    return DOCUMENT_SEPARATOR.join(text for text in dataset[text_column] if text)


def _content_hash(train_text: str, val_text: str) -> str:
    digest = hashlib.sha256()
    for text in (train_text, val_text):
        encoded = text.encode("utf-8")
        digest.update(len(encoded).to_bytes(8, "little"))  # the split point is part of the content
        digest.update(encoded)
    return digest.hexdigest()


def _read_tokens(cache_file: Path) -> tuple[torch.Tensor, torch.Tensor]:
    with np.load(cache_file) as arrays:
        return tuple(torch.from_numpy(arrays[split].astype(np.int64)) for split in ("train", "val"))


def _write_tokens(cache_file: Path, tokenizer: Tokenizer, corpus: Corpus) -> None:
    dtype = np.uint16 if tokenizer.vocab_size <= 2**16 else np.uint32  # a quarter of int64's disk
    arrays = {
        split: np.asarray(tokenizer.encode(text), dtype=dtype)
        for split, text in (("train", corpus.train_text), ("val", corpus.val_text))
    }
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename, so parallel trials never read a half-written file.
        with tempfile.NamedTemporaryFile(dir=cache_file.parent, suffix=".tmp", delete=False) as tmp:
            np.savez(tmp, **arrays)
        os.replace(tmp.name, cache_file)
    except OSError as exc:
        raise DataError(f"cannot write the token cache {cache_file} ({exc.strerror or exc}); "
                        f"point ${CACHE_ENV_VAR} at a writable folder") from exc


def first_line(exc: BaseException) -> str:
    """An exception's message cut to one line (library errors often run to a page), else its type."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _require_window(tokens: torch.Tensor, block_size: int, where: str) -> None:
    if len(tokens) < block_size + 1:
        raise DataError(
            f"{where} has {len(tokens)} tokens but block_size={block_size} needs at least {block_size + 1}"
        )
