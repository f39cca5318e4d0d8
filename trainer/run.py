"""One training run end to end: fit the config to the data, train, evaluate, optionally checkpoint."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from search_space import Decoder, DecoderConfig, build_decoder

from .checkpoint import RUN_FILE, load_checkpoint, load_optimizer_state, save_checkpoint
from .corpora import corpus_changed
from .data import DataError, TokenizedData, check_fits, prepare_data
from .loop import Progress, TrainingRecipe, TrainingResult, make_optimizer, resolve_device, train

RESUME_KEYS = ("step", "loss_curve", "data_spec", "tokenizer", "content_hash")  # what run.json must hold


@dataclass
class RunReport:
    config: DecoderConfig  # as trained: the vocabulary is the tokenizer's
    result: TrainingResult
    params: int
    device: str
    data_spec: str
    content_hash: str
    tokenizer: str
    vocab_note: str | None = None  # set when the config's vocabulary was replaced by the data's
    checkpoint: Path | None = None

    def metrics(self) -> dict[str, Any]:
        evaluation = self.result.evaluation
        return {
            "val_loss": evaluation.loss,
            "val_perplexity": evaluation.perplexity,
            "val_accuracy": evaluation.accuracy,
            "tokens_per_second": self.result.tokens_per_second,
            "train_seconds": self.result.train_seconds,
            "wall_seconds": self.result.wall_seconds,
            "steps": self.result.steps,
            "tokens": self.result.tokens,
            "params": self.params,
        }

    def record(self) -> dict[str, Any]:
        """What run.json and a study's trial keep besides the weights."""
        return {
            "metrics": self.metrics(),
            "step": self.result.steps,
            "loss_curve": self.result.loss_curve,
            "data_spec": self.data_spec,
            "content_hash": self.content_hash,
            "tokenizer": self.tokenizer,
            "device": self.device,
        }


def fit_vocabulary(config: DecoderConfig, vocab_size: int) -> tuple[DecoderConfig, str | None]:
    """The tokenizer decides the vocabulary; a config trained on other data says so in a note."""
    if config.vocab_size == vocab_size:
        return config, None
    note = f"vocab_size {config.vocab_size} in the config replaced by the tokenizer's {vocab_size}"
    return config.replace(vocab_size=vocab_size), note


def run_training(
    config: DecoderConfig,
    data: TokenizedData,
    recipe: TrainingRecipe,
    device: str | None = "auto",
    out_dir: str | Path | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    model: Decoder | None = None,
) -> RunReport:
    """Train a fresh model of `config` on `data` (or the untrained `model` given, built from it);
    with `out_dir`, leave a resumable checkpoint there."""
    config, note = fit_vocabulary(config, data.vocab_size)
    check_fits(data, config.block_size)
    target = resolve_device(device)
    if model is None:
        model = initialised_model(config, recipe.seed)
    optimizer = make_optimizer(model.to(target), recipe, target)
    result = train(model, data.train, data.val, recipe, target, on_progress, optimizer)
    report = _report(config, result, model, target, data, note)
    if out_dir is not None:
        report.checkpoint = save_checkpoint(out_dir, model, data.tokenizer, recipe, report.record(), optimizer)
    return report


def initialised_model(config: DecoderConfig, seed: int) -> Decoder:
    """The same seed gives the same initial weights, whoever builds the model."""
    torch.manual_seed(seed)
    return build_decoder(config)


def resume_training(
    directory: str | Path,
    steps: int | None = None,
    device: str | None = "auto",
    on_progress: Callable[[Progress], None] | None = None,
    cache_dir: Path | None = None,
) -> RunReport:
    """Continue a checkpoint to its recipe's step count (or a larger `steps`) and save it again."""
    target = resolve_device(device)
    checkpoint = load_checkpoint(directory, target)
    record = checkpoint.record
    missing = [key for key in RESUME_KEYS if key not in record]
    if missing:
        raise DataError(f"{Path(directory) / RUN_FILE}: no {missing[0]!r} recorded, so the run cannot be resumed")
    recipe = dataclasses.replace(checkpoint.recipe, steps=steps or checkpoint.recipe.steps)
    data = prepare_data(record["data_spec"], record["tokenizer"], cache_dir)
    if data.content_hash != record["content_hash"]:
        raise corpus_changed(record["data_spec"], f"{directory} was trained", data.content_hash, record["content_hash"])
    if record["step"] >= recipe.steps:
        raise DataError(f"{directory}: already trained {record['step']} of {recipe.steps} steps; pass more --steps")
    optimizer = make_optimizer(checkpoint.model, recipe, target)
    load_optimizer_state(directory, optimizer)
    result = train(checkpoint.model, data.train, data.val, recipe, target, on_progress, optimizer,
                   start_step=record["step"], loss_curve=record["loss_curve"])
    report = _report(checkpoint.config, result, checkpoint.model, target, data, None)
    report.checkpoint = save_checkpoint(directory, checkpoint.model, data.tokenizer, recipe, report.record(), optimizer)
    return report


def _report(config: DecoderConfig, result: TrainingResult, model: torch.nn.Module, device: torch.device,
            data: TokenizedData, note: str | None) -> RunReport:
    return RunReport(
        config=config,
        result=result,
        params=sum(p.numel() for p in model.parameters()),
        device=str(device),
        data_spec=data.data_spec,
        content_hash=data.content_hash,
        tokenizer=data.tokenizer.name,
        vocab_note=note,
    )
