"""The `decoder-nas` command line: a thin layer over the Python API of the four packages.

Every error a user can cause is one line on stderr and exit code 2; `--debug` shows the traceback.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

import datasets
import optuna
from rich.console import Console

from .commands import evidence, front, model, study  # noqa: F401  (importing a module registers its commands)
from .errors import USER_ERRORS
from .registry import COMMANDS


class OneLineErrors(argparse.ArgumentParser):
    """Usage mistakes are one line too (argparse prints the whole usage block before them)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrors(
        prog="decoder-nas",
        description="Neural architecture search over small, fast decoder-only transformers.",
        epilog="Start with `decoder-nas search` (a small study on the built-in corpus, a few minutes on "
        "a laptop CPU) or `decoder-nas describe --preset lgpt`. Every command has --help.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                       parser_class=OneLineErrors)
    for name, (help_text, add_arguments) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".")
        sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                         help="show tracebacks instead of one-line errors")
        add_arguments(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as done:  # --help, or a usage error already printed on one line
        return int(done.code or 0)
    # Optuna logs each trial (and a failed trial's traceback), datasets a bar per corpus read:
    # the live view and the progress bars say what matters.
    optuna.logging.set_verbosity(optuna.logging.INFO if args.debug else optuna.logging.ERROR)
    if not args.debug:
        datasets.disable_progress_bars()
    try:
        # Off a terminal (a log, a pipe) tables get room instead of rich's 80-column default.
        args.run(args, Console(width=None if sys.stdout.isatty() else 160))
    except USER_ERRORS as exc:
        if args.debug:
            raise
        print(f"decoder-nas {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"decoder-nas {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: still one line; the traceback is one flag away
        if args.debug:
            raise
        print(f"decoder-nas {args.command}: internal error: {type(exc).__name__}: {exc} "
              "(run again with --debug for the traceback)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
