"""`export -o FILE`: the config and the trial's checkpoint beside it (`<stem>-checkpoint/`), both or neither.

Both are made in a private folder next to FILE first (the weights downloaded and checked there), then
moved into place; a previous export's pair is moved aside and put back if that fails. A config of
one trial beside the weights of another would be loaded by `train`/`generate` without a word.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from optuna.trial import FrozenTrial

from search_space import DecoderConfig, save_config

from ..errors import StudyError, stops_held
from ..storage.artifacts import CONFIG_FILE, download_weights


def checkpoint_beside(path: Path) -> Path:
    return path.with_name(path.stem + "-checkpoint")


def write_export(path: Path, config: DecoderConfig, trial: FrozenTrial, store: Any) -> Path | None:
    """Write `config` to `path` and, with a store, the trial's weights to `checkpoint_beside(path)`;
    returns that folder (None without a store). An earlier export's checkpoint there goes with its config."""
    folder = checkpoint_beside(path)
    if path.is_symlink() or (path.exists() and not path.is_file()):  # /dev/full, a folder, a link elsewhere
        raise StudyError(f"-o {path}: is not a regular file; give a .yaml or .json file name")
    if (folder.exists() or folder.is_symlink()) and (folder.is_symlink() or not (folder / CONFIG_FILE).is_file()):
        raise StudyError(f"-o {path}: {folder} exists and is not a checkpoint an export wrote; move it away first")
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    except OSError as exc:  # a missing or read-only folder
        raise StudyError(f"-o {path}: cannot write ({exc.strerror or exc})") from None
    try:
        staged = staging / "new"
        staged.mkdir()
        try:
            save_config(config, staged / path.name)
        except OSError as exc:  # a full disk, a quota
            raise StudyError(f"-o {path}: cannot write ({exc.strerror or exc})") from None
        if store is not None:
            download_weights(trial, store, staged / folder.name)
        with stops_held():  # a Ctrl-C here would leave half of each pair
            _swap_in(path, staged, staging / "old")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder if store is not None else None


def _swap_in(path: Path, staged: Path, aside: Path) -> None:
    """Move the config at `path` and the checkpoint beside it aside, then the staged ones in; on
    failure put everything back."""
    targets = [path, checkpoint_beside(path)]
    aside.mkdir()
    moved_aside: list[Path] = []
    moved_in: list[Path] = []
    try:
        for target in targets:
            if target.exists() or target.is_symlink():  # a link is moved itself, never followed
                os.replace(target, aside / target.name)
                moved_aside.append(target)
        for target in targets:
            if (staged / target.name).exists():
                os.replace(staged / target.name, target)
                moved_in.append(target)
    except OSError as exc:
        for target in moved_in:
            os.replace(target, staged / target.name)
        for target in moved_aside:
            os.replace(aside / target.name, target)
        raise StudyError(f"-o {path}: cannot write ({exc.strerror or exc}); the previous export is as it was") from None
