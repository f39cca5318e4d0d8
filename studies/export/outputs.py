"""What one export writes, checked together before any work and moved into place together.

An export writes up to four things: the config (`-o FILE`), the checkpoint folder beside it, a
Hugging Face folder (`--hf DIR`) and an ONNX file (`--onnx FILE`). `check_places` refuses, before a
model is built or a byte written: a name the file system cannot take, a symbolic link (a link may
lead anywhere; its target is named instead), a missing or read-only folder, two outputs at one place
however spelt (`o.yaml` and `./o.yaml`, a folder and a file inside it, two names of one file), and an
output over what the export reads (the study's storage, the run folder, the artifact store).

Each output is then made beside its target under a hidden name (`Staging.writing`, on the same file
system, so moving it is a rename), and `Staging.commit` moves them all in at once: the previous files
are moved aside first and put back if any move fails, so the user finds every new output or the old ones.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import ArgumentError, stops_held


@dataclass(frozen=True)
class Output:
    """One path an export writes, named by the API argument that gives it (path: -o, hf, onnx)."""

    argument: str
    path: Path
    folder: bool = False
    role: str = ""  # what it is when the argument names several ("the checkpoint folder beside it")

    @property
    def named(self) -> str:
        return f"{self.role} {self.path}" if self.role else str(self.path)


def check_places(outputs: Sequence[Output], inputs: Sequence[Path] = ()) -> None:
    """Refuse any output that cannot be written where it is asked for (see the module docstring)."""
    placed: list[tuple[Output, Path, tuple[int, int] | None]] = []
    for output in outputs:
        where, identity = _place(output)
        for other, other_where, other_identity in placed:
            if _overlap(where, output.folder, other_where, other.folder) or (identity and identity == other_identity):
                raise ArgumentError(output.argument, output.path, f"is where another output of this export goes "
                                    f"({other.named}); give each output a path of its own")
        placed.append((output, where, identity))
    for source in inputs:
        read, identity = _resolved(source), _identity(source)
        for output, where, output_identity in placed:
            if where == read or read in where.parents or (output.folder and where in read.parents) or (
                    identity and identity == output_identity):
                raise ArgumentError(output.argument, output.path, f"would overwrite {source}, which this export "
                                    "reads; give another path")


def _place(output: Output) -> tuple[Path, tuple[int, int] | None]:
    """Where `output` lands, every link in its folders resolved, and the file it names if it exists."""
    path = output.path
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        info = None
    except (OSError, ValueError) as exc:  # a name too long, a NUL byte
        raise ArgumentError(output.argument, path, f"cannot be a file name here ({_reason(exc)})") from None
    if info is not None and stat.S_ISLNK(info.st_mode):
        raise ArgumentError(output.argument, path, f"is a symbolic link (to {os.readlink(path)}); give the path "
                            "itself, or a new name")
    folder = path.parent
    if not folder.is_dir():
        raise ArgumentError(output.argument, path, f"the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ArgumentError(output.argument, path, f"the folder {folder} is read-only")
    return _resolved(path), (info.st_dev, info.st_ino) if info is not None else None


def _resolved(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        return None
    return info.st_dev, info.st_ino


def _overlap(one: Path, one_folder: bool, other: Path, other_folder: bool) -> bool:
    return one == other or (other_folder and other in one.parents) or (one_folder and one in other.parents)


def _reason(exc: BaseException) -> str:
    return (exc.strerror if isinstance(exc, OSError) else None) or str(exc)


class Staging:
    """Outputs made beside their targets, moved in together by `commit`; whatever is left uncommitted
    (a failed export) is removed when the `with` block ends."""

    def __init__(self) -> None:
        self._moves: list[tuple[Path | None, Path, str]] = []  # (staged or None to clear, target, argument)

    def __enter__(self) -> Staging:
        return self

    def __exit__(self, *_: object) -> None:
        for staged, _target, _argument in self._moves:
            if staged is not None:
                _remove(staged)

    @contextlib.contextmanager
    def writing(self, target: Path, argument: str) -> Iterator[Path]:
        """A hidden path in `target`'s folder for the body to write the new output to (commit moves it
        onto `target`); a write that fails there (a full disk) is one error naming the output."""
        staged = target.parent / f".partial-{secrets.token_hex(4)}-{target.name}"  # the suffix kept: it says the format
        self._moves.append((staged, target, argument))
        try:
            yield staged
        except OSError as exc:
            raise ArgumentError(argument, target, f"cannot write ({_reason(exc)}); nothing written") from None

    def clear(self, target: Path, argument: str) -> None:
        """Remove `target` at commit (a previous export's checkpoint, when this export has none)."""
        self._moves.append((None, target, argument))

    def commit(self) -> None:
        """Move every previous target aside, every staged output in, then drop what was aside; if a
        move fails, put everything back and raise. A stop (Ctrl-C) waits until it is done."""
        with stops_held():
            aside: list[tuple[Path, Path]] = []
            moved_in: list[tuple[Path, Path]] = []
            try:
                for _staged, target, argument in self._moves:
                    current = (argument, target)
                    if os.path.lexists(target):  # a link is moved itself, never followed
                        away = target.parent / f".old-{secrets.token_hex(4)}-{target.name}"
                        os.replace(target, away)
                        aside.append((away, target))
                for staged, target, argument in self._moves:
                    current = (argument, target)
                    if staged is not None:
                        os.replace(staged, target)
                        moved_in.append((staged, target))
            except OSError as exc:
                for staged, target in reversed(moved_in):
                    os.replace(target, staged)
                for away, target in reversed(aside):
                    os.replace(away, target)
                raise ArgumentError(*current, f"cannot write ({_reason(exc)}); every output is as it was") from None
            for away, _target in aside:
                _remove(away)
            self._moves = []


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink()

