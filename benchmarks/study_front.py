"""The CPU search benchmark: does a 24-trial study beat the paper's models?

Tiny Shakespeare, char level, block 64, batch 12, nanoGPT's CPU recipe. A TPE study of 24 trials
at 300 steps is promoted to 2000 steps; for each of the paper's four presets (4 layers, 4 heads,
d 128) trained for 2000 steps, the promoted front must hold an architecture at least as good on
validation loss and FLOPs per token and better on one. A random-search study with the same trial
count is run beside it, and both 300-step fronts' hypervolumes are reported on one normalisation.

Resumable: re-running continues the studies in the journal file. Not part of CI (about an hour on
a 2-core CPU).

    python benchmarks/study_front.py [--data PATH] [--storage FILE] [--trials 24]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState
from rich.console import Console
from rich.table import Table

from studies.cli import main as cli
from studies.front import front_trials, hypervolume, normaliser_for
from studies.search import promoted_name
from studies.settings import read_settings
from studies.storage import open_storage

REPO = Path(__file__).resolve().parent.parent
SHAPE = ["--block-size", "64", "--n-layer", "4", "--n-head", "4", "--d-model", "128", "--batch-size", "12"]


def run_study(name: str, sampler: str, args: argparse.Namespace) -> None:
    storage = open_storage(args.storage)
    done = 0
    if name in [s.study_name for s in optuna.get_all_study_summaries(storage)]:
        done = len(optuna.load_study(study_name=name, storage=storage).get_trials(
            deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)))
    remaining = max(0, args.trials - done)
    if remaining:
        code = cli(["search", "--study", name, "--storage", args.storage, "--data", args.data,
                    "--space", str(args.space), "--sampler", sampler, "--sampler-seed", str(args.sampler_seed), *SHAPE,
                    "--trials", str(remaining)])
        if code:
            raise SystemExit(code)


def dominates_or_matches(candidate: optuna.trial.FrozenTrial, preset: optuna.trial.FrozenTrial) -> bool:
    c, p = candidate.user_attrs, preset.user_attrs
    no_worse = c["val_loss"] <= p["val_loss"] and c["flops_per_token"] <= p["flops_per_token"]
    better = c["val_loss"] < p["val_loss"] or c["flops_per_token"] < p["flops_per_token"]
    return no_worse and better


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "tinyshakespeare.txt"))
    parser.add_argument("--storage", default="benchmark-study.journal")
    parser.add_argument("--space", type=Path, default=REPO / "benchmarks" / "cpu_space.yaml")
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--long-steps", type=int, default=2000)
    parser.add_argument("--sampler-seed", type=int, default=0, help="seed of both samplers (default: 0)")
    args = parser.parse_args()
    console = Console()
    started = time.time()

    run_study("tpe", "tpe", args)
    long_name = promoted_name("tpe", args.long_steps)
    storage = open_storage(args.storage)
    if long_name not in [s.study_name for s in optuna.get_all_study_summaries(storage)] or any(
            t.state == TrialState.WAITING for t in optuna.load_study(study_name=long_name, storage=storage).trials):
        if cli(["promote", "--study", "tpe", "--storage", args.storage, "--steps", str(args.long_steps)]):
            raise SystemExit(1)
    run_study("random", "random", args)

    long = optuna.load_study(study_name=long_name, storage=storage)
    settings = read_settings(long)
    front = front_trials(long, settings)
    presets = {t.user_attrs["preset"]: t for t in long.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
               if "preset" in t.user_attrs}
    table = Table(title=f"{args.long_steps}-step front vs the paper's presets (Tiny Shakespeare, char, block 64)")
    for column in ("preset", "val_loss", "FLOPs/token", "best front match", "its val_loss", "its FLOPs/token", "ok"):
        table.add_column(column)
    all_ok = True
    for name, preset in sorted(presets.items()):
        matches = [t for t in front if t.number != preset.number and dominates_or_matches(t, preset)]
        best = min(matches, key=lambda t: t.user_attrs["val_loss"]) if matches else None
        all_ok &= best is not None
        table.add_row(name, f"{preset.user_attrs['val_loss']:.4f}", f"{preset.user_attrs['flops_per_token']:,}",
                      best.user_attrs["summary"] if best else "-",
                      f"{best.user_attrs['val_loss']:.4f}" if best else "-",
                      f"{best.user_attrs['flops_per_token']:,}" if best else "-", "yes" if best else "NO")
    console.print(table)
    front_rows = Table(title=f"the {args.long_steps}-step front")
    for column in ("trial", "val_loss", "FLOPs/token", "params", "architecture"):
        front_rows.add_column(column)
    for t in front:
        front_rows.add_row(str(t.number), f"{t.user_attrs['val_loss']:.4f}", f"{t.user_attrs['flops_per_token']:,}",
                           f"{t.user_attrs['params']:,}", t.user_attrs.get("preset", "") + " " + t.user_attrs["summary"])
    console.print(front_rows)

    short = {name: optuna.load_study(study_name=name, storage=storage) for name in ("tpe", "random")}
    values = {name: [t.values for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
              for name, study in short.items()}
    normalise = normaliser_for(settings.objectives, values["tpe"] + values["random"])
    for name, study in short.items():
        points = [normalise(t.values) for t in front_trials(study, read_settings(study))]
        console.print(f"{name:>6}: 300-step front hypervolume {hypervolume(points):.4f} "
                      f"({len(values[name])} complete trials; normalised over both studies, reference 1.1)")
    console.print(f"every preset matched: {'PASS' if all_ok else 'FAIL'} · wall {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
