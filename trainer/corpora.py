"""The corpora that need no network, and the error every data problem raises.

Kept free of torch and datasets, so help texts and settings can name them cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

DEFAULT_DATA_SPEC = "builtin:pydoc"
DEFAULT_TOKENIZER = "char"  # a vocabulary fitted to the corpus: the paper's character-level setting
DEFAULT_TEXT_COLUMN = "text"  # the column of a hub dataset that holds the text


class DataError(ValueError):
    """A corpus that cannot be loaded or is unusable; the message names the offending input."""


def corpus_changed(spec: str, since: str, found: str, recorded: str, advice: str = "") -> DataError:
    """The one wording of "this corpus is not the one it was": a study or a run recorded `recorded`."""
    return DataError(f"the corpus {spec} changed since {since} (content hash {found[:12]}, recorded "
                     f"{recorded[:12]}){'; ' + advice if advice else ''}")


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
