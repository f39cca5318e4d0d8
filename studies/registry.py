"""Subcommands register themselves here; cli.py builds the parser from the registry."""

from __future__ import annotations

import argparse
from typing import Callable

AddArguments = Callable[[argparse.ArgumentParser], None]
COMMANDS: dict[str, tuple[str, AddArguments]] = {}


def command(name: str, help_text: str) -> Callable[[AddArguments], AddArguments]:
    """Register `add_arguments(parser)`, which also sets the parser's `run(args, console)` default."""

    def register(add_arguments: AddArguments) -> AddArguments:
        COMMANDS[name] = (help_text, add_arguments)
        return add_arguments

    return register
