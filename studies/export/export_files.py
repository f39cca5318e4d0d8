"""`export -o FILE`: the config and the trial's checkpoint beside it (`<stem>-checkpoint/`), both or neither.

Both are staged next to FILE (the weights downloaded and checked there) and moved into place with the
export's other outputs (outputs.py); a previous export's pair is replaced whole. A config of one
trial beside the weights of another would be loaded by `train`/`generate` without a word.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from optuna.trial import FrozenTrial

from search_space import DecoderConfig, save_config

from ..errors import ArgumentError
from ..storage.artifacts import CONFIG_FILE, download_weights
from .outputs import Output, Staging


def checkpoint_beside(path: Path) -> Path:
    return path.with_name(path.stem + "-checkpoint")


def config_outputs(path: Path) -> list[Output]:
    """The config file and the checkpoint folder beside it, as check_places checks them."""
    return [Output("path", path), Output("path", checkpoint_beside(path), folder=True, role="the checkpoint folder")]


def check_config_target(path: Path) -> None:
    """Refuse, before any work, a config path whose pair cannot be replaced as a whole (check_places has
    checked the names)."""
    folder = checkpoint_beside(path)
    if path.is_dir():
        raise ArgumentError("path", path, "is a folder; give a .yaml or .json file name")
    if path.exists() and not path.is_file():  # /dev/full
        raise ArgumentError("path", path, "is not a regular file; give a .yaml or .json file name")
    if folder.exists() and not (folder / CONFIG_FILE).is_file():
        raise ArgumentError("path", path, f"{folder} exists and is not a checkpoint an export wrote; move it away first")


def stage_export(path: Path, config: DecoderConfig, trial: FrozenTrial, store: Any, staging: Staging) -> Path | None:
    """Stage `config` for `path` and, with a store, the trial's weights for `checkpoint_beside(path)`;
    returns the staged checkpoint (None without a store: an earlier export's checkpoint goes with its config)."""
    with staging.writing(path, "path") as staged:
        save_config(config, staged)
    folder = checkpoint_beside(path)
    if store is None:
        staging.clear(folder, "path")
        return None
    with staging.writing(folder, "path") as staged:
        return download_weights(trial, store, staged)
