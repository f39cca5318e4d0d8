"""The exceptions a user can cause; the CLI turns each into one line on stderr and exit code 2.
Also how a stop (Ctrl-C, SIGTERM) is raised, and held back where raising it would do harm."""

from __future__ import annotations

import errno
import functools
import re
import resource
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


def one_line_warning(message: Warning | str, category: type[Warning], *_: object, mask: Callable[[str], str] = str,
                     **__: object) -> None:
    """warnings.showwarning for a process a person watches: a warning meant for the user (a repaired
    journal, a lost lease) reads as one line, not file:line and source."""
    print(mask(f"decoder-nas: warning: {message}"), file=sys.stderr)


def out_of_memory(exc: BaseException) -> str | None:
    """An error that says memory ran out (Python's MemoryError, torch's allocator, a thread's stack that
    did not fit, ENOMEM) as one line with how much was asked for and what held it; None for others."""
    text = str(exc)
    asked = re.search(r"tried to allocate (\d+(?:\.\d+)?) ?([KMGT]i?B|bytes)", text, re.IGNORECASE)
    thread = "can't start new thread" in text
    held, limit = _status_kb("VmSize"), resource.getrlimit(resource.RLIMIT_AS)[0]
    # At its address-space limit a process fails in every way: CPython's own C code then raises
    # SystemError, a library an ImportError. What failed is memory, whatever the exception says.
    at_limit = held is not None and limit != resource.RLIM_INFINITY and held * 1024 > limit - (64 << 20)
    if not (isinstance(exc, MemoryError) or asked or thread or at_limit or any(sign in text for sign in _SIGNS)
            or (isinstance(exc, OSError) and exc.errno == errno.ENOMEM)
            or type(exc).__name__ == "OutOfMemoryError"):  # torch.cuda's, without importing torch here
        return None
    if asked:
        need = f"{_mib(float(asked[1]) * _BYTES_IN[asked[2].lower()])} more were asked for"
    elif thread:
        stack = threading.stack_size() or resource.getrlimit(resource.RLIMIT_STACK)[0]
        need = f"a new thread's stack ({_mib(stack)}) did not fit"
    elif "failed to map segment" in text:
        need = f"loading a library did not fit ({text.partition(':')[0]})"
    else:
        need = "an allocation did not fit"
    if type(exc).__name__ == "OutOfMemoryError":
        return f"out of memory on the GPU: {need}. Free GPU memory or run fewer --jobs on it"
    where = (f"; this process held {_mib(held * 1024)} of address space" if held else "") + (
        f" under its limit of {_mib(limit)} (ulimit -v)" if limit != resource.RLIM_INFINITY else "")
    return f"out of memory: {need}{where}. Free memory, raise the limit or run fewer --jobs"


# What memory running out says where it has no exception of its own: torch's allocator, the loader
# mapping a shared library (an ImportError), the C library.
_SIGNS = ("can't allocate memory", "failed to map segment", "Cannot allocate memory")
_BYTES_IN = {"bytes": 1, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40, "kb": 1 << 10, "mb": 1 << 20,
             "gb": 1 << 30, "tb": 1 << 40}


def _mib(size: float) -> str:
    return f"{size / (1 << 20):,.0f} MiB" if size >= 1 << 20 else f"{size:,.0f} bytes"


def _status_kb(field: str) -> int | None:
    """A /proc/self/status figure in kB (Linux); None elsewhere."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            return next((int(line.split()[1]) for line in status if line.startswith(field + ":")), None)
    except OSError:
        return None


def signal_exit_code(signum: int) -> int:
    """The shell's exit code for a process a signal stopped: 128 + its number (130 Ctrl-C, 143 SIGTERM)."""
    return 128 + signum


def exit_code_of(body: Callable[[], None], prefix: str, describe: Callable[[BaseException], str] = str,
                 debug: bool = False, hint: str = "", mask: Callable[[str], str] = str) -> int:
    """Run a process's work (the command line's, a `--jobs` job's) and return its exit code: every
    error one line on stderr after `prefix` (`describe` words a user error), 2 for a user's mistake,
    130/143 after Ctrl-C/SIGTERM (the running trial recorded; a stop raised through other work, such
    as preparing a token store, carries `doing`, which is said instead), 1 for a bug. `debug`
    re-raises instead; `hint` follows an internal error's line. `mask` hides secrets in every line
    printed (a database driver's error may quote the storage URL)."""
    def say(line: str, bare: str) -> None:
        try:
            text = mask(f"{prefix}: {line}")
        except Exception:  # no memory left even to mask it: words that hold nothing of the storage's
            text = f"{prefix}: {bare}"
        print(text, file=sys.stderr)

    try:
        with sigterm_raises(), warnings.catch_warnings():  # restores warnings.showwarning afterwards
            warnings.showwarning = functools.partial(one_line_warning, mask=mask)
            body()
    except user_errors() as exc:
        if debug:
            raise
        say(f"error: {describe(exc)}", f"error: {type(exc).__name__}")
        return 2
    except KeyboardInterrupt as stop:  # Terminated too. Work that is not a trial says what it was (`doing`)
        doing = getattr(stop, "doing", None)
        word = "terminated" if isinstance(stop, Terminated) else "interrupted"
        if doing is not None:
            note = f" while {doing}"
        else:
            note = " (the running trial is recorded FAIL and re-queued)" if isinstance(stop, Terminated) else ""
        say(f"{word}{note}", word)
        return signal_exit_code(signal.SIGTERM if isinstance(stop, Terminated) else signal.SIGINT)
    except Exception as exc:
        if debug:
            raise
        memory = out_of_memory(exc)
        if memory is not None:  # not a bug, and no traceback can say more
            print(f"{prefix}: error: {memory}", file=sys.stderr)
            return 1
        first = str(exc).strip().splitlines()[:1]  # a bug: still one line (a library's message may run over many)
        say(f"internal error: {type(exc).__name__}: {first[0] if first else ''}{hint}",
            f"internal error: {type(exc).__name__}{hint}")
        return 1
    return 0
