"""The corpora that need no network, and the error every data problem raises.

Kept free of torch and datasets, so help texts and settings can name them cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

DEFAULT_DATA_SPEC = "builtin:pydoc"


class DataError(ValueError):
    """A corpus that cannot be loaded or is unusable; the message names the offending input."""


@dataclass(frozen=True)
class BuiltinCorpus:
    """A corpus that needs no network: a one-line description and a function returning its documents."""

    description: str
    documents: Callable[[], list[str]]


def _pydoc_topics() -> list[str]:
    try:
        from pydoc_data.topics import topics
    except ImportError as exc:
        raise DataError("builtin:pydoc needs the standard library's pydoc_data module, missing here") from exc
    return [topics[key] for key in sorted(topics)]  # sorted keys: the same text on every run


BUILTIN_CORPORA: dict[str, BuiltinCorpus] = {
    "pydoc": BuiltinCorpus(
        "Python standard library documentation topics (pydoc_data): ~80 topics, ~465 kB of English prose",
        _pydoc_topics,
    ),
}
