"""How far TPE gets in a large study before it only proposes architectures the study already holds.

    python benchmarks/repeats.py [--trials 1000] [--seeds 0 1 2]

A synthetic landscape over the default search space, so thousands of trials take a minute: cost is
the weight count of the attention and MLP matrices (12 d^2 per layer, towers included), loss falls
with its log, plus a fixed per-architecture offset (sd 0.05) so that architectures of one size
differ. Each sampler runs the worker's loop in memory: an architecture already tried reuses its
result (and counts as a repeat); 10 repeats in a row end the run, as they end a worker
(studies/workers/search.py MAX_CONSECUTIVE_REPEATS). "neighbours" is TPE with studies/workers/repeats.py: after a
repeat the next trial is an untried one-parameter change of it. The hypervolume is of the trained
architectures' (log cost, loss) front, against a reference just beyond the first 100 random ones.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics

import optuna
from rich.console import Console
from rich.table import Table

from search_space import DecoderConfig, architecture_hash
from studies.fronts.hypervolume import hypervolume
from studies.settings import StudySettings
from studies.workers.repeats import enqueue_untried_neighbour
from studies.workers.search import MAX_CONSECUTIVE_REPEATS, make_sampler

VOCAB, BLOCK = 65, 64


def landscape(config: DecoderConfig, arch_hash: str) -> tuple[float, float]:
    size = config.towers * sum(12 * width * width for width in config.widths[:-1])
    offset = random.Random(arch_hash).gauss(0, 0.05)
    return 4.2 - 0.25 * math.log(size) + offset, math.log(size)


def run(sampler: str, seed: int, trials: int, settings: StudySettings) -> dict[str, float]:
    """Run until `trials` architectures are trained or the repeats end it, as a worker does."""
    neighbours = sampler == "tpe + neighbours"
    study = optuna.create_study(directions=["minimize", "minimize"],
                                sampler=make_sampler("random" if sampler == "random" else "tpe", seed))
    results: dict[str, tuple[float, float]] = {}
    proposals = repeats = in_a_row = 0
    while len(results) < trials and in_a_row < MAX_CONSECUTIVE_REPEATS:
        trial = study.ask()
        config = settings.space.sample(trial, VOCAB, BLOCK)
        arch_hash = architecture_hash(config)
        trial.set_user_attr("arch_hash", arch_hash)
        repeat = arch_hash in results
        values = results.setdefault(arch_hash, landscape(config, arch_hash))
        study.tell(trial, list(values))
        proposals, repeats, in_a_row = proposals + 1, repeats + repeat, in_a_row + 1 if repeat else 0
        if repeat and neighbours:
            enqueue_untried_neighbour(study, settings, study.get_trials(deepcopy=False)[trial.number], VOCAB)
    return {"trained": len(results), "proposals": proposals, "repeats": repeats,
            "front": list(results.values())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=1000, help="architectures to train (default: %(default)s)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    settings = StudySettings()
    runs = {sampler: [run(sampler, seed, args.trials, settings) for seed in args.seeds]
            for sampler in ("random", "tpe", "tpe + neighbours")}
    first = [v for r in runs["random"] for v in r["front"][:100]]
    reference = [max(loss for loss, _ in first) + 0.01, max(cost for _, cost in first) + 0.01]
    table = Table(title=f"up to {args.trials:,} trained architectures, seeds {args.seeds} (median)")
    for column in ("sampler", "trained", "proposals", "repeats", "ended by repeats", "hypervolume"):
        table.add_column(column, justify="left" if column == "sampler" else "right")
    for sampler, results in runs.items():
        table.add_row(sampler, *(f"{statistics.median(r[key] for r in results):,.0f}"
                                 for key in ("trained", "proposals", "repeats")),
                      f"{sum(r['trained'] < args.trials for r in results)} of {len(results)}",
                      f"{statistics.median(hypervolume(r['front'], reference) for r in results):.3f}")
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
