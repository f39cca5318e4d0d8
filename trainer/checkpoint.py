"""A run folder holds everything to evaluate, sample from or resume it.

    model.safetensors   weights
    config.yaml         the architecture (search_space config, loadable on its own)
    tokenizer/          the tokenizer (a char vocabulary is data-specific)
    optimizer.pt        AdamW state, for --resume
    run.json            recipe, step, metrics, loss curve, data spec and content hash
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model, save_model

from search_space import Decoder, DecoderConfig, build_decoder, load_config, save_config

from .data import DataError
from .loop import TrainingRecipe
from .tokenizers import Tokenizer, load_tokenizer

RUN_FILE = "run.json"


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
    save_model(model, str(directory / "model.safetensors"))
    save_config(model.config, directory / "config.yaml")
    tokenizer.save(directory / "tokenizer")
    if optimizer is not None:
        torch.save(optimizer.state_dict(), directory / "optimizer.pt")
    (directory / RUN_FILE).write_text(json.dumps({"recipe": recipe.to_dict(), **record}, indent=2))
    return directory


def load_checkpoint(directory: str | Path, device: torch.device | str = "cpu") -> Checkpoint:
    directory = Path(directory)
    if not (directory / RUN_FILE).is_file() or not (directory / "model.safetensors").is_file():
        raise DataError(f"{directory}: not a decoder-nas checkpoint (no {RUN_FILE} / model.safetensors)")
    record = json.loads((directory / RUN_FILE).read_text())
    recipe = TrainingRecipe(**record.pop("recipe"))
    model = build_decoder(load_config(directory / "config.yaml"))
    load_model(model, str(directory / "model.safetensors"), device=str(device))
    return Checkpoint(model.to(device), load_tokenizer(directory / "tokenizer"), recipe, record, directory)


def load_optimizer_state(directory: str | Path, optimizer: torch.optim.Optimizer) -> bool:
    path = Path(directory) / "optimizer.pt"
    if not path.is_file():
        return False
    optimizer.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return True
