"""The token store: a corpus tokenised once into `train.bin` and `val.bin` on disk, read as memory maps.

One folder per (corpus content, tokenizer) under `cache_dir/tokens/`:

    manifest.json   format version, source spec and content fingerprint, tokenizer spec and identity,
                    dtype, token counts, the corpus content hash, and each .bin's size and sampled digest
    train.bin       token ids, uint16 when the vocabulary fits, else uint32 (nanoGPT's layout)
    val.bin
    tokenizer/      the tokenizer's saved form (trainer.tokenizers), so a store decodes on its own

A store is built in `.building-KEY/` and renamed into place, under a per-corpus lock, so an
interrupted build leaves nothing a later run takes for complete and two processes never both
tokenise one corpus; a building folder whose lock is free was left by a process that died, and is
swept. `tokens/index/` maps a source name and tokenizer spec to its store, so a prepared corpus
opens without being read again: the store is used when its manifest records the source's current
content fingerprint (trainer.sources) and the tokenizer spec, and every check on open passes;
else it is prepared again.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from .corpora import DataError
from .sources import Source, sampled_digest
from .tokenizers import Tokenizer, TokenizerError, load_tokenizer, make_tokenizer

FORMAT_VERSION = 2  # 2: the source's content fingerprint is in the manifest and the folder's name
MANIFEST_FILE = "manifest.json"
SPLITS = ("train", "val")
DTYPES = ("uint16", "uint32")
VAL_FRACTION = 0.1  # without a validation split, the last 10% of the characters, as nanoGPT did
# Text handed to the tokenizer at once. A subword tokenizer's encodings take ~180 bytes per token
# until they are widened, so a batch of 2 Mi characters costs ~200 MB; two are in flight.
BATCH_CHARS = 2 << 20
UNIT_CHARS = 256 << 10  # one unit of parallel work, cut after a newline
CACHE_ENV_VAR = "DECODER_NAS_CACHE"
KEY = re.compile(r"[0-9a-f]{32}")  # an index key's and a store folder's form: no other name read from disk is followed
BUILDING = ".building-"  # + the key: a preparation in progress, or one that died (swept once its lock is free)
UNKEYED_STALE_SECONDS = 3600  # building folders of earlier versions have no key, so no lock says they are dead

Progress = Callable[[int, int], None]  # (bytes of text done, bytes in all)


@dataclass(frozen=True)
class TokenStore:
    folder: Path
    manifest: dict[str, Any]
    tokenizer: Tokenizer
    train: np.ndarray  # read-only memory maps: the page cache holds them, shared by every process
    val: np.ndarray

    @property
    def content_hash(self) -> str:
        return self.manifest["content_hash"]


def open_store(folder: Path) -> TokenStore:
    """The store in `folder`; DataError naming the damage (a manifest that is edited or unreadable, a
    .bin cut short or overwritten, a tokenizer other than the one recorded) and what to do."""
    manifest = _read_manifest(folder)
    dtype = np.dtype(manifest["dtype"])
    arrays = []
    for split in SPLITS:
        path, count = folder / f"{split}.bin", manifest["tokens"][split]
        size = path.stat().st_size if path.is_file() else -1
        if size != count * dtype.itemsize:
            raise _damaged(path, f"{size} bytes, but the manifest records {count} {dtype.name} tokens "
                                 f"({count * dtype.itemsize} bytes)")
        if sampled_digest([path]) != manifest["digests"][split]:
            raise _damaged(path, "content differs from the manifest's digest")
        arrays.append(np.memmap(path, dtype=dtype, mode="r") if count else np.zeros(0, dtype))
    try:
        tokenizer = load_tokenizer(folder / "tokenizer")
    except TokenizerError as exc:
        raise _damaged(folder / "tokenizer", f"unreadable ({exc})") from exc
    recorded = manifest["tokenizer"]
    if (tokenizer.identity, tokenizer.vocab_size) != (recorded["identity"], recorded["vocab_size"]):
        raise _damaged(folder / "tokenizer", f"{tokenizer.identity} of {tokenizer.vocab_size} tokens, but the "
                                             f"manifest records {recorded['identity']} of {recorded['vocab_size']}")
    return TokenStore(folder, manifest, tokenizer, *arrays)


def prepared_store(source: Source, tokenizer_spec: str, root: Path, on_progress: Progress | None = None) -> TokenStore:
    """The store of `source` tokenised by `tokenizer_spec`: opened in constant time when the index
    names an intact store of the same content and tokenizer spec, else built (once, whoever else
    asks at the same time)."""
    key = _short_hash(f"{source.identity}\n{tokenizer_spec}")
    entry = root / "index" / f"{key}.json"
    fingerprint = source.fingerprint()
    _sweep(root)
    store = _indexed(entry, fingerprint, tokenizer_spec, root)
    if store is not None:
        return store
    with _writing(root), _locked(root / "locks" / f"{key}.lock"):
        store = _indexed(entry, fingerprint, tokenizer_spec, root)  # another process may have built it meanwhile
        if store is None:
            try:
                store = _build(source, tokenizer_spec, fingerprint, root / f"{BUILDING}{key}", on_progress)
            except KeyboardInterrupt as stop:  # Ctrl-C or SIGTERM: the command line says what stopped
                stop.doing = f"preparing the token store of {source.spec} (nothing was kept)"  # type: ignore[attr-defined]
                raise
            _write_json(entry, {"store": store.folder.name, "identity": source.identity, "tokenizer": tokenizer_spec})
    return store


def described_stores(source: Source, root: Path) -> list[dict[str, Any]]:
    """What each store prepared for `source` holds (one per tokenizer), and whether the source still
    matches it ("current"), changed since ("stale") or its files were damaged ("damaged: why"); the
    next use prepares a stale or damaged one again."""
    fingerprint, described = source.fingerprint(), []
    for entry in sorted((root / "index").glob("*.json")):
        try:
            index = json.loads(entry.read_text(encoding="utf-8"))
            if index["identity"] != source.identity:
                continue
            folder = _store_folder(root, index["store"])
            store = open_store(folder)
        except DataError as exc:  # damaged: say so (the next use prepares it again)
            described.append({"tokenizer": index.get("tokenizer"), "folder": str(folder), "state": f"damaged: {exc}"})
            continue
        except (OSError, ValueError, KeyError, TypeError):  # an index entry that is not one
            continue
        current = store.manifest["source_fingerprint"] == fingerprint
        described.append(summary(store) | {"state": "current" if current else "stale"})
    return described


def summary(store: TokenStore) -> dict[str, Any]:
    """A store's manifest in a few fields, for `data prepare` and `data info`."""
    manifest = store.manifest
    return {
        "source": manifest["source"], "tokenizer": manifest["tokenizer"]["spec"],
        "vocab_size": manifest["tokenizer"]["vocab_size"], "dtype": manifest["dtype"],
        "train_tokens": manifest["tokens"]["train"], "val_tokens": manifest["tokens"]["val"],
        "text_mb": round(sum(manifest["text_bytes"].values()) / 1e6, 3),
        "content_hash": manifest["content_hash"], "folder": str(store.folder), "created": manifest["created"],
    }


