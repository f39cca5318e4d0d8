"""The exceptions a user can cause; the CLI turns each into one line on stderr and exit code 2."""

from __future__ import annotations

import sys

from search_space import ConfigError
from trainer.corpora import DataError
from trainer.recipe import RecipeError
from trainer.tokenizers import TokenizerError


class StudyError(ValueError):
    """A study that cannot be created, opened or continued as asked."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (kill, systemd, Kubernetes, SLURM), raised in the main thread: a trial stops as on Ctrl-C."""


def user_errors() -> tuple[type[BaseException], ...]:
    """Evaluated when an error reaches the command line. OnnxUnavailable can only come from the ONNX
    module, which loads torch: it is looked up only if that module was loaded."""
    onnx = sys.modules.get("objectives.onnx")
    extra = (onnx.OnnxUnavailable,) if onnx is not None else ()
    return ConfigError, DataError, TokenizerError, RecipeError, StudyError, FileNotFoundError, *extra
