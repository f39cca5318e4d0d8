"""A run folder holds everything to evaluate, sample from or resume it.

    model.safetensors   weights
    config.yaml         the architecture (search_space config, loadable on its own)
    tokenizer/          the tokenizer (a char vocabulary is data-specific)
    optimizer.pt        AdamW state, for --resume
    run.json            recipe, step, metrics, loss curve, data spec, content hash, architecture hash

Loading checks each file and names the one that is missing or damaged, so an edited or half-copied
folder is one clear error rather than a crash deep inside torch.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model

from search_space import Decoder, DecoderConfig, architecture_hash, build_decoder, load_config, save_config

from .data import DataError, first_line
from .loop import TrainingRecipe
from .tokenizers import Tokenizer, load_tokenizer

RUN_FILE = "run.json"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.yaml"
OPTIMIZER_FILE = "optimizer.pt"
ARCHITECTURE_KEY = "architecture_hash"  # in run.json: ties the weights to config.yaml
WEIGHTS_HASH_KEY = "weights_sha256"  # in run.json: model.safetensors as written, so an edited file is caught


@dataclass
class Checkpoint:
    model: Decoder
    tokenizer: Tokenizer
    recipe: TrainingRecipe
    record: dict[str, Any]  # run.json: step, metrics, loss_curve, data spec, content hash
    directory: Path

    @property
    def config(self) -> DecoderConfig:
        return self.model.config


def save_checkpoint(
    directory: str | Path,
    model: Decoder,
    tokenizer: Tokenizer,
    recipe: TrainingRecipe,
    record: dict[str, Any],
    optimizer: torch.optim.Optimizer | None = None,
) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_model(model, str(directory / WEIGHTS_FILE))
    save_config(model.config, directory / CONFIG_FILE)
    tokenizer.save(directory / "tokenizer")
    if optimizer is not None:
        torch.save(optimizer.state_dict(), directory / OPTIMIZER_FILE)
    run = {"recipe": recipe.to_dict(), ARCHITECTURE_KEY: architecture_hash(model.config), **record,
           WEIGHTS_HASH_KEY: file_sha256(directory / WEIGHTS_FILE)}
    (directory / RUN_FILE).write_text(json.dumps(run, indent=2))
    return directory


def load_checkpoint(directory: str | Path, device: torch.device | str = "cpu") -> Checkpoint:
    directory = Path(directory)
    recipe, record = read_run(directory)
    config = load_config(_required(directory, CONFIG_FILE))
    trained = record.pop(ARCHITECTURE_KEY, None)  # absent from folders written before it was recorded
    if trained is not None and trained != architecture_hash(config):
        raise DataError(f"{directory / RUN_FILE}: trained architecture {trained} is not the one in {CONFIG_FILE} "
                        f"({architecture_hash(config)}); the folder was edited or mixed with another run's")
    model = build_decoder(config)
    weights = _required(directory, WEIGHTS_FILE)
    try:
        load_model(model, str(weights), device=str(device))
    except (SafetensorError, RuntimeError, OSError) as exc:
        raise DataError(f"{weights}: damaged, or not the weights of {CONFIG_FILE} ({first_line(exc)})") from exc
    # A file that still loads may have been edited: caught by the hash run.json holds (if it does).
    written = record.pop(WEIGHTS_HASH_KEY, None)
    if written is not None and written != file_sha256(weights):
        raise DataError(f"{weights}: changed since it was written (its SHA-256 is not the one in {RUN_FILE}); "
                        "restore it or train again")
    return Checkpoint(model.to(device), load_tokenizer(directory / "tokenizer"), recipe, record, directory)


def read_run(directory: str | Path) -> tuple[TrainingRecipe, dict[str, Any]]:
    """The recipe and the rest of run.json, without loading any weights."""
    path = _required(Path(directory), RUN_FILE)
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable or not JSON ({first_line(exc)})") from exc
    if not isinstance(record, dict) or not isinstance(record.get("recipe"), dict):
        raise DataError(f"{path}: holds no training recipe; {path.parent} is not a decoder-nas checkpoint")
    try:
        recipe = TrainingRecipe(**record.pop("recipe"))
    except (TypeError, ValueError) as exc:  # an unknown key, or a value no run could use
        raise DataError(f"{path}: bad recipe: {first_line(exc)}") from exc
    return recipe, record


def load_optimizer_state(directory: str | Path, optimizer: torch.optim.Optimizer) -> bool:
    path = Path(directory) / OPTIMIZER_FILE
    if not path.is_file():
        return False
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a damaged pickle fails with whatever error the unpickler meets first
        raise DataError(f"{path}: damaged ({type(exc).__name__}: {first_line(exc)})") from exc
    try:
        optimizer.load_state_dict(state)
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: not the optimizer state of this model ({first_line(exc)})") from exc
    return True


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _required(directory: Path, name: str) -> Path:
    if not directory.is_dir():
        raise DataError(f"{directory}: no such checkpoint folder")
    path = directory / name
    if not path.is_file():
        raise DataError(f"{path} is missing: {directory} is not a complete decoder-nas checkpoint")
    return path
