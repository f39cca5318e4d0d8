"""What a sample costs as the space's deepest `n_layer` grows: seconds and journal bytes per sample.

Every sample is made infeasible (`max_params` 1), so nothing trains: what is left is drawing the
parameters, describing the config and writing the trial. The per-layer encoding draws three
parameters per layer slot, so its samples grow with the deepest depth the space allows. Why spaces
stop at studies.space.MAX_SPACE_DEPTH (docs/surface.md); depths above it are refused, so that table's
deeper rows were measured on the code before the bound (commit e18081f, on PYTHONPATH).

    python benchmarks/space_depth.py --depths 8 16 32 64 --samples 12
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import optuna
import torch

from studies import Search
from studies.space import IntRange, load_space
from studies.workers.trials import TrialContext, run_trial


def cost_per_sample(depth: int, encoding: str, samples: int, folder: Path) -> tuple[float, float]:
    """(seconds, journal kB) per infeasible sample of a space whose deepest n_layer is `depth`."""
    journal = folder / f"{encoding}-{depth}.journal"
    space = dataclasses.replace(load_space(), n_layer=IntRange(1, depth), encoding=encoding, towers=(1,))
    search = Search.create("depth", str(journal), presets=False, space=space, constraints={"max_params": 1})
    context = TrialContext(search.study, search.settings, search.data, torch.device("cpu"))
    before, start = journal.stat().st_size, time.perf_counter()
    for _ in range(samples):
        run_trial(context)
    return (time.perf_counter() - start) / samples, (journal.stat().st_size - before) / samples / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depths", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--samples", type=int, default=12, help="samples per space (TPE starts after 8)")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    print("| deepest n_layer | per_layer s/sample | per_layer kB/sample | pattern s/sample | pattern kB/sample |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as folder:
        for depth in args.depths:  # the two encodings side by side at each depth
            per_layer = cost_per_sample(depth, "per_layer", args.samples, Path(folder))
            pattern = cost_per_sample(depth, "pattern", args.samples, Path(folder))
            print(f"| {depth} | {per_layer[0]:.3f} | {per_layer[1]:.0f} | {pattern[0]:.3f} | {pattern[1]:.0f} |",
                  flush=True)


if __name__ == "__main__":
    main()