def _damaged(path: Path, problem: str) -> DataError:
    return DataError(f"{path}: {problem}; the token store is damaged and is prepared again from the corpus when "
                     "next used (or delete its folder)")


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _per_split(valid: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, dict) and all(valid(value.get(split)) for split in SPLITS)


def _text(value: Any) -> bool:
    return isinstance(value, str)


_MANIFEST_FIELDS: dict[str, Callable[[Any], bool]] = {
    "source": _text, "source_fingerprint": _text, "content_hash": _text, "created": _text,
    "tokenizer": lambda value: isinstance(value, dict) and _text(value.get("spec")) and _text(value.get("identity"))
    and _whole(value.get("vocab_size")),
    "dtype": lambda value: value in DTYPES,
    "tokens": _per_split(_whole), "text_bytes": _per_split(_whole), "digests": _per_split(_text),
}


def _read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{folder}: not a token store (no readable {MANIFEST_FILE})") from exc
    if not isinstance(manifest, dict):
        raise _damaged(path, f"a JSON {type(manifest).__name__}, not an object")
    if manifest.get("format") != FORMAT_VERSION:
        raise _damaged(path, f"format {manifest.get('format')!r}, not {FORMAT_VERSION} (an earlier decoder-nas "
                             "wrote it, or it was edited)")
    bad = next((key for key, valid in _MANIFEST_FIELDS.items() if not valid(manifest.get(key))), None)
    if bad is not None:
        raise _damaged(path, f"{bad!r} is missing or malformed ({str(manifest.get(bad))[:40]!r})")
    return manifest


def _store_folder(root: Path, name: Any) -> Path:
    """The folder an index entry names: a store's own name, never a path read from disk."""
    if not isinstance(name, str) or not KEY.fullmatch(name):
        raise ValueError(f"not a store name: {name!r}")
    return root / name


def _indexed(entry: Path, fingerprint: str, tokenizer_spec: str, root: Path) -> TokenStore | None:
    """The store the index entry names, if it is intact and was made from this content by this
    tokenizer spec; else None (it is built again). The manifest, not the entry, is what is checked:
    an entry pointed at another corpus's store is not followed."""
    try:
        store = open_store(_store_folder(root, json.loads(entry.read_text(encoding="utf-8"))["store"]))
    except (OSError, ValueError, KeyError, TypeError):  # none yet, or damaged (DataError is a ValueError)
        return None
    made = store.manifest
    return store if (made["source_fingerprint"], made["tokenizer"]["spec"]) == (fingerprint, tokenizer_spec) else None


