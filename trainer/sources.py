"""The text a data spec names, as a stream of bounded pieces: no corpus is ever one string.

    path/to/file.txt or path/to/folder   local .txt/.md files, one document per file
    hf:NAME[:CONFIG][@SPLIT]             a hub dataset; SPLIT (default "train") is trained on
    builtin:NAME                         a corpus shipped with Python, no network (see BUILTIN_CORPORA)

Files are read the way `datasets`' text loader read them before (UTF-8, universal newlines, one
document per file, empty files skipped), so corpora keep their content hash. A `Source` also has a
cheap `fingerprint` of its content: for files their sizes and sampled blocks (never a path or a
timestamp, so a copy or a touch elsewhere matches), for hub data `datasets`' own fingerprint.
"""

from __future__ import annotations

import codecs
import hashlib
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Mapping

from .corpora import BUILTIN_CORPORA, DEFAULT_TEXT_COLUMN, DataError
from .hub import require_hub

if TYPE_CHECKING:  # datasets loads only for hub data: a local corpus never pays for it
    import datasets

TEXT_SUFFIXES = (".txt", ".md")
DOCUMENT_SEPARATOR = "\n\n"  # between documents of one corpus, so none runs into the next
PIECE_CHARS = 1 << 20  # a file is read 1 Mi characters at a time: memory stays bounded
SAMPLED_BLOCKS, BLOCK_BYTES = 16, 4096  # a fingerprint reads at most 64 KiB of a file

_HF_SPEC = re.compile(r"hf:(?P<name>[^:@]+)(?::(?P<config>[^:@]+))?(?:@(?P<split>[^:@]+))?")
_HUB_VAL_SPLITS = ("validation", "test")
_SPEC_FORMS = "a path, hf:NAME[:CONFIG][@SPLIT] or builtin:NAME"

Pieces = Callable[[], Iterator[str]]  # each call streams the text again from its start


@dataclass(frozen=True)
class Source:
    """A corpus to stream. `val` is None when validation is the last 10% of `train`'s characters."""

    spec: str  # as recorded: a local path made absolute
    identity: str  # names the source, not its content: a resolved path, a hub name and column
    train: Pieces
    val: Pieces | None
    fingerprint: Callable[[], str]  # of the content only; changes whenever it does; cheap for any corpus size


def open_source(spec: str, text_column: str = DEFAULT_TEXT_COLUMN, datasets_cache: Path | None = None) -> Source:
    """The source `spec` names; raises DataError for a malformed spec or a missing path, split or column."""
    if not spec.strip():
        raise DataError(f"empty data spec: expected {_SPEC_FORMS}")
    if spec.startswith("builtin:"):
        return _builtin_source(spec)
    if spec.startswith("hf:"):
        return _hub_source(spec, text_column, datasets_cache)
    if re.match(r"[A-Za-z][\w-]*:", spec) and not Path(spec).exists():
        raise DataError(f"malformed data spec {spec!r}: expected {_SPEC_FORMS}")
    return _file_source(spec)


def sampled_digest(paths: Iterable[Path]) -> str:
    """sha256 over each file's size and up to SAMPLED_BLOCKS evenly spaced blocks (the whole file
    when it is that small): constant time. Content only, no names or timestamps: the same files
    copied elsewhere, or touched, give the same digest; an edit that keeps the size and misses
    every sampled block goes unseen."""
    digest = hashlib.sha256()
    for path in paths:
        size = path.stat().st_size
        digest.update(f"{size}\n".encode())
        with open(path, "rb") as file:
            if size <= SAMPLED_BLOCKS * BLOCK_BYTES:
                digest.update(file.read())
                continue
            for i in range(SAMPLED_BLOCKS):
                file.seek((size - BLOCK_BYTES) * i // (SAMPLED_BLOCKS - 1))
                digest.update(file.read(BLOCK_BYTES))
    return digest.hexdigest()


def _documents(documents: Iterable[Iterable[str]]) -> Iterator[str]:
    """Documents' pieces with DOCUMENT_SEPARATOR between non-empty documents."""
    first = True
    for document in documents:
        started = False
        for piece in document:
            if not piece:
                continue
            if not started:
                if not first:
                    yield DOCUMENT_SEPARATOR
                first, started = False, True
            yield piece


def _file_source(spec: str) -> Source:
    path = Path(spec)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES)
        if not files:
            raise DataError(f"folder {spec!r} holds no {' or '.join(TEXT_SUFFIXES)} files")
    elif path.is_file():
        files = [path]
    elif path.exists():
        raise DataError(f"data path {spec!r} is {_kind_of(path)}, not a text file or folder: the corpus is read "
                        "several times, so save it to a file first (e.g. `cat SOURCE > corpus.txt`)")
    else:
        raise DataError(f"data path {spec!r} does not exist")
    # Named by absolute path, as runs and studies record it: `train --resume` from another folder finds it.
    absolute = str(path.resolve())
    return Source(absolute, f"files:{absolute}", lambda: _documents(_read_text(f) for f in files), None,
                  lambda: sampled_digest(files))


