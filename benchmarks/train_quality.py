"""nanoGPT's CPU Shakespeare recipe through decoder-nas: does the `gpt` preset reach nanoGPT's loss?

    python benchmarks/train_quality.py [--data PATH] [--threads N]

Trains the gpt preset at nanoGPT's shakespeare_char CPU shape (4 layers, 4 heads, d 128, block 64,
batch 12, 2000 steps, lr 1e-3 -> 1e-4 after 100 warm-up steps, beta2 0.99, weight decay 0.1,
dropout 0) with `run_training`, then scores fixed validation windows. nanoGPT reports val loss
1.886 for this recipe (87 s on a 2-core CPU machine); PASS means val loss <= 1.90.
Exit code 0 on PASS, 1 on FAIL.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from train_speed import BATCH_SIZE, DEFAULT_DATA, SHAPE  # this script's folder is on sys.path

from search_space import preset
from studies.cli.progress import training_bar
from trainer.data import prepare_data
from trainer.loop import TrainingRecipe
from trainer.run import run_training

TARGET_VAL_LOSS = 1.90


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="a text file (default: %(default)s)")
    parser.add_argument("--eval-windows", type=int, default=500,
                        help="validation windows of 64 tokens scored at the end (default: %(default)s)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data = prepare_data(str(args.data), "char")
    config = preset("gpt", vocab_size=data.vocab_size, dropout=0.0, **SHAPE)
    recipe = TrainingRecipe(batch_size=BATCH_SIZE, eval_windows=args.eval_windows)  # defaults: nanoGPT's
    with training_bar("train", recipe.steps) as on_progress:
        report = run_training(config, data, recipe, args.device, on_progress=on_progress)

    result, passed = report.result, report.result.evaluation.loss <= TARGET_VAL_LOSS
    table = Table(title=f"nanoGPT's CPU recipe through decoder-nas ({recipe.steps} steps)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for name, value in [
        ("val loss", f"{result.evaluation.loss:.4f}"),
        ("val accuracy", f"{result.evaluation.accuracy:.4f}"),
        ("final train loss (mean of last 100 steps)", f"{sum(result.loss_curve[-100:]) / 100:.4f}"),
        ("wall seconds", f"{result.wall_seconds:.1f}"),
        ("train seconds", f"{result.train_seconds:.1f}"),
        ("tokens/s", f"{result.tokens_per_second:,.0f}"),
        ("params", f"{report.params:,}"),
        ("torch · threads · device", f"{torch.__version__} · {torch.get_num_threads()} · {report.device}"),
        (f"target val loss <= {TARGET_VAL_LOSS}", "PASS" if passed else "FAIL"),
    ]:
        table.add_row(name, value)
    Console().print(table)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
