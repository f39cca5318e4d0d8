"""The `decoder-nas` command line: a thin layer over the Python API of the four packages.

Every error a user can cause is one line on stderr and exit code 2; `--debug` shows the traceback.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import os
import re
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Sequence

import optuna
from rich.console import Console

from trainer.recipe import RefusedValue
from trainer.threads import configure_process

from ..errors import exit_code_of, out_of_memory
from .registry import ARGUMENTS, COMMANDS, TRAINING_COMMANDS


class OneLineErrors(argparse.ArgumentParser):
    """Usage mistakes are one line too (argparse prints the whole usage block before them), with the
    nearest flag for a typo. Abbreviations are refused: `--htm` is a typo, not `--html`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)  # subparsers are made with the same class, and so refuse them too
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        unknown = message.partition("unrecognized arguments: ")[2].split()
        flags = [arg.partition("=")[0] for arg in unknown if arg.startswith("--")]
        choice = re.search(r"invalid choice: '([^']*)'", message)  # a command or a flag's value
        if flags:
            nearest = difflib.get_close_matches(flags[0], self._known_flags(), n=1, cutoff=0.6)
        else:
            nearest = difflib.get_close_matches(choice[1], self._choices(), n=1, cutoff=0.6) if choice else []
        hint = f"; did you mean {nearest[0]}?" if nearest else ""
        self.exit(2, f"{self.prog}: error: {message}{hint} (see {self.prog} --help)\n")

    def _choices(self) -> list[str]:
        """Every value this parser's arguments offer: its commands, and each flag's choices."""
        return [str(value) for action in self._actions for value in action.choices or ()]

    def _known_flags(self) -> list[str]:
        """Every long option of this parser and of the commands under it (the one given is among them)."""
        flags = []
        for action in self._actions:
            flags += [flag for flag in action.option_strings if flag.startswith("--")]
            for sub in (action.choices or {}).values() if isinstance(action, argparse._SubParsersAction) else ():
                flags += sub._known_flags()
        return flags


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser with every command listed; `command`, if given, gets its full arguments (which
    imports its module). Without it, `--help` answers from the static table alone."""
    parser = OneLineErrors(
        prog="decoder-nas",
        description="Neural architecture search over small, fast decoder-only transformers.",
        epilog="Start with `decoder-nas search` (a small study on the built-in corpus, a few minutes on "
        "a laptop CPU) or `decoder-nas describe --preset lgpt`. Every command has --help.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    parser.add_argument("--version", action="version", version=f"decoder-nas {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                       parser_class=OneLineErrors)
    for name, (module, help_text) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".")
        if name == command:
            importlib.import_module(f"studies.cli.commands.{module}")
            sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help="show tracebacks instead of one-line errors")
            ARGUMENTS[name](sub)
    return parser


def _command_in(argv: Sequence[str]) -> str | None:
    """The subcommand named in argv (the first argument that is not an option), if it is one."""
    first = next((arg for arg in argv if not arg.startswith("-")), None)
    return first if first in COMMANDS else None


def _version() -> str:
    try:
        return version("decoder-nas")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


# API argument -> the flag that sets it, where the two names differ (else --name-with-dashes).
_FLAG_OF = {"name": "--study", "path": "-o", "margin": "--prune-margin", "latency": "--latency-backend/--latency-mode"}


def flag_error(exc: BaseException) -> str:
    """An error in the command line's terms: a refused value names the flag, not the API argument."""
    if not isinstance(exc, RefusedValue):
        return str(exc)
    flag = _FLAG_OF.get(exc.argument, "--" + exc.argument.replace("_", "-"))
    return f"{flag} {exc.value}: {exc.problem}"


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if _command_in(argv) in TRAINING_COMMANDS and not {"-h", "--help"} & set(argv):  # before torch loads
        configure_process()
    try:
        args = build_parser(_command_in(argv)).parse_args(argv)
    except SystemExit as done:  # --help, or a usage error already printed on one line
        return int(done.code or 0)
    except Exception as exc:  # the command's module did not load: under `ulimit -v`, torch needs more
        memory = out_of_memory(exc)
        if memory is None:
            raise
        print(f"decoder-nas: error: {memory}", file=sys.stderr)
        return 1
    # Optuna logs each trial (and a failed trial's traceback), datasets a bar per corpus read:
    # the live view and the progress bars say what matters.
    optuna.logging.set_verbosity(optuna.logging.DEBUG if args.debug else optuna.logging.ERROR)
    if not args.debug:  # datasets loads only for commands that read a corpus: the views never pay for it
        if "datasets" in sys.modules:
            sys.modules["datasets"].disable_progress_bars()
        else:
            os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    # Off a terminal (a log, a pipe) tables get room instead of rich's 80-column default, unless
    # COLUMNS says how wide (rich reads it).
    console = Console(width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else 160)
    storage = getattr(args, "storage", None)
    return exit_code_of(lambda: args.run(args, console), f"decoder-nas {args.command}", flag_error, args.debug,
                        hint=" (run again with --debug for the traceback)",
                        mask=_masking(storage) if storage else str)


def _masking(storage: str) -> Any:
    """Every line the command prints about an error, with the storage's passwords shown as ***."""
    def mask(line: str) -> str:
        from ..storage.backends import display_storage  # sqlalchemy: only when there is a line to print

        return display_storage(storage, line)
    return mask