def _kind_of(path: Path) -> str:
    mode = path.stat().st_mode
    kinds = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def _read_text(path: Path) -> Iterator[str]:
    # Text mode: universal newlines ("\r\n" -> "\n"), as datasets' text loader (and so every earlier hash) had it.
    try:
        file = open(path, encoding="utf-8", errors="strict")
    except OSError as exc:
        raise DataError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from exc
    with file:
        read = 0
        try:
            while piece := file.read(PIECE_CHARS):
                if "\x00" in piece:
                    raise DataError(f"{str(path)!r} looks binary, not text: a NUL character at character "
                                    f"{read + piece.index(chr(0))}")
                read += len(piece)
                yield piece
        except UnicodeDecodeError as exc:
            raise DataError(f"could not read {str(path)!r} as UTF-8 text: {_where_utf8_breaks(path)}") from exc


def _where_utf8_breaks(path: Path) -> str:
    decoder, offset, line = codecs.getincrementaldecoder("utf-8")(), 0, 1
    with open(path, "rb") as file:
        while block := file.read(1 << 20):
            try:
                decoder.decode(block)
            except UnicodeDecodeError as exc:
                bad = max(exc.start - len(decoder.getstate()[0]), 0)
                line += block[:bad].count(b"\n")
                return f"invalid UTF-8 byte 0x{block[bad]:02x} at byte {offset + bad} (line {line})"
            offset, line = offset + len(block), line + block.count(b"\n")
    return "the file ends inside a UTF-8 character"


def _builtin_source(spec: str) -> Source:
    name = spec.removeprefix("builtin:")
    if name not in BUILTIN_CORPORA:
        raise DataError(f"unknown builtin corpus {spec!r}; available: {', '.join(sorted(BUILTIN_CORPORA))}")
    documents = BUILTIN_CORPORA[name].documents

    def fingerprint() -> str:  # a few hundred kB: hashing it is the cheap check
        return hashlib.sha256("\0".join(documents()).encode()).hexdigest()

    return Source(spec, spec, lambda: _documents([d] for d in documents()), None, fingerprint)


def _hub_source(spec: str, text_column: str, datasets_cache: Path | None) -> Source:
    splits, train_split = _load_hub(spec, datasets_cache)
    if train_split not in splits:
        raise DataError(f"{spec!r} has no split {train_split!r}; available: {', '.join(splits)}")
    val_split = next((s for s in _HUB_VAL_SPLITS if s in splits and s != train_split), None)
    used = [splits[train_split]] + ([splits[val_split]] if val_split else [])
    for dataset in used:
        if text_column not in dataset.column_names:
            raise DataError(f"{spec!r} has no column {text_column!r}; columns: {', '.join(dataset.column_names)}")

    def pieces(dataset: datasets.Dataset) -> Pieces:
        # Arrow-backed and memory-mapped: rows stream in batches, never the whole column at once.
        rows = dataset.select_columns([text_column])
        return lambda: _documents([text] for batch in rows.iter(batch_size=1024) for text in batch[text_column])

    return Source(
        spec, f"{spec}#{text_column}", pieces(used[0]), pieces(used[1]) if val_split else None,
        lambda: hashlib.sha256("\0".join(d._fingerprint for d in used).encode()).hexdigest(),
    )


def _load_hub(spec: str, datasets_cache: Path | None) -> tuple[Mapping[str, datasets.Dataset], str]:
    match = _HF_SPEC.fullmatch(spec)
    if match is None:
        raise DataError(f"malformed data spec {spec!r}: expected hf:NAME[:CONFIG][@SPLIT]")
    name, config = match["name"], match["config"]
    require_hub(name, spec, DataError)
    import datasets

    try:
        cache = str(datasets_cache) if datasets_cache else None
        return datasets.load_dataset(name, config, cache_dir=cache), match["split"] or "train"
    except ConnectionError as exc:
        raise DataError(f"{spec!r}: could not reach the Hugging Face hub (offline?), nor is it cached") from exc
    except datasets.exceptions.DatasetNotFoundError as exc:
        raise DataError(f"{spec!r}: dataset {name!r} was not found on the Hugging Face hub") from exc
    except (OSError, ValueError, datasets.exceptions.DatasetsError) as exc:
        raise DataError(f"{spec!r}: could not load dataset {name!r}: {first_line(exc)}") from exc


def first_line(exc: BaseException) -> str:
    """An exception's message cut to one line (library errors often run to a page), else its type."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