def _sweep(root: Path) -> None:
    """Remove the building folders of preparations that died (SIGKILL, a power cut): a folder's key
    lock is free only when no process is preparing that key."""
    for folder in root.glob(f"{BUILDING}*"):
        key = folder.name.removeprefix(BUILDING)
        try:
            if KEY.fullmatch(key):
                with _locked(root / "locks" / f"{key}.lock", wait=False):
                    shutil.rmtree(folder, ignore_errors=True)
            elif time.time() - folder.stat().st_mtime > UNKEYED_STALE_SECONDS:
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:  # its preparation is running (the lock is held), or the cache is read-only
            continue


def _build(source: Source, tokenizer_spec: str, fingerprint: str, building: Path,
           on_progress: Progress | None) -> TokenStore:
    """Tokenise `source` into `building` (under its key's lock), then rename it into place."""
    root = building.parent
    shutil.rmtree(building, ignore_errors=True)  # left by a build of this key that died: we hold its lock
    started = time.perf_counter()
    scan = _scan(source, want_chars=tokenizer_spec == "char")
    scanned = time.perf_counter()
    tokenizer = make_tokenizer(tokenizer_spec, scan.chars if tokenizer_spec == "char" else
                               _split(source, scan.train_chars)[0]())
    fitted = time.perf_counter()
    if tokenizer.vocab_size > 2**32:
        raise DataError(f"tokenizer {tokenizer_spec!r} has {tokenizer.vocab_size} tokens: more than uint32 holds")
    dtype = np.dtype(np.uint16 if tokenizer.vocab_size <= 2**16 else np.uint32)
    temporary = building / "store"
    try:
        temporary.mkdir(parents=True)
        content_hash, counts = _tokenize(source, scan, tokenizer, dtype, temporary, on_progress)
        manifest = {
            "format": FORMAT_VERSION, "source": source.spec, "source_identity": source.identity,
            "source_fingerprint": fingerprint,
            "tokenizer": {"spec": tokenizer_spec, "identity": tokenizer.identity, "vocab_size": tokenizer.vocab_size},
            "dtype": dtype.name, "tokens": counts, "content_hash": content_hash,
            "text_bytes": {"train": scan.train_bytes, "val": scan.val_bytes},
            "digests": {split: sampled_digest([temporary / f"{split}.bin"]) for split in SPLITS},
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "seconds": {"read": round(scanned - started, 3), "tokenizer": round(fitted - scanned, 3),
                        "tokenize": round(time.perf_counter() - fitted, 3)},
        }
        tokenizer.save(temporary / "tokenizer")
        _write_json(temporary / MANIFEST_FILE, manifest)
        # The same content, tokenizer spec and vocabulary reached under another source name share a store.
        folder = root / _short_hash("\n".join((fingerprint, tokenizer_spec, content_hash, tokenizer.identity)))
        if folder.exists():
            try:
                return open_store(folder)
            except DataError:  # damaged: moved aside (readers keep their maps), ours takes its place
                os.rename(folder, building / "damaged")
        os.rename(temporary, folder)
        return open_store(folder)
    finally:
        shutil.rmtree(building, ignore_errors=True)


@dataclass
class _Scan:
    train_chars: int  # characters of the training split (all of the train source when it is split)
    train_bytes: int
    val_bytes: int
    chars: str  # the alphabet, when asked for


def _scan(source: Source, want_chars: bool) -> _Scan:
    """One read of the text: sizes for the split point and the hash, and the alphabet for "char"."""
    seen = np.zeros(0x110000, dtype=bool)  # every Unicode code point: one gather per piece finds the alphabet
    sizes = []
    has_text = False
    for pieces in (source.train, source.val):
        n_chars = n_bytes = 0
        for piece in pieces() if pieces else ():
            n_chars, n_bytes = n_chars + len(piece), n_bytes + len(piece.encode("utf-8"))
            has_text = has_text or not piece.isspace()
            if want_chars:
                seen[np.frombuffer(piece.encode("utf-32-le"), dtype=np.uint32)] = True
        sizes.append((n_chars, n_bytes))
    if not has_text:
        raise DataError(f"corpus {source.spec!r} is empty")
    chars = "".join(map(chr, np.flatnonzero(seen))) if want_chars else ""
    (train_chars, train_bytes), (_, val_bytes) = sizes
    if source.val is None:
        boundary = int(train_chars * (1 - VAL_FRACTION))  # contiguous: the last 10% of characters
        head = sum(len(piece.encode("utf-8")) for piece in _split(source, boundary)[0]())
        return _Scan(boundary, head, train_bytes - head, chars)
    return _Scan(train_chars, train_bytes, val_bytes, chars)


