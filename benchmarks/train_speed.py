"""Training speed of trainer.loop.train against a plain nanoGPT-style loop, at nanoGPT's CPU shape.

    python benchmarks/train_speed.py [--steps 200] [--repeats 3] [--device cpu]

Both loops train the same architecture (checked: identical logits from identical weights) on
character-level tinyshakespeare with the same batch and optimizer settings, in this process,
alternating, each repeat on a fresh model after a few untimed warm-up steps. Reports training
tokens per second (the training steps only; set-up and evaluation excluded).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import platform
import statistics
from collections.abc import Callable
from pathlib import Path

import numpy as np
import reference_loop  # this script's folder is on sys.path when it runs as `python benchmarks/...`
import torch
from rich.console import Console
from rich.table import Table

from search_space import Decoder, DecoderConfig, build_decoder, preset
from trainer.data import TokenizedData, prepare_data
from trainer.loop import TrainingRecipe, make_optimizer, resolve_device, train

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"
SHAPE = {"n_layer": 4, "n_head": 4, "d_model": 128, "block_size": 64}  # nanoGPT's shakespeare_char on CPU
BATCH_SIZE = 12


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="a text file (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=200, help="timed steps per repeat (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each loop (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps before each run (default: %(default)s)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    return parser.parse_args()


def ours(config: DecoderConfig, data: TokenizedData, recipe: TrainingRecipe, device: torch.device,
         warmup: int, steps: int) -> float:
    """Tokens/s of trainer.loop.train over `steps` steps, after `warmup` steps with the same optimizer."""
    torch.manual_seed(recipe.seed)
    model = build_decoder(config)
    optimizer = make_optimizer(model.to(device), recipe, device)
    timed = dataclasses.replace(recipe, steps=warmup + steps)
    if warmup:
        train(model, data.train, data.val, dataclasses.replace(timed, steps=warmup), device, optimizer=optimizer)
    result = train(model, data.train, data.val, timed, device, optimizer=optimizer, start_step=warmup)
    return result.tokens_per_second


def reference(config: DecoderConfig, tokens: np.ndarray, recipe: TrainingRecipe, device: torch.device,
              warmup: int, steps: int) -> float:
    """Tokens/s of the plain loop in reference_loop.py, timed the same way."""
    torch.manual_seed(recipe.seed)
    model = reference_loop.GPT(reference_shape(config)).to(device)
    optimizer = reference_loop.configure_optimizer(model, recipe.weight_decay, recipe.lr,
                                                   (recipe.beta1, recipe.beta2), device)
    schedule = reference_loop.Schedule(recipe.lr, recipe.min_lr, recipe.warmup_steps, warmup + steps)

    def run(first_step: int, count: int) -> float:
        return reference_loop.train_steps(model, optimizer, tokens, schedule, first_step, count,
                                          recipe.batch_size, recipe.grad_clip)

    run(0, warmup)
    return steps * recipe.batch_size * config.block_size / run(warmup, steps)


def reference_shape(config: DecoderConfig) -> reference_loop.GPTShape:
    return reference_loop.GPTShape(config.vocab_size, config.block_size, len(config.layers),
                                   config.layers[0].n_head, config.d_model)


def check_same_architecture(config: DecoderConfig) -> int:
    """Both models, given the same weights, must give the same logits: else the race is unfair."""
    ours_model: Decoder = build_decoder(config)
    theirs = reference_loop.GPT(reference_shape(config))
    # Both declare their parameters in the same order (embeddings, then per block ln_1, qkv, proj, ln_2, fc, proj).
    theirs.load_state_dict(dict(zip(theirs.state_dict(), ours_model.state_dict().values(), strict=True)))
    idx = torch.randint(config.vocab_size, (2, config.block_size))
    with torch.no_grad():
        torch.testing.assert_close(theirs(idx, idx)[0], ours_model(idx))
    return sum(p.numel() for p in ours_model.parameters())


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo where there is one (platform.processor() often says only x86_64)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    data = prepare_data(str(args.data), "char")
    config = preset("gpt", vocab_size=data.vocab_size, **SHAPE)
    params = check_same_architecture(config)
    # nanoGPT's CPU recipe; one validation window, since evaluation is not timed anyway.
    recipe = TrainingRecipe(batch_size=BATCH_SIZE, eval_windows=1)
    tokens = data.train  # a uint16 memory map, as nanoGPT's train.bin

    loops: dict[str, Callable[[], float]] = {
        "decoder-nas": lambda: ours(config, data, recipe, device, args.warmup, args.steps),
        "reference": lambda: reference(config, tokens, recipe, device, args.warmup, args.steps),
    }
    rates: dict[str, list[float]] = {name: [] for name in loops}
    for repeat in range(args.repeats):
        order = list(loops) if repeat % 2 == 0 else list(reversed(loops))  # alternate who goes first
        for name in order:
            rates[name].append(loops[name]())

    console = Console()
    console.print(f"torch {torch.__version__} · {torch.get_num_threads()} threads · "
                  f"{cpu_name()} · {os.cpu_count()} CPUs (nproc) · "
                  f"load average {os.getloadavg()[0]:.1f} · device {device} · "
                  f"{datetime.datetime.now().isoformat(timespec='seconds')}")
    console.print(f"gpt {SHAPE} · vocab {data.vocab_size} · {params:,} params · batch {BATCH_SIZE} · "
                  f"{args.repeats} x {args.steps} timed steps after {args.warmup} warm-up")
    table = Table(title="training tokens/s")
    for column in ("loop", "median", "min", "max", "ours / reference"):
        table.add_column(column, justify="left" if column == "loop" else "right")
    reference_median = statistics.median(rates["reference"])
    for name, values in rates.items():
        median = statistics.median(values)
        table.add_row(name, f"{median:,.0f}", f"{min(values):,.0f}", f"{max(values):,.0f}",
                      f"{median / reference_median:.3f}")
    console.print(table)


if __name__ == "__main__":
    main()
