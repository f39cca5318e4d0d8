"""Training: corpora, tokenizers and batches (data layer)."""

from .data import (
    BUILTIN_CORPORA,
    DEFAULT_DATA_SPEC,
    BuiltinCorpus,
    Corpus,
    DataError,
    TokenizedData,
    check_fits,
    default_cache_dir,
    load_corpus,
    prepare_data,
    sample_batch,
    validation_windows,
)
from .tokenizers import (
    ByteTokenizer,
    CharTokenizer,
    HuggingFaceTokenizer,
    Tokenizer,
    TokenizerError,
    load_tokenizer,
    make_tokenizer,
)

__all__ = [
    "BUILTIN_CORPORA",
    "BuiltinCorpus",
    "ByteTokenizer",
    "CharTokenizer",
    "Corpus",
    "DEFAULT_DATA_SPEC",
    "DataError",
    "HuggingFaceTokenizer",
    "TokenizedData",
    "Tokenizer",
    "TokenizerError",
    "check_fits",
    "default_cache_dir",
    "load_corpus",
    "load_tokenizer",
    "make_tokenizer",
    "prepare_data",
    "sample_batch",
    "validation_windows",
]
