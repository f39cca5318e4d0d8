"""`reproduce` and `calibrate`: the presets side by side, and how far the proxy can be trusted."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace

from rich.console import Console
from rich.table import Table

from search_space import PAPER_PRESETS, PRESETS
from trainer import prepare_data
from trainer.loop import TrainingRecipe, resolve_device

from ...errors import StudyError
from ...fronts.evidence import calibrate, reproduce, sample_architectures
from ...measures import OBJECTIVES
from ...settings import SEARCH_BLOCK_SIZE, SEARCH_RECIPE, SEARCH_SHAPE
from ...space import DEFAULT_SPACE, load_space
from ..arguments import add_data_arguments, add_shape_arguments, add_training_arguments, data_choice, recipe_from_args
from ..progress import STDERR, training_bar
from ..registry import command


@command("reproduce")
def reproduce_arguments(parser: argparse.ArgumentParser) -> None:
    add_shape_arguments(parser.add_argument_group("shape (default: nanoGPT's CPU shape, 4 layers, 4 heads, d 128, block 64)"))
    add_data_arguments(parser)
    add_training_arguments(parser)
    parser.add_argument("--presets", nargs="+", choices=list(PRESETS), default=list(PAPER_PRESETS), metavar="NAME",
                        help=f"which presets ({', '.join(PRESETS)}; default: the paper's {' '.join(PAPER_PRESETS)})")
    parser.add_argument("--json", action="store_true", help="print a JSON list, one object per model")
    parser.set_defaults(run=run_reproduce)


def _shape(args: argparse.Namespace) -> dict[str, int]:
    shape = {"block_size": SEARCH_BLOCK_SIZE, **SEARCH_SHAPE}
    return {k: getattr(args, k) or default for k, default in shape.items()}


def run_reproduce(args: argparse.Namespace, console: Console) -> None:
    data_spec, tokenizer, text_column = data_choice(args)
    recipe = recipe_from_args(args)
    data = prepare_data(data_spec, tokenizer, text_column=text_column)
    rows = reproduce(data, recipe, _shape(args), resolve_device(args.device), announce=STDERR.print,
                     training_bar=training_bar, presets=args.presets)
    if args.json:
        print(json.dumps(rows))
        return
    which = "the paper's four models" if args.presets == list(PAPER_PRESETS) else ", ".join(args.presets)
    table = Table(title=f"{which}, {recipe.steps} steps on {data_spec}")
    measures = [objective for objective in OBJECTIVES.values() if objective.name in rows[0]]
    for column in ("name", *(objective.name for objective in measures), "train_seconds", "architecture"):
        table.add_column(column, justify="left" if column in ("name", "architecture") else "right")
    for row in rows:
        same_as = f" (= {row['reused_from']})" if "reused_from" in row else ""
        table.add_row(row["name"], *(objective.format(row[objective.name]) for objective in measures),
                      f"{row['train_seconds']:.1f}", row["summary"] + same_as)
    console.print(table)


@command("calibrate")
def calibrate_arguments(parser: argparse.ArgumentParser) -> None:
    add_shape_arguments(parser.add_argument_group("shape (block size of every architecture)"))
    add_data_arguments(parser)
    add_training_arguments(parser, SEARCH_RECIPE, "proxy recipe (as a search would use)")
    parser.add_argument("--space", metavar="paper|modern|FILE",
                        help=f"search space to sample from (default: {DEFAULT_SPACE})")
    parser.add_argument("--architectures", type=int, default=12, help="how many to sample (default: 12)")
    parser.add_argument("--long-steps", type=int, default=2000, help="steps of the reference runs (default: 2000)")
    parser.add_argument("--sample-seed", type=int, default=0, help="seed of the architecture sample")
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(run=run_calibrate)


def run_calibrate(args: argparse.Namespace, console: Console) -> None:
    if args.architectures < 3:
        raise StudyError(f"--architectures: {args.architectures}; rankings need at least 3")
    data_spec, tokenizer, text_column = data_choice(args)
    proxy = recipe_from_args(args, SEARCH_RECIPE)
    # The reference: nanoGPT's recipe at the long budget (warm-up 5% as in its 100 of 2000).
    long = replace(TrainingRecipe(), steps=args.long_steps, warmup_steps=max(1, args.long_steps // 20),
                   batch_size=proxy.batch_size, eval_windows=proxy.eval_windows, seed=proxy.seed)
    data = prepare_data(data_spec, tokenizer, text_column=text_column)
    configs = sample_architectures(load_space(args.space), args.architectures, data.vocab_size,
                                   args.block_size or SEARCH_BLOCK_SIZE, args.sample_seed)
    result = calibrate(configs, data, proxy, long, resolve_device(args.device), announce=STDERR.print)
    if args.json:
        print(json.dumps(result.to_dict()))
        return
    table = Table(title=f"{len(configs)} architectures: {proxy.steps}-step proxy vs {long.steps}-step training")
    for column in ("architecture", "params", "proxy loss", "long loss", "long loss (seed 2)"):
        table.add_column(column, justify="left" if column == "architecture" else "right")
    for row in result.architectures:
        table.add_row(row["summary"], f"{row['params']:,}", f"{row['proxy_loss']:.4f}", f"{row['long_loss']:.4f}",
                      f"{row['long_loss_seed2']:.4f}")
    console.print(table)
    console.print(f"proxy vs long:   Kendall τ {result.proxy_vs_long_tau:.3f}, Spearman {result.proxy_vs_long_spearman:.3f}")
    console.print(f"params vs long:  Kendall τ {result.params_vs_long_tau:.3f}, Spearman {result.params_vs_long_spearman:.3f}")
    console.print(f"noise ceiling:   Kendall τ {result.noise_ceiling_tau:.3f} (two seeds of the long runs)")
    console.print(f"cost: proxy {result.proxy_seconds:.0f} s of training vs {result.long_seconds:.0f} s for one long seed "
                  f"({result.proxy_seconds / max(result.long_seconds, 1e-9):.1%})")
