"""The Python API against the command line: the same training, each run a process of its own.

    python benchmarks/api_speed.py [--cases idle busy] [--repeats 3] [--steps 100] [--baseline CHECKOUT]

"command line" is `decoder-nas train --preset gpt ...` (its entry chooses the wait policy before torch
loads); "API" is `trainer.run_training` with the same preset, data and recipe in a process that
imported torch first, as a notebook does. `busy` runs a spinning Python process beside each run (one
core busy). Cases and loops are interleaved, and the order alternates between repeats. With
--baseline the API also runs from that checkout (e.g. the commit before a change), in the same rounds.
Prints training tokens/s (the training steps only) and the API / command line ratio of medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from checkouts import PREAMBLE  # this script's folder is on sys.path when it runs as `python benchmarks/...`
from train_speed import BATCH_SIZE, CASES, DEFAULT_DATA, SHAPE, SPINNER, cpu_name

from trainer.threads import USER_SETTINGS, cpu_sample, other_load

API = PREAMBLE + """
import json
import torch  # first, as in a notebook: too late for the entry point's wait policy
from search_space import preset
from trainer.data import prepare_data
from trainer.recipe import TrainingRecipe
from trainer.run import run_training
data = prepare_data({data!r}, "char")
config = preset("gpt", vocab_size=data.vocab_size, **{shape!r})
report = run_training(config, data, TrainingRecipe(steps={steps}, batch_size={batch}, eval_windows=1), "cpu")
print(json.dumps({{"tokens_per_second": report.result.tokens_per_second}}))
"""


def command_line(args: argparse.Namespace) -> list[str]:
    shape = [f"--{key.replace('_', '-')}={value}" for key, value in SHAPE.items()]
    return [sys.executable, "-m", "studies", "train", "--preset", "gpt", *shape, "--data", str(args.data),
            "--steps", str(args.steps), "--batch-size", str(BATCH_SIZE), "--eval-windows", "1", "--device", "cpu",
            "--json"]


def api(args: argparse.Namespace, tree: str) -> list[str]:
    code = API.format(tree=tree, data=str(args.data), shape=SHAPE, steps=args.steps, batch=BATCH_SIZE)
    return [sys.executable, "-c", code]


def timed(argv: list[str]) -> dict:
    """tokens/s of one run, and the cores other processes kept busy meanwhile (its own CPU left out)."""
    env = {k: v for k, v in os.environ.items() if k not in USER_SETTINGS}
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        before = cpu_sample()
        process = subprocess.Popen(argv, env=env, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(process.pid, 0)
        after = cpu_sample()
        out.seek(0), err.seek(0)
        if status:
            raise SystemExit(f"{' '.join(argv[:4])}... failed: {err.read().strip().splitlines()[-1:]}")
        rate = json.loads(out.read().strip().splitlines()[-1])["tokens_per_second"]
    own = (usage.ru_utime + usage.ru_stime) / (after.wall - before.wall)
    return {"tokens_per_second": rate, "others": max(0.0, other_load(before, after) - own)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--baseline", type=Path, help="another checkout whose API runs in the same rounds")
    args = parser.parse_args()
    loops = {"command line": command_line(args), "API": api(args, "")}
    if args.baseline:
        loops["API, baseline"] = api(args, str(args.baseline.resolve()))
    runs: dict[tuple[str, str], list[dict]] = {}
    for repeat in range(args.repeats):
        for case in args.cases:
            spinner = subprocess.Popen([sys.executable, "-c", SPINNER]) if case == "busy" else None
            try:
                order = list(loops) if repeat % 2 == 0 else list(reversed(loops))
                for loop in order:
                    run = timed(loops[loop])
                    runs.setdefault((case, loop), []).append(run)
                    print(f"repeat {repeat + 1} {case} {loop}: {run['tokens_per_second']:,.0f} tokens/s, others "
                          f"{run['others']:.2f} cores", file=sys.stderr, flush=True)
            finally:
                if spinner is not None:
                    spinner.kill()
                    spinner.wait()
    print(f"{cpu_name()} · {os.cpu_count()} CPUs · load average {os.getloadavg()[0]:.1f} · "
          f"{time.strftime('%Y-%m-%d %H:%M')} · gpt {SHAPE} · batch {BATCH_SIZE} · {args.steps} steps · "
          f"{args.repeats} repeats")
    columns = [*loops, "API / command line", "others' load (cores, median)"]
    print("| case | " + " | ".join(columns) + " |\n|---|" + "--:|" * len(columns))
    for case in args.cases:
        rates = {loop: statistics.median(r["tokens_per_second"] for r in runs[(case, loop)]) for loop in loops}
        load = statistics.median(r["others"] for loop in loops for r in runs[(case, loop)])
        cells = [f"{rates[loop]:,.0f}" for loop in loops]
        print(f"| {case} | " + " | ".join(cells) + f" | {rates['API'] / rates['command line']:.2f} | {load:.2f} |")


if __name__ == "__main__":
    main()
