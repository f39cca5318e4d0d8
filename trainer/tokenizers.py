"""Tokenizers: characters, UTF-8 bytes, or any Hugging Face `tokenizers` model, behind one interface.

`make_tokenizer(spec, corpus_text)` builds one from a spec string; `tokenizer.save(run_dir)` and
`load_tokenizer(run_dir)` keep it with a run, so sampling later decodes with the same vocabulary.
`identity` names the exact vocabulary and is what token caches are keyed on.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import tokenizers

from .hub import require_hub

SPEC_FILE = "tokenizer_spec.json"  # written by every tokenizer's save(); says which kind to load
HF_TOKENIZER_FILE = "tokenizer.json"


class TokenizerError(ValueError):
    """A tokenizer that cannot be built, loaded or applied; the message names the offending input."""


class Tokenizer(ABC):
    """Text <-> token ids. `name` is the spec it was made from ("char", "byte", "gpt2", a path)."""

    name: str

    @property
    @abstractmethod
    def vocab_size(self) -> int: ...

    @property
    @abstractmethod
    def identity(self) -> str:
        """Kind plus a hash of the vocabulary: equal identities encode every text identically."""

    @abstractmethod
    def encode(self, text: str) -> list[int]: ...

    @abstractmethod
    def decode(self, ids: Sequence[int]) -> str: ...

    @abstractmethod
    def save(self, directory: Path) -> None:
        """Write everything `load_tokenizer(directory)` needs into `directory` (created if missing)."""


class CharTokenizer(Tokenizer):
    """One token per character of the corpus, ids in code-point order (nanoGPT's shakespeare_char)."""

    name = "char"

    def __init__(self, chars: str) -> None:
        if not chars:
            raise TokenizerError("char tokenizer needs a non-empty corpus to take its characters from")
        self.chars = "".join(sorted(set(chars)))
        # Sorted code points let encode() map a whole text with one vectorised searchsorted.
        self._code_points = _code_points(self.chars)

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    @property
    def identity(self) -> str:
        return f"char:{_short_hash(self.chars)}"

    def encode(self, text: str) -> list[int]:
        code_points = _code_points(text)
        ids = np.searchsorted(self._code_points, code_points)
        known = self._code_points[np.minimum(ids, self.vocab_size - 1)] == code_points
        if not known.all():
            unknown = sorted(set(chr(c) for c in code_points[~known]))
            raise TokenizerError(f"char tokenizer has no id for characters {''.join(unknown)[:20]!r}")
        return ids.tolist()

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(self.chars[i] for i in ids)

    def save(self, directory: Path) -> None:
        _write_spec(directory, {"kind": "char", "chars": self.chars})


class ByteTokenizer(Tokenizer):
    """The 256 UTF-8 byte values: no vocabulary to fit, any text encodes."""

    name = "byte"
    vocab_size = 256
    identity = "byte"

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: Sequence[int]) -> str:
        # A sampled byte sequence need not be valid UTF-8; show the damage instead of failing.
        return bytes(ids).decode("utf-8", errors="replace")

    def save(self, directory: Path) -> None:
        _write_spec(directory, {"kind": "byte"})


class HuggingFaceTokenizer(Tokenizer):
    """A `tokenizers.Tokenizer` (BPE, WordPiece, ...), from the Hugging Face hub or a tokenizer.json."""

    def __init__(self, tokenizer: tokenizers.Tokenizer, name: str) -> None:
        self.name = name
        self._tokenizer = tokenizer
        self._identity = f"hf:{_short_hash(tokenizer.to_str())}"

    @property
    def vocab_size(self) -> int:
        return self._tokenizer.get_vocab_size(with_added_tokens=True)

    @property
    def identity(self) -> str:
        return self._identity

    def encode(self, text: str) -> list[int]:
        # No BOS/EOS from a post-processor: the corpus is one continuous stream.
        return self._tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Sequence[int]) -> str:
        return self._tokenizer.decode(list(ids), skip_special_tokens=False)

    def save(self, directory: Path) -> None:
        _write_spec(directory, {"kind": "huggingface", "name": self.name})
        self._tokenizer.save(str(Path(directory) / HF_TOKENIZER_FILE))


def make_tokenizer(spec: str, corpus_text: str) -> Tokenizer:
    """Build the tokenizer `spec` names: "char" (fitted to `corpus_text`), "byte",
    a path to a tokenizer.json (or a folder holding one), or a tokenizer name on the Hugging Face hub."""
    if spec == "char":
        return CharTokenizer(corpus_text)
    if spec == "byte":
        return ByteTokenizer()
    path = Path(spec)
    if path.exists() or spec.endswith(".json"):
        return _load_tokenizer_file(path / HF_TOKENIZER_FILE if path.is_dir() else path, name=spec)
    return _load_hub_tokenizer(spec)


def load_tokenizer(directory: Path) -> Tokenizer:
    """Load a tokenizer that `Tokenizer.save(directory)` wrote."""
    spec_path = Path(directory) / SPEC_FILE
    try:
        spec = json.loads(spec_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TokenizerError(f"no saved tokenizer readable at {spec_path} ({type(exc).__name__})") from exc
    kind = spec.get("kind") if isinstance(spec, dict) else None
    needs = {"char": "chars", "huggingface": "name"}.get(kind)
    if needs is not None and needs not in spec:
        raise TokenizerError(f"{spec_path}: a {kind} tokenizer spec without {needs!r}; the file was edited or cut short")
    if kind == "char":
        return CharTokenizer(spec["chars"])
    if kind == "byte":
        return ByteTokenizer()
    if kind == "huggingface":
        return _load_tokenizer_file(Path(directory) / HF_TOKENIZER_FILE, name=spec["name"])
    raise TokenizerError(f"{spec_path} names unknown tokenizer kind {kind!r}")


def _load_tokenizer_file(path: Path, name: str) -> HuggingFaceTokenizer:
    if not path.is_file():
        raise TokenizerError(f"tokenizer file {path} does not exist")
    try:
        return HuggingFaceTokenizer(tokenizers.Tokenizer.from_file(str(path)), name=name)
    except Exception as exc:  # the Rust binding raises plain Exception for any malformed file
        raise TokenizerError(f"tokenizer file {path} is not a valid tokenizer.json: {exc}") from exc


def _load_hub_tokenizer(name: str) -> HuggingFaceTokenizer:
    require_hub(name, f"tokenizer {name!r}", TokenizerError)
    try:
        return HuggingFaceTokenizer(tokenizers.Tokenizer.from_pretrained(name), name=name)
    except (OSError, ValueError) as exc:  # hub errors are OSErrors; a malformed repo id is a ValueError
        raise TokenizerError(
            f"unknown tokenizer {name!r}: not 'char', 'byte' or a tokenizer.json path, and the Hugging Face hub "
            f"could not provide it (unreachable, offline, or no such repo: {type(exc).__name__})"
        ) from exc


def _write_spec(directory: Path, spec: dict[str, Any]) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / SPEC_FILE).write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")


def _code_points(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