def _split(source: Source, train_chars: int) -> tuple[Callable[[], Iterator[str]], Callable[[], Iterator[str]]]:
    """Train and val pieces: the source's own splits, or its first `train_chars` characters and the rest."""
    if source.val is not None:
        return source.train, source.val

    def cut(keep_head: bool) -> Iterator[str]:
        seen = 0
        for piece in source.train():
            head = piece[: max(train_chars - seen, 0)]
            seen += len(piece)
            part = head if keep_head else piece[len(head):]
            if part:
                yield part
            if keep_head and seen >= train_chars:
                return

    return lambda: cut(True), lambda: cut(False)


def _tokenize(source: Source, scan: _Scan, tokenizer: Tokenizer, dtype: np.dtype, folder: Path,
              on_progress: Progress | None) -> tuple[str, dict[str, int]]:
    """Stream both splits through the tokenizer into folder/{train,val}.bin; returns the content hash
    (the same definition as ever: sha256 over each split's UTF-8 length and bytes) and token counts."""
    digest, counts, done = hashlib.sha256(), {}, 0
    total = scan.train_bytes + scan.val_bytes
    report = on_progress or _progress_bar(source.spec, total)
    # One batch is encoded (on all cores; encode_batch releases the GIL) while the previous one is
    # written and hashed here, so the cores never wait for the disk.
    with ThreadPoolExecutor(1) as encoder:
        for split, pieces, n_bytes in zip(SPLITS, _split(source, scan.train_chars), (scan.train_bytes, scan.val_bytes)):
            digest.update(n_bytes.to_bytes(8, "little"))  # the split point is part of the content
            counts[split] = 0
            with open(folder / f"{split}.bin", "wb") as out:
                encoded_batches = (
                    (batch, encoder.submit(tokenizer.encode_many, batch)) for batch in _batches(pieces()))
                for batch, ids_of in _one_ahead(encoded_batches):
                    for ids in ids_of.result():
                        ids.astype(dtype, copy=False).tofile(out)
                        counts[split] += len(ids)
                    for text in batch:
                        encoded = text.encode("utf-8")
                        digest.update(encoded)
                        done += len(encoded)
                    report(done, total)
    report(total, total)
    return digest.hexdigest(), counts


def _one_ahead(items: Iterator[Any]) -> Iterator[Any]:
    """`items` with the next one always drawn before the current one is handed out."""
    pending = next(items, None)
    while pending is not None:
        following = next(items, None)
        yield pending
        pending = following


def _batches(pieces: Iterator[str]) -> Iterator[list[str]]:
    """Pieces regrouped into units of about UNIT_CHARS, each cut after a newline (so a subword
    tokenizer sees whole lines), in batches of about BATCH_CHARS characters."""
    batch: list[str] = []
    carry, size = "", 0
    for piece in pieces:
        carry += piece
        while len(carry) >= UNIT_CHARS:
            cut = carry.rfind("\n", 0, 2 * UNIT_CHARS) + 1 or len(carry)
            unit, carry = carry[:cut], carry[cut:]
            batch.append(unit)
            size += len(unit)
            if size >= BATCH_CHARS:
                yield batch
                batch, size = [], 0
    if carry:
        batch.append(carry)
    if batch:
        yield batch


def _progress_bar(spec: str, total: int) -> Progress:
    """A rich bar on stderr (MB, MB/s, ETA) when it is a terminal and the corpus is worth one."""
    if not sys.stderr.isatty() or total < 8 << 20:
        return lambda done, total: None
    from rich.progress import BarColumn, DownloadColumn, TextColumn, TimeRemainingColumn, TransferSpeedColumn
    from rich.progress import Progress as Bar

    bar = Bar(TextColumn("tokenising {task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
              TimeRemainingColumn(), transient=True)
    task = bar.add_task(spec, total=total)
    bar.start()

    def report(done: int, total: int) -> None:
        bar.update(task, completed=done)
        if done >= total:
            bar.stop()

    return report


@contextmanager
def _writing(root: Path) -> Iterator[None]:
    """OSErrors while writing the store become one line: a full disk, a read-only folder."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        yield
    except OSError as exc:
        reason = "the disk is full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
        raise DataError(f"cannot write the token store under {root} ({reason}); nothing was kept. "
                        f"Free space or point ${CACHE_ENV_VAR} at a writable folder") from exc


@contextmanager
def _locked(path: Path, wait: bool = True) -> Iterator[None]:
    """An exclusive lock on `path`; without `wait`, BlockingIOError at once if another process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))  # released when the file closes,
        yield  # also if this process dies


def _write_json(path: Path, value: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False, encoding="utf-8") as tmp:
        json.dump(value, tmp, indent=1)
    os.replace(tmp.name, path)


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]
