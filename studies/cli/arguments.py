"""Argument groups shared by several commands, and their conversion to API objects.

The same flag means the same thing in every command that takes it. The study modules load only in
the functions that name their settings: describe, train and data never pay for them.
"""

from __future__ import annotations

import argparse
from dataclasses import fields, replace
from typing import Any

from search_space import PRESETS, SHAPE_KEYS, ConfigError, DecoderConfig, load_config, preset
from trainer import BUILTIN_CORPORA, DEFAULT_DATA_SPEC, DEFAULT_TEXT_COLUMN, DEFAULT_TOKENIZER
from trainer.recipe import TrainingRecipe


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("architecture (a config file, or a preset with shape flags)")
    group.add_argument("config", nargs="?", help="architecture config (.yaml or .json)")
    group.add_argument("--preset", choices=sorted(PRESETS),
                       help="one of the paper's four models (gpt, pgpt, lgpt, cgpt), or llama or lfm2")
    add_shape_arguments(group)


def add_shape_arguments(group: Any) -> None:
    group.add_argument("--vocab-size", type=int, help="vocabulary size (training takes the tokenizer's)")
    group.add_argument("--block-size", type=int, help="context length in tokens")
    group.add_argument("--n-layer", type=int, help="layers (pgpt splits them over its 2 towers)")
    group.add_argument("--n-head", type=int, help="attention heads per layer")
    group.add_argument("--d-model", type=int, help="embedding / residual width")
    group.add_argument("--dropout", type=float, help="dropout probability (default 0)")


def shape_overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {key: getattr(args, key) for key in SHAPE_KEYS if getattr(args, key, None) is not None}


def resolve_config(args: argparse.Namespace) -> DecoderConfig:
    """A preset built at the requested shape, or a config file with --block-size/--dropout applied."""
    if args.config and args.preset:
        raise ConfigError("give either a config file or --preset, not both")
    overrides = shape_overrides(args)
    if args.preset:
        return preset(args.preset, **overrides)
    if not args.config:
        raise ConfigError("no architecture: give a config file or --preset NAME")
    config = load_config(args.config)
    structural = sorted(set(overrides) & {"n_layer", "n_head", "d_model"})
    if structural:
        flag = "--" + structural[0].replace("_", "-")
        raise ConfigError(f"{flag} reshapes presets only; edit {args.config} to change its layers")
    return config.replace(**overrides) if overrides else config


TOKENIZER_HELP = ("char (vocabulary from the data, the default), byte, bpe:N[:SAMPLE_MB] (a byte-level BPE of N "
                  "tokens learnt from the first SAMPLE_MB (default 256) of the training text; no hub needed), "
                  "a tokenizer.json path, or a hub name")


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    builtins = ", ".join(f"builtin:{name} ({corpus.description})" for name, corpus in BUILTIN_CORPORA.items())
    group = parser.add_argument_group("data")
    group.add_argument("--data", default=None, metavar="SPEC",
                       help=f"a text file or folder, hf:NAME[:CONFIG][@SPLIT], or {builtins}. "
                            f"Default: {DEFAULT_DATA_SPEC}")
    group.add_argument("--tokenizer", help=TOKENIZER_HELP)
    group.add_argument("--text-column", help="column of a hub dataset holding the text (default: text)")


def data_choice(args: argparse.Namespace) -> tuple[str, str, str]:
    """(data spec, tokenizer spec, text column) with the defaults filled in."""
    return args.data or DEFAULT_DATA_SPEC, args.tokenizer or DEFAULT_TOKENIZER, args.text_column or DEFAULT_TEXT_COLUMN


# Flag help for each TrainingRecipe field the command line exposes; defaults come from the recipe.
_RECIPE_HELP = {
    "steps": "optimizer steps (the schedule's length)",
    "batch_size": "sequences per micro-batch",
    "lr": "peak learning rate",
    "min_lr": "learning rate at the end of the cosine decay",
    "warmup_steps": "linear warm-up steps",
    "weight_decay": "AdamW weight decay (matrices and embeddings only)",
    "beta2": "AdamW beta2",
    "grad_clip": "gradient-norm clip (0: off)",
    "grad_accum": "micro-batches per optimizer step",
    "seed": "seed for initialisation and batches",
    "max_tokens": "stop early after this many training tokens",
    "max_seconds": "stop early after this much training time",
    "eval_windows": "validation windows scored at the end (fixed, seeded)",
}


def add_training_arguments(parser: argparse.ArgumentParser, defaults: TrainingRecipe | None = None,
                           title: str = "training recipe (defaults: nanoGPT's CPU Shakespeare recipe)") -> None:
    """Recipe flags default to None, so a command can tell what the user asked for explicitly."""
    group = parser.add_argument_group(title)
    defaults = defaults or TrainingRecipe()
    recipe_fields = {f.name: f for f in fields(TrainingRecipe)}
    for name, help_text in _RECIPE_HELP.items():
        kind = float if recipe_fields[name].type in ("float", "float | None") else int
        group.add_argument("--" + name.replace("_", "-"), type=kind,
                           help=f"{help_text} (default: {getattr(defaults, name)})")
    group.add_argument("--compile", action="store_true", default=None,
                       help="torch.compile the model (pays back on long GPU runs)")
    add_device_argument(group)


def add_device_argument(parser: Any) -> None:
    parser.add_argument("--device", default="auto", help="auto (cuda if present, else cpu), cpu, cuda, cuda:N")


def explicit_recipe(args: argparse.Namespace) -> dict[str, Any]:
    """The recipe fields the user set on the command line."""
    names = [*_RECIPE_HELP, "compile"]
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}


def recipe_from_args(args: argparse.Namespace, base: TrainingRecipe | None = None) -> TrainingRecipe:
    return replace(base or TrainingRecipe(), **explicit_recipe(args))


def add_study_arguments(parser: argparse.ArgumentParser, study: bool = True) -> None:
    from ..settings import DEFAULT_STUDY
    from ..storage.backends import DEFAULT_STORAGE, STORAGE_FORMS

    group = parser.add_argument_group("study")
    if study:
        group.add_argument("--study", default=DEFAULT_STUDY, help=f"study name (default: {DEFAULT_STUDY})")
    group.add_argument("--storage", default=DEFAULT_STORAGE, help=f"{STORAGE_FORMS} (default: ./{DEFAULT_STORAGE})")


def add_artifacts_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--artifacts", metavar="PATH_OR_URL",
                        help="where kept weights live: a folder (a shared one for several machines) or s3://BUCKET; "
                             "remembered by the study (default: STORAGE.artifacts beside a journal or SQLite file)")


def add_keep_checkpoints_argument(parser: Any) -> None:
    from ..api import KEEP_CHECKPOINTS

    parser.add_argument("--keep-checkpoints", choices=KEEP_CHECKPOINTS, default="none",
                        help="keep trial weights as artifacts: none (default), those on the front, or all")


def add_promotion_arguments(parser: Any, prefix: str = "") -> None:
    """--top and --gap-trials, for promote and for search's --promote-steps (`prefix` says so)."""
    from ..settings import DEFAULT_GAP_TRIALS

    parser.add_argument("--top", type=int, metavar="K",
                        help=f"{prefix}promote K sampled trials: the front, then the next non-dominated layers "
                             "behind it, best quality first (default: the front only)")
    parser.add_argument("--gap-trials", type=int, metavar="N",
                        help=f"{prefix}then train N gap trials at the longer budget, one at a time: each changes "
                             "one parameter of a front trial to fill the front's widest cost gap "
                             f"(default: {DEFAULT_GAP_TRIALS}; 0: none)")
