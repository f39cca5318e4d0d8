"""The exceptions a user can cause; the CLI turns each into one line on stderr and exit code 2."""

from __future__ import annotations

from search_space import ConfigError
from trainer.data import DataError
from trainer.loop import RecipeError
from trainer.tokenizers import TokenizerError


class StudyError(ValueError):
    """A study that cannot be created, opened or continued as asked."""


USER_ERRORS: tuple[type[BaseException], ...] = (
    ConfigError, DataError, TokenizerError, RecipeError, StudyError, FileNotFoundError,
)
