"""`describe`, `train` and `generate`: one architecture at a time."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.console import Console

from objectives import count_flops, describe
from trainer import prepare_data
from trainer.checkpoint import load_checkpoint, read_run
from trainer.generate import check_sampling, generate
from trainer.loop import RecipeError, TrainingRecipe, resolve_device
from trainer.run import RunReport, resume_training, run_training
from trainer.zeroshot import load_items, score_items

from ..arguments import (
    add_data_arguments,
    add_device_argument,
    add_model_arguments,
    add_training_arguments,
    data_choice,
    explicit_recipe,
    recipe_from_args,
    resolve_config,
    shape_overrides,
)
from ..progress import STDERR, training_bar
from ..registry import command
from ..views import description_table, metrics_table


@command("describe")
def describe_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.set_defaults(run=run_describe)


def run_describe(args: argparse.Namespace, console: Console) -> None:
    config = resolve_config(args)
    description = describe(config)
    if args.json:
        print(json.dumps(description.to_dict()))
    else:
        console.print(description_table(config, description))


@command("train")
def train_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    add_data_arguments(parser)
    add_training_arguments(parser)
    parser.add_argument("--out", type=Path, help="folder for the checkpoint (weights, config, tokenizer, optimizer)")
    parser.add_argument("--resume", type=Path, metavar="DIR", help="continue the checkpoint in DIR (to --steps)")
    parser.add_argument("--json", action="store_true", help="end stdout with one JSON object of the results")
    parser.set_defaults(run=run_train)


def run_train(args: argparse.Namespace, console: Console) -> None:
    if args.resume:
        report = _resume(args)
    else:
        config = resolve_config(args)
        recipe, data_spec, tokenizer, text_column = _study_run(config, args)
        data = prepare_data(data_spec, tokenizer, text_column=text_column)
        with training_bar("train", recipe.steps) as on_progress:
            report = run_training(config, data, recipe, args.device, args.out, on_progress)
    if report.vocab_note:
        STDERR.print(f"note: {report.vocab_note}")
    summary = {**report.metrics(), "flops_per_token": count_flops(report.config), "device": report.device,
               "data": report.data_spec, "content_hash": report.content_hash,
               "checkpoint": str(report.checkpoint) if report.checkpoint else None}
    if args.json:
        print(json.dumps(summary))
    else:
        console.print(metrics_table("training result", summary))


def _study_run(config: Any, args: argparse.Namespace) -> tuple[TrainingRecipe, str, str, str]:
    """Recipe, data, tokenizer and text column: an exported config carries its study's (provenance),
    so `train best.yaml` gets the study's number back; flags given here override them."""
    study = config.provenance
    data_spec, tokenizer, text_column = data_choice(args)
    if "recipe" not in study:
        return recipe_from_args(args), data_spec, tokenizer, text_column
    STDERR.print(f"note: training as study {study.get('study')!r} trained trial {study.get('trial')} "
                 f"({study['recipe']['steps']} steps on {study.get('data')}); flags given here override that")
    return (recipe_from_args(args, TrainingRecipe(**study["recipe"])), args.data or study.get("data", data_spec),
            args.tokenizer or study.get("tokenizer", tokenizer), text_column)


def _resume(args: argparse.Namespace) -> RunReport:
    recipe, record = read_run(args.resume)
    _refuse_changes_to_the_run(args, recipe.to_dict(), record)
    steps = args.steps or recipe.steps
    with training_bar("resume", steps) as on_progress:
        return resume_training(args.resume, steps, args.device, on_progress)


def _refuse_changes_to_the_run(args: argparse.Namespace, recipe: dict, record: dict) -> None:
    """--resume continues a run exactly as it was trained (only --steps may grow): a flag that would
    change the run is refused rather than silently ignored."""
    if args.config or args.preset or shape_overrides(args):
        raise RecipeError(f"--resume {args.resume}: the checkpoint fixes the architecture; drop the config, "
                          "--preset and shape flags")
    for flag, value in (("--out", args.out), ("--text-column", args.text_column)):
        if value is not None:
            raise RecipeError(f"{flag}: not used with --resume, which reads and saves back the run in {args.resume}")
    asked = {name: value for name, value in explicit_recipe(args).items() if name != "steps"}
    asked.update({name: getattr(args, name) for name in ("data", "tokenizer") if getattr(args, name) is not None})
    trained = {**recipe, "data": record.get("data_spec"), "tokenizer": record.get("tokenizer")}
    for name, value in asked.items():
        if not _same_setting(value, trained[name]):
            raise RecipeError(f"--{name.replace('_', '-')}: {value} differs from the {trained[name]} "
                              f"{args.resume} was trained with; --resume continues that run unchanged")


def _same_setting(asked: object, trained: object) -> bool:
    # The same corpus may be spelled as another path to the same file.
    if isinstance(asked, str) and isinstance(trained, str) and Path(asked).exists() and Path(trained).exists():
        return Path(asked).resolve() == Path(trained).resolve()
    return asked == trained


@command("generate")
def generate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path, help="a folder written by `train --out`")
    parser.add_argument("--prompt", default="", help="text to continue (default: start from scratch)")
    parser.add_argument("--max-new-tokens", type=int, default=200)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--top-k", type=int, default=50)
    parser.add_argument("--seed", type=int, default=None)
    add_device_argument(parser)
    parser.set_defaults(run=run_generate)


def run_generate(args: argparse.Namespace, console: Console) -> None:
    check_sampling(args.max_new_tokens, args.temperature, args.top_k)  # before the checkpoint is read
    checkpoint = load_checkpoint(args.checkpoint, resolve_device(args.device))
    result = generate(checkpoint.model, checkpoint.tokenizer, args.prompt, args.max_new_tokens,
                      args.temperature, args.top_k, args.seed)
    print(result.text)
    STDERR.print(f"{len(result.new_tokens)} tokens, {result.ms_per_token:.2f} ms per token (median, KV cache)")


@command("evaluate")
def evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path, help="a folder written by `train --out`")
    parser.add_argument("--zero-shot", required=True, metavar="SPEC",
                        help="a JSONL file of {context, choices, label} (or PIQA / HellaSwag / ARC / COPA rows), "
                             "or hf:NAME[:CONFIG][@SPLIT]")
    parser.add_argument("--limit", type=int, help="score only the first N items")
    add_device_argument(parser)
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(run=run_evaluate)


def run_evaluate(args: argparse.Namespace, console: Console) -> None:
    device = resolve_device(args.device)
    checkpoint = load_checkpoint(args.checkpoint, device)
    items = load_items(args.zero_shot, args.limit)
    result = score_items(checkpoint.model, checkpoint.tokenizer, items, device)
    summary = {"items": result.n_items, "accuracy": result.accuracy, "accuracy_norm": result.accuracy_norm}
    if args.json:
        print(json.dumps(summary))
    else:
        console.print(metrics_table(f"zero-shot {args.zero_shot}", summary))
