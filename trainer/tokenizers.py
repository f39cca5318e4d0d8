"""Tokenizers: characters, UTF-8 bytes, a byte-level BPE trained here, or any Hugging Face
`tokenizers` model, behind one interface.

`make_tokenizer(spec, corpus_text)` builds one from a spec string; `tokenizer.save(run_dir)` and
`load_tokenizer(run_dir)` keep it with a run, so sampling later decodes with the same vocabulary.
`identity` names the exact vocabulary and is what token stores are keyed on.

Saved form (one folder): `tokenizer_spec.json` ({"kind": "char", "chars": ...}, {"kind": "byte"} or
{"kind": "huggingface", "name": SPEC}) and, for the huggingface kind (hub, tokenizer.json, bpe:N),
the standard `tokenizer.json` that `tokenizers.Tokenizer.from_file` reads.
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import tokenizers

from .bpe import BpeTrainingError, learn_bpe
from .hub import require_hub

BPE_SPEC = re.compile(r"bpe:(?P<size>\d+)(?::(?P<sample_mb>\d+))?")
BPE_SAMPLE_MB = 256  # bpe:N learns its merges from the first 256 MB of the training split unless told
BPE_MAX_VOCAB = 2**20  # far beyond a useful vocabulary; the native trainer aborts the process at 2**31
_BPE_NEAR_MISS = re.compile(r"bpe[\s_=:-]*(?P<size>\d+)(?:[\s_=:-]+(?P<sample_mb>\d+))?", re.IGNORECASE)
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

    def encode_many(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Each text's ids as an array; kinds with a parallel encoder override this."""
        return [np.asarray(self.encode(text), dtype=np.int64) for text in texts]

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
        # A table from code point to id (-1: not in the vocabulary) maps a whole text in one gather.
        code_points = _code_points(self.chars)
        self._ids = np.full(int(code_points.max()) + 2, -1, dtype=np.int32)  # the last slot: any larger code point
        self._ids[code_points] = np.arange(len(code_points), dtype=np.int32)

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    @property
    def identity(self) -> str:
        return f"char:{_short_hash(self.chars)}"

    def encode(self, text: str) -> list[int]:
        return self._encode(text).tolist()

    def encode_many(self, texts: Sequence[str]) -> list[np.ndarray]:
        return [self._encode(text) for text in texts]

    def _encode(self, text: str) -> np.ndarray:
        code_points = _code_points(text)
        ids = self._ids[np.minimum(code_points, len(self._ids) - 1)]
        if (ids < 0).any():
            unknown = sorted(set(chr(c) for c in code_points[ids < 0]))
            raise TokenizerError(f"char tokenizer has no id for characters {''.join(unknown)[:20]!r}")
        return ids

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

    def encode_many(self, texts: Sequence[str]) -> list[np.ndarray]:
        return [np.frombuffer(text.encode("utf-8"), dtype=np.uint8) for text in texts]

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

    def encode_many(self, texts: Sequence[str]) -> list[np.ndarray]:
        # encode_batch spreads the texts over all cores (the Rust side releases the GIL).
        encodings = self._tokenizer.encode_batch_fast(list(texts), add_special_tokens=False)
        return [np.asarray(encoding.ids, dtype=np.int64) for encoding in encodings]

    def decode(self, ids: Sequence[int]) -> str:
        return self._tokenizer.decode(list(ids), skip_special_tokens=False)

    def save(self, directory: Path) -> None:
        _write_spec(directory, {"kind": "huggingface", "name": self.name})
        self._tokenizer.save(str(Path(directory) / HF_TOKENIZER_FILE))


def make_tokenizer(spec: str, corpus_text: str | Iterable[str]) -> Tokenizer:
    """Build the tokenizer `spec` names: "char" (fitted to `corpus_text`), "byte", "bpe:N[:SAMPLE_MB]"
    (a byte-level BPE of N tokens learnt from the first SAMPLE_MB of `corpus_text`, which may be
    an iterable of pieces), a path to a tokenizer.json (or a folder holding one), or a hub name."""
    check_tokenizer_spec(spec)
    if spec == "char":
        return CharTokenizer(corpus_text if isinstance(corpus_text, str) else "".join(corpus_text))
    if spec == "byte":
        return ByteTokenizer()
    if spec.startswith("bpe:"):
        return train_bpe(spec, [corpus_text] if isinstance(corpus_text, str) else corpus_text)
    path = Path(spec)
    if path.exists() or spec.endswith(".json"):
        return _load_tokenizer_file(path / HF_TOKENIZER_FILE if path.is_dir() else path, name=spec)
    return _load_hub_tokenizer(spec)


def check_tokenizer_spec(spec: str) -> None:
    """Raise TokenizerError for a spec that can be refused without any data: a malformed or
    out-of-range bpe:N[:SAMPLE_MB], or a near miss of one (`bpe512`), which is no hub name."""
    if spec.startswith("bpe:"):
        _bpe_settings(spec)
        return
    near = _BPE_NEAR_MISS.fullmatch(spec)
    if near is not None:
        sample = f":{near['sample_mb']}" if near["sample_mb"] else ""
        raise TokenizerError(f"unknown tokenizer {spec!r}; did you mean bpe:{near['size']}{sample}?")


def train_bpe(spec: str, pieces: Iterable[str]) -> HuggingFaceTokenizer:
    """A byte-level BPE (GPT-2's pre-tokenizer and byte alphabet, no special tokens) trained on `pieces`
    in a child process (trainer.bpe: long runs bounded, stops felt at once). The same pieces and
    spec give the same tokenizer.json, so a run re-made from its spec decodes alike."""
    vocab_size, sample_mb = _bpe_settings(spec)
    budget = sample_mb * 2**20

    def sample() -> Iterable[str]:
        nonlocal budget
        for piece in pieces:
            if budget <= 0:
                return
            budget -= len(piece)
            yield piece

    try:
        learnt = learn_bpe(vocab_size, sample())
    except BpeTrainingError as exc:
        raise TokenizerError(f"tokenizer {spec!r}: {exc}") from exc
    tokenizer = HuggingFaceTokenizer(tokenizers.Tokenizer.from_str(learnt), name=spec)
    if tokenizer.vocab_size < vocab_size:
        warnings.warn(f"tokenizer {spec!r} learnt only {tokenizer.vocab_size} tokens: the training text holds no "
                      "more pairs to merge", stacklevel=2)
    return tokenizer


def _bpe_settings(spec: str) -> tuple[int, int]:
    """(N, SAMPLE_MB) of a bpe:N[:SAMPLE_MB] spec, or TokenizerError saying what is accepted."""
    match = BPE_SPEC.fullmatch(spec)
    bytes_alphabet = 256
    if match is None or not bytes_alphabet < int(match["size"]) <= BPE_MAX_VOCAB:
        raise TokenizerError(f"tokenizer {spec!r}: expected bpe:N[:SAMPLE_MB] with {bytes_alphabet} < N <= "
                             f"{BPE_MAX_VOCAB}, e.g. bpe:8192")
    sample_mb = int(match["sample_mb"] or BPE_SAMPLE_MB)
    if sample_mb < 1:
        raise TokenizerError(f"tokenizer {spec!r}: SAMPLE_MB {match['sample_mb']} learns nothing; give at least 1 "
                             f"(MB of training text), or leave it out for {BPE_SAMPLE_MB}")
    return int(match["size"]), sample_mb


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
