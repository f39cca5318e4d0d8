"""The exceptions a user can cause; the CLI turns each into one line on stderr and exit code 2.
Also how a stop (Ctrl-C, SIGTERM) is raised, and held back where raising it would do harm."""

from __future__ import annotations

import signal
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from search_space import ConfigError
from trainer.corpora import DataError
from trainer.recipe import RecipeError, RefusedValue
from trainer.tokenizers import TokenizerError


class StudyError(ValueError):
    """A study that cannot be created, opened or continued as asked."""


class ArgumentError(StudyError, RefusedValue):
    """One argument's value refused, named as the API calls it (`trials=-1: must not be negative`)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (kill, systemd, Kubernetes, SLURM), raised in the main thread: a trial stops as on Ctrl-C."""


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


_terminated = threading.Event()  # a SIGTERM arrived under sigterm_raises


def _terminate(signum: int, frame: object) -> None:
    _terminated.set()
    raise Terminated()


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """SIGTERM raises Terminated in the main thread while the body runs (a process that trains: the
    command line and a `search --jobs` job), so the running trial is recorded as on Ctrl-C."""
    _terminated.clear()
    previous, previous_hook = signal.signal(signal.SIGTERM, _terminate), sys.unraisablehook

    def unraisable(report: Any) -> None:  # a Terminated Python cannot raise is raised later, not printed
        if not isinstance(report.exc_value, Terminated):
            previous_hook(report)

    sys.unraisablehook = unraisable
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        sys.unraisablehook = previous_hook
        _terminated.clear()


def raise_if_terminated() -> None:
    """Called at safe points of a run (each progress report, each trial): raises Terminated again
    after a SIGTERM whose Terminated Python could only print ("Exception ignored in ...": the handler
    ran inside a garbage-collector callback), so a stop is never lost."""
    if _terminated.is_set():
        raise Terminated()


@contextmanager
def stops_held() -> Iterator[None]:
    """Ctrl-C and SIGTERM wait until the body has run, then act as they would have: around every
    storage call (studies/storage/backends.py says what a stop raised inside one did)."""
    handlers = [signal.getsignal(signum) for signum in STOP_SIGNALS]
    if threading.current_thread() is not threading.main_thread() or None in handlers:
        yield  # handlers can only be swapped from the main thread, and only back to Python-set ones
        return
    caught: list[int] = []
    for signum in STOP_SIGNALS:
        signal.signal(signum, lambda received, _frame: caught.append(received))
    try:
        yield
    finally:
        for signum, handler in zip(STOP_SIGNALS, handlers, strict=True):
            signal.signal(signum, handler)
        for signum in caught:
            signal.raise_signal(signum)  # now through the handler that was set before


def user_errors() -> tuple[type[BaseException], ...]:
    """Evaluated when an error reaches the command line. OnnxUnavailable can only come from the ONNX
    module, which loads torch: it is looked up only if that module was loaded."""
    onnx = sys.modules.get("objectives.onnx")
    extra = (onnx.OnnxUnavailable,) if onnx is not None else ()
    return ConfigError, DataError, TokenizerError, RecipeError, StudyError, FileNotFoundError, *extra


def one_line_warning(message: Warning | str, category: type[Warning], *_: object, **__: object) -> None:
    """warnings.showwarning for a process a person watches: a warning meant for the user (a repaired
    journal, a lost lease) reads as one line, not file:line and source."""
    print(f"decoder-nas: warning: {message}", file=sys.stderr)


def signal_exit_code(signum: int) -> int:
    """The shell's exit code for a process a signal stopped: 128 + its number (130 Ctrl-C, 143 SIGTERM)."""
    return 128 + signum


def exit_code_of(body: Callable[[], None], prefix: str, describe: Callable[[BaseException], str] = str,
                 debug: bool = False, hint: str = "") -> int:
    """Run a process's work (the command line's, a `--jobs` job's) and return its exit code: every
    error one line on stderr after `prefix` (`describe` words a user error), 2 for a user's mistake,
    130/143 after Ctrl-C/SIGTERM (the running trial recorded), 1 for a bug. `debug` re-raises
    instead; `hint` follows an internal error's line."""
    try:
        with sigterm_raises(), warnings.catch_warnings():  # restores warnings.showwarning afterwards
            warnings.showwarning = one_line_warning
            body()
    except user_errors() as exc:
        if debug:
            raise
        print(f"{prefix}: error: {describe(exc)}", file=sys.stderr)
        return 2
    except Terminated:
        print(f"{prefix}: terminated (the running trial is recorded FAIL and re-queued)", file=sys.stderr)
        return signal_exit_code(signal.SIGTERM)
    except KeyboardInterrupt:
        print(f"{prefix}: interrupted", file=sys.stderr)
        return signal_exit_code(signal.SIGINT)
    except Exception as exc:  # a bug: still one line
        if debug:
            raise
        print(f"{prefix}: internal error: {type(exc).__name__}: {exc}{hint}", file=sys.stderr)
        return 1
    return 0
