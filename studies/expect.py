"""The Python API's arguments checked at the door: a wrong type or value is an ArgumentError naming the
argument, not a TypeError from deep inside Optuna, a count silently rounded up (trials=2.5 trained
3) or a name split into letters (objectives="val_loss")."""

from __future__ import annotations

from typing import Any, Collection

from .errors import ArgumentError


def expect(name: str, value: Any, kind: type | tuple[type, ...], *, optional: bool = False,
           minimum: int | None = None, choices: Collection[Any] | None = None) -> None:
    """`value` of argument `name` is a `kind` (None too if `optional`), at least `minimum`, one of `choices`."""
    if value is None and optional:
        return
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):  # True is an int
        wanted = " or ".join(k.__name__ for k in kinds) + (" or None" if optional else "")
        raise ArgumentError(name, value, f"expected {wanted}, not {type(value).__name__}")
    if minimum is not None and value < minimum:
        raise ArgumentError(name, value, f"must be at least {minimum}")
    if choices is not None and value not in choices:
        raise ArgumentError(name, value, f"is not one of {', '.join(map(str, choices))}")
