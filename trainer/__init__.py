"""Training: corpora, tokenizers, the proxy-training loop, checkpoints, generation, zero-shot scoring.

Names load on first use (PEP 562): a command that only reads settings or prints help does not
pay for torch and datasets.
"""

from __future__ import annotations

import importlib
from typing import Any

_MODULE_OF = {
    "Checkpoint": "checkpoint",
    "load_checkpoint": "checkpoint",
    "save_checkpoint": "checkpoint",
    "BUILTIN_CORPORA": "corpora",
    "BuiltinCorpus": "corpora",
    "DEFAULT_DATA_SPEC": "corpora",
    "DEFAULT_TEXT_COLUMN": "corpora",
    "DEFAULT_TOKENIZER": "corpora",
    "DataError": "corpora",
    "corpus_changed": "corpora",
    "Corpus": "data",
    "TokenizedData": "data",
    "check_fits": "data",
    "data_info": "data",
    "default_cache_dir": "data",
    "load_corpus": "data",
    "open_store": "data",
    "prepare_data": "data",
    "sample_batch": "batches",
    "validation_windows": "batches",
    "Evaluation": "loop",
    "NonFiniteLossError": "loop",
    "Progress": "loop",
    "TrainingError": "loop",
    "TrainingResult": "loop",
    "evaluate": "loop",
    "resolve_device": "loop",
    "train": "loop",
    "RecipeError": "recipe",
    "TrainingRecipe": "recipe",
    "TokenStore": "store",
    "RunReport": "run",
    "fit_vocabulary": "run",
    "initialised_model": "run",
    "resume_training": "run",
    "run_training": "run",
    "ByteTokenizer": "tokenizers",
    "CharTokenizer": "tokenizers",
    "HuggingFaceTokenizer": "tokenizers",
    "Tokenizer": "tokenizers",
    "TokenizerError": "tokenizers",
    "load_tokenizer": "tokenizers",
    "make_tokenizer": "tokenizers",
    "train_bpe": "tokenizers",
}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_MODULE_OF[name]}", __name__), name)
