"""Per-trial fixed cost: a trial's wall time minus its training steps, on a CPU.

    python benchmarks/trial_overhead.py [--trials 12] [--rounds 3] [--baseline DIR] [--profile FILE]

A 2-step study of the default space (built-in corpus, the paper presets first, TPE) in a fresh
journal, one worker in one process; each trained trial's fixed cost is (completed - started) -
train_seconds: sampling, the static measures, building the model, timing its latency, evaluation,
recording. On a GPU, where a proxy trains in about a second, this is what bounds trials per hour.
With --baseline DIR (another checkout, e.g. `git worktree add /tmp/base main`), each round runs
that checkout's code and then this one's, each in a fresh process, so load on a shared machine
falls on both alike; the table gives each round's median and the ratio. --profile writes cProfile
stats of one run of this checkout's code.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def measure(trials: int) -> dict:
    """One fresh study, `trials` trials in this process: the fixed cost of each trained trial."""
    import tempfile
    from dataclasses import replace

    import optuna

    from studies.api import Search
    from studies.settings import SEARCH_RECIPE

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="trial-overhead-") as scratch:
        search = Search.create("overhead", f"{scratch}/overhead.journal", recipe=replace(SEARCH_RECIPE, steps=2))
        search.run(trials, jobs=1, device="cpu")
        costs = [(t.datetime_complete - t.datetime_start).total_seconds() - t.user_attrs["train_seconds"]
                 for t in search.study.get_trials(deepcopy=False) if "train_seconds" in t.user_attrs]
    return {"median": statistics.median(costs), "first": costs[0], "later_median": statistics.median(costs[1:]),
            "trials": len(costs)}


def run_in(tree: Path, trials: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--measure", "--trials", str(trials)],
                         env=env, cwd=tree, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline", type=Path, help="another checkout to compare with, round by round")
    parser.add_argument("--profile", type=Path, help="write cProfile stats of one run here")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)  # one run, JSON on stdout
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.trials)))
        return
    if args.profile:
        import cProfile

        cProfile.runctx("measure(args.trials)", globals(), {"measure": measure, "args": args}, str(args.profile))
        return
    print(f"{platform.node()} · {os.cpu_count()} CPUs · load {os.getloadavg()[0]:.1f} · Python "
          f"{platform.python_version()} · {args.trials} trials of 2 steps per run · seconds per trial")
    trees = ([("baseline", args.baseline)] if args.baseline else []) + [("this", ROOT)]
    print("| round | " + " | ".join(f"{name} median (first, later)" for name, _ in trees)
          + (" | ratio |" if args.baseline else " |"))
    print("|---" * (len(trees) + 1 + bool(args.baseline)) + "|")
    for round_number in range(1, args.rounds + 1):
        rows = [run_in(tree, args.trials) for _, tree in trees]
        cells = [f"{r['median']:.3f} ({r['first']:.2f}, {r['later_median']:.3f})" for r in rows]
        ratio = f" | {rows[1]['median'] / rows[0]['median']:.2f}" if args.baseline else ""
        print(f"| {round_number} | " + " | ".join(cells) + f"{ratio} |  load {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
